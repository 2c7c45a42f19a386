// Package sigma runs Sigma detection rules on timeline events: it reads rules (SigmaHQ's YAML), maps
// their logsources to the events Quarry's parsers emit (logsources.yaml), and matches events against
// many rules at once, routing each event to the rules of its source, channel and EventID and ruling
// most of those out with a literal prefilter before evaluating the rest.
//
// Rules this evaluator cannot run are never dropped silently: loading reports each with the reason
// (a parse error, an unsupported feature such as aggregations, or a logsource we do not map).
package sigma

import (
	"embed"
	"fmt"
	"io/fs"
)

// ProblemKind says why a rule is not in a RuleSet.
type ProblemKind string

// The kinds of Problem.
const (
	ProblemParse       ProblemKind = "parse error"
	ProblemUnsupported ProblemKind = "unsupported"
	ProblemUnmapped    ProblemKind = "logsource not mapped"
)

// Problem is a rule file that did not become part of a RuleSet.
type Problem struct {
	Path   string // the file, relative to the folder or fs.FS it was loaded from
	RuleID string // "" when the file could not be read that far
	Title  string
	Kind   ProblemKind
	Err    error // wraps ErrUnsupported for ProblemUnsupported
}

func (p Problem) Error() string {
	id := p.RuleID
	if id == "" {
		id = "no id"
	}
	return fmt.Sprintf("%s (%s, %q): %s: %v", p.Path, id, p.Title, p.Kind, p.Err)
}

// Reason is the short reason of an unsupported or unmapped rule, for counting by reason.
func (p Problem) Reason() string {
	if r := Reason(p.Err); r != "" {
		return r
	}
	if p.Err == nil {
		return ""
	}
	return p.Err.Error()
}

//go:embed rules/*.yml
var builtinRules embed.FS

// Builtin is Quarry's own rules, for LoadFS or ReadFS.
func Builtin() fs.FS {
	sub, err := fs.Sub(builtinRules, "rules")
	if err != nil {
		panic(err) // the embedded folder exists by construction
	}
	return sub
}
