package quarry

import "context"

// Actor is who is acting: a user through a session or an API token, or the system itself.
// It travels in the request context so that services and the audit log can name it.
type Actor struct {
	User    *User
	Role    Role   // effective role: the user's, capped by the token's
	TokenID int64  // non-zero when acting through an API token
	IP      string // source address of the request
}

// Name is how the audit log names the actor.
func (a *Actor) Name() string {
	if a == nil || a.User == nil {
		return "system"
	}
	return a.User.Username
}

type actorKey struct{}

// NewContextWithActor returns ctx carrying a.
func NewContextWithActor(ctx context.Context, a *Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFromContext returns the actor in ctx, or nil for the system.
func ActorFromContext(ctx context.Context) *Actor {
	a, _ := ctx.Value(actorKey{}).(*Actor)
	return a
}

// UserIDFromContext returns the acting user's id, or 0 for the system.
func UserIDFromContext(ctx context.Context) int64 {
	if a := ActorFromContext(ctx); a != nil && a.User != nil {
		return a.User.ID
	}
	return 0
}
