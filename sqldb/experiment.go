package sqldb

import (
	"context"
	"time"

	"github.com/quarry-dfir/quarry"
)

// ExperimentService keeps the state of the experiments defined in quarry.Experiments. An
// experiment never set keeps its default; stored state of an experiment no longer defined is
// ignored.
type ExperimentService struct {
	db *DB
}

var _ quarry.ExperimentService = (*ExperimentService)(nil)

// NewExperimentService returns an ExperimentService on db.
func NewExperimentService(db *DB) *ExperimentService { return &ExperimentService{db: db} }

// FindExperiments returns every defined experiment with its current state, in definition order.
func (s *ExperimentService) FindExperiments(ctx context.Context) ([]*quarry.Experiment, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return findExperiments(ctx, tx)
}

// FindExperiment returns the experiment called name, or ENOTFOUND if it is not defined.
func (s *ExperimentService) FindExperiment(ctx context.Context, name string) (*quarry.Experiment, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return findExperiment(ctx, tx, name)
}

// SetExperiment turns the experiment called name on or off, recording the actor in ctx as
// who did it; ENOTFOUND if it is not defined.
func (s *ExperimentService) SetExperiment(ctx context.Context, name string, enabled bool) (*quarry.Experiment, error) {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	if _, ok := quarry.FindExperimentDef(name); !ok {
		return nil, errUnknownExperiment(name)
	}
	_, err = tx.exec(ctx, `INSERT INTO experiments (name, enabled, updated_at, updated_by) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
		name, enabled, tx.now, quarry.ActorFromContext(ctx).Name())
	if err != nil {
		return nil, translate(err, "set experiment", "", "")
	}
	e, err := findExperiment(ctx, tx, name)
	if err != nil {
		return nil, err
	}
	return e, tx.Commit()
}

func errUnknownExperiment(name string) error {
	return quarry.Errorf(quarry.ENOTFOUND, "There is no experiment called %q.", name)
}

func findExperiment(ctx context.Context, tx *Tx, name string) (*quarry.Experiment, error) {
	all, err := findExperiments(ctx, tx)
	if err != nil {
		return nil, err
	}
	for _, e := range all {
		if e.Name == name {
			return e, nil
		}
	}
	return nil, errUnknownExperiment(name)
}

// findExperiments merges the stored state into the definitions. The table holds one row per
// experiment ever set, so reading all of it is cheap.
func findExperiments(ctx context.Context, tx *Tx) ([]*quarry.Experiment, error) {
	rows, err := tx.query(ctx, "SELECT name, enabled, updated_at, updated_by FROM experiments")
	if err != nil {
		return nil, translate(err, "find experiments", "", "")
	}
	defer rows.Close()
	type state struct {
		enabled bool
		at      time.Time
		by      string
	}
	stored := make(map[string]state)
	for rows.Next() {
		var name string
		var st state
		if err := rows.Scan(&name, &st.enabled, timeCol(&st.at), &st.by); err != nil {
			return nil, translate(err, "find experiments", "", "")
		}
		stored[name] = st
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "find experiments", "", "")
	}
	out := make([]*quarry.Experiment, 0, len(quarry.Experiments))
	for _, def := range quarry.Experiments {
		e := def
		if st, ok := stored[e.Name]; ok {
			e.Enabled, e.UpdatedAt, e.UpdatedBy = st.enabled, &st.at, st.by
		}
		out = append(out, &e)
	}
	return out, nil
}
