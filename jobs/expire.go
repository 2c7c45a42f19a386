package jobs

import (
	"context"
	"fmt"

	"github.com/riverqueue/river"
)

// ExpireArgs is the expire job: it deletes expired sessions, API tokens expired or revoked
// longer than the grace period ago, and login failures older than LoginFailureRetention.
type ExpireArgs struct{}

// Kind implements river.JobArgs.
func (ExpireArgs) Kind() string { return "expire" }

// InsertOpts implements river.JobArgsWithInsertOpts. A failed run is soon replaced by the next
// periodic one, so few retries are enough.
func (ExpireArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 3} }

type expireWorker struct {
	river.WorkerDefaults[ExpireArgs]
	cfg Config
}

func (w *expireWorker) Work(ctx context.Context, job *river.Job[ExpireArgs]) error {
	now := w.cfg.Now()
	sessions, err := w.cfg.Sessions.DeleteExpiredSessions(ctx, now)
	if err != nil {
		return fmt.Errorf("expire sessions: %w", err)
	}
	tokens, err := w.cfg.Tokens.DeleteExpiredTokens(ctx, now.Add(-w.cfg.TokenGrace))
	if err != nil {
		return fmt.Errorf("expire api tokens: %w", err)
	}
	failures, err := w.cfg.Users.DeleteLoginFailuresBefore(ctx, now.Add(-LoginFailureRetention))
	if err != nil {
		return fmt.Errorf("expire login failures: %w", err)
	}
	attrs := []any{"job_id", job.ID, "sessions", sessions, "api_tokens", tokens, "login_failures", failures}
	if w.cfg.EnrolTokens != nil {
		enrol, err := w.cfg.EnrolTokens.DeleteExpiredEnrolTokens(ctx, now.Add(-w.cfg.TokenGrace))
		if err != nil {
			return fmt.Errorf("expire enrolment tokens: %w", err)
		}
		attrs = append(attrs, "enrol_tokens", enrol)
	}
	w.cfg.Logger.InfoContext(ctx, "expired stale credentials", attrs...)
	return nil
}
