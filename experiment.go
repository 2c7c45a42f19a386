package quarry

import (
	"context"
	"time"
)

// Experiment is a feature flag that admins toggle under Settings > Experiments. The set of
// experiments is defined in code (Experiments); the store keeps only their state.
type Experiment struct {
	Name        string     `json:"name"`
	Title       string     `json:"title"`
	Description string     `json:"description"`
	Enabled     bool       `json:"enabled"`
	UpdatedAt   *time.Time `json:"updated_at,omitempty"`
	UpdatedBy   string     `json:"updated_by,omitempty"`
}

// ExperimentDefenderXDR shows the Defender import and acquisition features.
const ExperimentDefenderXDR = "defender_xdr"

// Experiments lists every experiment Quarry knows, with its default state.
var Experiments = []Experiment{
	{
		Name:        ExperimentDefenderXDR,
		Title:       "Microsoft Defender XDR integration (beta)",
		Description: "Import hosts from Microsoft Defender for Endpoint and collect triage packages from them through Live Response.",
		Enabled:     false,
	},
}

// FindExperimentDef returns the definition of a known experiment.
func FindExperimentDef(name string) (Experiment, bool) {
	for _, e := range Experiments {
		if e.Name == name {
			return e, true
		}
	}
	return Experiment{}, false
}

// ExperimentService keeps experiment state. SetExperiment returns ENOTFOUND for an unknown name.
type ExperimentService interface {
	FindExperiments(ctx context.Context) ([]*Experiment, error)
	FindExperiment(ctx context.Context, name string) (*Experiment, error)
	SetExperiment(ctx context.Context, name string, enabled bool) (*Experiment, error)
}
