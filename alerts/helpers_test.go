package alerts_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/defendersim"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/xdr"
	_ "github.com/quarry-dfir/quarry/xdr/defender" // registers the provider
)

// recordingAcquirer is an Acquirer on a real store: it creates queued acquisitions in the
// database, as the scheduler does before it launches them, and records every call.
type recordingAcquirer struct {
	acqs quarry.AcquisitionService

	mu    sync.Mutex
	calls []acquireCall
	fail  error // returned instead, when set
}

type acquireCall struct {
	projectID, connectionID int64
	hosts                   []string
	profile                 string
	force                   bool
}

func (r *recordingAcquirer) Acquire(ctx context.Context, projectID, connectionID int64, hostIDs []string, profile string, force bool) ([]*quarry.Acquisition, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, acquireCall{projectID, connectionID, slices.Clone(hostIDs), profile, force})
	if r.fail != nil {
		return nil, r.fail
	}
	var out []*quarry.Acquisition
	for _, h := range hostIDs {
		a := &quarry.Acquisition{ProjectID: projectID, ConnectionID: &connectionID, HostID: h, HostName: h, Source: quarry.SourceXDR,
			Profile: profile, State: quarry.AcquisitionQueued}
		if err := r.acqs.CreateAcquisition(ctx, a); err != nil {
			return out, err
		}
		out = append(out, a)
	}
	return out, nil
}

func (r *recordingAcquirer) Calls() []acquireCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// recordingClient wraps a provider client, recording ListAlerts' since and the comments.
type recordingClient struct {
	xdr.Client
	mu       sync.Mutex
	since    []time.Time
	comments map[string][]string
	throttle int // ListAlerts calls to refuse with ErrThrottled
	// alerts is what ListAlerts returns (those updated at or after since) without a Client.
	alerts []xdr.Alert
}

func (c *recordingClient) SetAlerts(as []xdr.Alert) {
	c.mu.Lock()
	c.alerts = slices.Clone(as)
	c.mu.Unlock()
}

func (c *recordingClient) ListAlerts(ctx context.Context, since time.Time) ([]xdr.Alert, error) {
	c.mu.Lock()
	c.since = append(c.since, since)
	if c.throttle > 0 {
		c.throttle--
		c.mu.Unlock()
		return nil, &xdr.Error{Kind: xdr.ErrThrottled, Message: "test throttle"}
	}
	if c.Client == nil {
		defer c.mu.Unlock()
		var out []xdr.Alert
		for _, a := range c.alerts {
			if !a.UpdatedAt.Before(since) {
				out = append(out, a)
			}
		}
		return out, nil
	}
	c.mu.Unlock()
	return c.Client.ListAlerts(ctx, since)
}

func (c *recordingClient) CommentAlert(ctx context.Context, id, comment string) error {
	c.mu.Lock()
	if c.comments == nil {
		c.comments = map[string][]string{}
	}
	c.comments[id] = append(c.comments[id], comment)
	c.mu.Unlock()
	if cm, ok := c.Client.(xdr.AlertCommenter); ok {
		return cm.CommentAlert(ctx, id, comment)
	}
	return nil
}

func (c *recordingClient) Since() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.since)
}

// simConnection stores a connection to the emulator and returns it with a function that opens
// its provider client at the emulator's time scale (as integration.Service.Client would, with
// the secret unsealed).
func simConnection(t *testing.T, db *sqldb.DB, sim *defendersim.Sim, scale float64) (*quarry.Connection, func() (xdr.Client, error)) {
	t.Helper()
	app := sim.DefaultApp()
	c := &quarry.Connection{Provider: "defender", Name: "sim", TenantID: app.TenantID, ClientID: app.ClientID, Cloud: "custom",
		APIURL: sim.APIURL(), AuthorityURL: sim.AuthorityURL(), CACertPEM: string(sim.CACertPEM()), SecretSealed: "unused"}
	if err := sqldb.NewConnectionService(db).CreateConnection(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	provider, _ := xdr.Lookup("defender")
	open := func() (xdr.Client, error) {
		return provider.Open(xdr.Config{TenantID: app.TenantID, ClientID: app.ClientID, ClientSecret: app.ClientSecret, Cloud: "custom",
			APIURL: sim.APIURL(), AuthorityURL: sim.AuthorityURL(), CACertPEM: sim.CACertPEM(), TimeScale: scale})
	}
	return c, open
}

// testClock is an injectable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func mustProject(t *testing.T, db *sqldb.DB, name string) *quarry.Project {
	t.Helper()
	p := &quarry.Project{Name: name}
	if err := sqldb.NewProjectService(db).CreateProject(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func ptr[T any](v T) *T { return &v }

func describe(as []*quarry.Alert) string {
	s := ""
	for _, a := range as {
		s += fmt.Sprintf("%s@%s ", a.ExternalID, a.HostName)
	}
	return s
}

func itoa(n int64) string { return fmt.Sprint(n) }
