package detect

import (
	"fmt"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sigma"
)

// Sigma is the detector of a Sigma rule set.
type Sigma struct {
	Rules      *sigma.RuleSet
	Severities Severities
}

// Detect tags ev with the rules that match it.
func (d *Sigma) Detect(ev *quarry.Event) {
	n := len(ev.Detections)
	ev.Detections = d.Rules.AppendMatches(ev.Detections, ev)
	if len(ev.Detections) > n {
		d.Severities.Raise(ev)
	}
}

// LoadSigma builds the detector of Quarry's own rules (unless builtin is false) and the rules
// under dirs (a checkout of SigmaHQ's rules, for example). Rules that cannot be used are in the
// problems, with the reason; a folder that cannot be read is an error.
func LoadSigma(builtin bool, dirs []string, sev Severities) (*Sigma, []sigma.Problem, error) {
	var rules []*sigma.Rule
	var problems []sigma.Problem
	if builtin {
		r, p, err := sigma.ReadFS(sigma.Builtin())
		if err != nil {
			return nil, nil, fmt.Errorf("built-in Sigma rules: %w", err)
		}
		rules, problems = append(rules, r...), append(problems, p...)
	}
	if len(dirs) > 0 {
		r, p, err := sigma.ReadDirs(dirs...)
		if err != nil {
			return nil, nil, fmt.Errorf("Sigma rules: %w", err)
		}
		rules, problems = append(rules, r...), append(problems, p...)
	}
	set, p := sigma.Compile(rules)
	return &Sigma{Rules: set, Severities: sev}, append(problems, p...), nil
}
