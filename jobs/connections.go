package jobs

import (
	"context"
	"fmt"

	"github.com/riverqueue/river"
)

// ConnectionChecker re-checks every XDR connection; integration.Service implements it.
type ConnectionChecker interface {
	CheckAll(ctx context.Context) error
}

// CheckConnectionsArgs is the daily connection check: expired secrets and withdrawn
// permissions show up on the Integrations page before an acquisition trips over them.
type CheckConnectionsArgs struct{}

// Kind implements river.JobArgs.
func (CheckConnectionsArgs) Kind() string { return "check_connections" }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (CheckConnectionsArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 3} }

type checkConnectionsWorker struct {
	river.WorkerDefaults[CheckConnectionsArgs]
	checker ConnectionChecker
}

func (w *checkConnectionsWorker) Work(ctx context.Context, job *river.Job[CheckConnectionsArgs]) error {
	if err := w.checker.CheckAll(ctx); err != nil {
		return fmt.Errorf("check connections: %w", err)
	}
	return nil
}
