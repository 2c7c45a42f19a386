package alerts_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/alerts"
	mde "github.com/quarry-dfir/quarry/defender"
	"github.com/quarry-dfir/quarry/defendersim"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
	"github.com/quarry-dfir/quarry/xdr"
	xdrdefender "github.com/quarry-dfir/quarry/xdr/defender"
)

// pollScale runs the emulator (and the poller's interval) 1,000 times faster: a Defender minute
// is 60 ms, and every alert the emulator plans (over at most three hours of simulated time)
// appears within about 11 s.
const pollScale = 1000

// alertHorizon bounds, in simulated time, when the emulator's last alert appears: each
// compromised host gets at most four alerts, each at most 41 minutes after the one before.
const alertHorizon = 4*41*time.Minute + 5*time.Minute

// TestPollerAcrossRestart polls the emulator while its alerts appear, with one poller and then,
// on the same database, a second one (a restart). Together they store every alert the emulator
// shows exactly once, the second resumes from the stored watermark, and an alert changed on the
// platform (status) is updated in place.
func TestPollerAcrossRestart(t *testing.T) {
	ctx := t.Context()
	startedAt := time.Now()
	sim, err := defendersim.Start(ctx, defendersim.Options{Machines: 40, Seed: 11, TimeScale: pollScale, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	if len(sim.Compromised()) == 0 {
		t.Fatal("the emulator has no compromised host with seed 11 and 40 machines")
	}
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	conn, open := simConnection(t, db, sim, pollScale)
	store := sqldb.NewAlertService(db)

	newPoller := func() (*alerts.Service, *recordingClient) {
		inner, err := open()
		if err != nil {
			t.Fatal(err)
		}
		rc := &recordingClient{Client: inner}
		svc, err := alerts.New(alerts.Config{Alerts: store, Rules: sqldb.NewDetectionRuleService(db), Connections: sqldb.NewConnectionService(db),
			TimeScale: pollScale, Client: func(context.Context, *quarry.Connection) (xdr.Client, error) { return rc, nil }})
		if err != nil {
			t.Fatal(err)
		}
		return svc, rc
	}
	poll := func(svc *alerts.Service) *alerts.PollResult {
		t.Helper()
		for {
			res, err := svc.Poll(ctx, conn)
			if errors.Is(err, alerts.ErrTooSoon) {
				time.Sleep(svc.PollEvery() / 4)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
	}

	first, firstClient := newPoller()
	for range 3 {
		poll(first)
		time.Sleep(first.PollEvery())
	}
	if s := firstClient.Since(); len(s) != 3 || !s[0].Before(startedAt.Add(-48*time.Hour)) {
		t.Fatalf("first poller's since = %v, want 3 calls, the first reaching back past the emulator's 47 h of history", s)
	}
	wm, err := store.AlertWatermark(ctx, conn.ID)
	if err != nil || wm.IsZero() {
		t.Fatalf("watermark after the first poller = %v, %v", wm, err)
	}
	beforeRestart, _, _ := store.FindAlerts(ctx, quarry.AlertFilter{Limit: 1000})

	// The restart: a new poller, nothing shared with the first but the database.
	second, secondClient := newPoller()
	poll(second)
	if s := secondClient.Since(); len(s) != 1 || !s[0].Equal(wm.Add(-alerts.DefaultOverlap)) {
		t.Fatalf("second poller's first since = %v, want the stored watermark %v less the overlap", s, wm)
	}

	// Change an alert on the platform; the poller must update it, not add it again.
	stored, _, err := store.FindAlerts(ctx, quarry.AlertFilter{Limit: 1})
	if err != nil || len(stored) == 0 {
		t.Fatalf("no alert stored: %v", err)
	}
	changed := stored[0]
	api, err := open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.(*xdrdefender.Client).API().UpdateAlert(ctx, changed.ExternalID, mde.AlertUpdate{Status: "InProgress"}); err != nil {
		t.Fatal(err)
	}

	horizon := startedAt.Add(time.Duration(float64(alertHorizon) / pollScale))
	for time.Now().Before(horizon) {
		poll(second)
		time.Sleep(second.PollEvery())
	}
	// Every alert the platform shows before the last poll must be stored, and nothing the
	// platform does not show after it.
	listAll := func() map[string]xdr.Alert {
		t.Helper()
		as, err := api.ListAlerts(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]xdr.Alert{}
		for _, a := range as {
			m[a.ID] = a
		}
		return m
	}
	before := listAll()
	time.Sleep(second.PollEvery())
	poll(second)
	after := listAll()

	all, total, err := store.FindAlerts(ctx, quarry.AlertFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]*quarry.Alert{}
	for _, a := range all {
		if seen[a.ExternalID] != nil {
			t.Errorf("alert %s stored twice (ids %d and %d)", a.ExternalID, seen[a.ExternalID].ID, a.ID)
		}
		seen[a.ExternalID] = a
		if _, ok := after[a.ExternalID]; !ok {
			t.Errorf("stored alert %s is not on the platform", a.ExternalID)
		}
		if a.UpdatedAt.After(wmOf(t, store, conn.ID)) {
			t.Errorf("alert %s updated at %v, after the stored watermark", a.ExternalID, a.UpdatedAt)
		}
	}
	for id, a := range before {
		s := seen[id]
		if s == nil {
			t.Errorf("platform alert %s (%s on %s) was never stored", id, a.Title, a.HostName)
			continue
		}
		if s.Status != a.Status || !s.UpdatedAt.Equal(a.UpdatedAt.Truncate(time.Microsecond)) {
			t.Errorf("alert %s stored as %s at %v, platform has %s at %v", id, s.Status, s.UpdatedAt, a.Status, a.UpdatedAt)
		}
	}
	if total != len(all) || len(seen) != total {
		t.Errorf("total %d, listed %d, distinct %d", total, len(all), len(seen))
	}
	if got := seen[changed.ExternalID]; got == nil || got.ID != changed.ID || got.Status != "InProgress" {
		t.Errorf("changed alert = %+v, want row %d with status InProgress", got, changed.ID)
	}
	t.Logf("%d alerts before the restart, %d at the end, %d on the platform; %d list calls after the restart",
		len(beforeRestart), len(all), len(after), len(secondClient.Since()))
}

func wmOf(t *testing.T, s *sqldb.AlertService, connectionID int64) time.Time {
	t.Helper()
	wm, err := s.AlertWatermark(t.Context(), connectionID)
	if err != nil {
		t.Fatal(err)
	}
	return wm
}
