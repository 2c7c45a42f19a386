package integration_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/defendersim"
	"github.com/quarry-dfir/quarry/integration"
	"github.com/quarry-dfir/quarry/secret"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
	_ "github.com/quarry-dfir/quarry/xdr/defender"
)

// setup returns the service on a real database, talking to a real emulator through the real
// Defender provider, with a clock the test moves.
func setup(t *testing.T, machines int) (*integration.Service, *defendersim.Sim, *time.Time) {
	t.Helper()
	sim, err := defendersim.Start(context.Background(), defendersim.Options{Machines: machines, Seed: 3, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	box, err := secret.NewBox(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	s := &integration.Service{
		Connections: sqldb.NewConnectionService(db), Hosts: sqldb.NewHostService(db), Box: box,
		Now: func() time.Time { return now }, InventoryTTL: 5 * time.Minute,
	}
	return s, sim, &now
}

func newConn(sim *defendersim.Sim, name string) integration.NewConnection {
	app := sim.DefaultApp()
	return integration.NewConnection{Provider: "defender", Name: name, TenantID: app.TenantID, ClientID: app.ClientID, ClientSecret: app.ClientSecret,
		Cloud: "custom", APIURL: sim.APIURL(), AuthorityURL: sim.AuthorityURL(), CACertPEM: string(sim.CACertPEM())}
}

func machineCalls(sim *defendersim.Sim) int {
	n := 0
	for k, v := range sim.Stats().CallsByEndpoint {
		if strings.Contains(strings.ToLower(k), "machines") && !strings.Contains(strings.ToLower(k), "action") {
			n += v
		}
	}
	return n
}

func TestInventoryCache(t *testing.T) {
	s, sim, now := setup(t, 60)
	ctx := context.Background()
	c, res, err := s.Create(ctx, newConn(sim, "cache"))
	if err != nil || !res.OK {
		t.Fatalf("Create = %v, %+v", err, res)
	}
	start := machineCalls(sim)
	page, err := s.ListHosts(ctx, quarry.HostFilter{ConnectionID: c.ID, Limit: 10}, false)
	if err != nil || page.Total != 60 || len(page.Hosts) != 10 {
		t.Fatalf("first ListHosts = %+v, %v", page, err)
	}
	fetched := machineCalls(sim)
	if fetched-start < 1 {
		t.Fatal("first ListHosts did not fetch the inventory")
	}

	// Within the TTL, paging costs no Defender call, even from many goroutines.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := s.ListHosts(ctx, quarry.HostFilter{ConnectionID: c.ID, Offset: i * 5, Limit: 5}, false); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	if got := machineCalls(sim); got != fetched {
		t.Fatalf("paging within the TTL cost %d Defender calls", got-fetched)
	}

	// Past the TTL, concurrent callers share one fetch.
	*now = now.Add(6 * time.Minute)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.ListHosts(ctx, quarry.HostFilter{ConnectionID: c.ID, Limit: 5}, false); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := machineCalls(sim) - fetched; got < 1 || got > 2 {
		t.Fatalf("a stale inventory read by 8 callers cost %d fetches, want 1 (2 if one caller came after the first finished)", got)
	}

	// When the platform fails, a stale inventory is still served; a forced refresh reports it.
	*now = now.Add(6 * time.Minute)
	sim.FailNext("GET", "/api/machines", 503, 100)
	page, err = s.ListHosts(ctx, quarry.HostFilter{ConnectionID: c.ID, Limit: 5}, false)
	if err != nil || page.Total != 60 {
		t.Fatalf("stale inventory not served while Defender fails: %+v, %v", page, err)
	}
	if _, err := s.ListHosts(ctx, quarry.HostFilter{ConnectionID: c.ID, Limit: 5}, true); quarry.ErrorCode(err) != quarry.EUNAVAILABLE {
		t.Fatalf("forced refresh during an outage = %v (code %s), want unavailable", err, quarry.ErrorCode(err))
	}
}

func TestCreateAndRotate(t *testing.T) {
	s, sim, _ := setup(t, 5)
	ctx := context.Background()
	bad := newConn(sim, "bad")
	bad.ClientSecret = "wrong-wrong-wrong"
	if _, _, err := s.Create(ctx, bad); quarry.ErrorField(err) != "client_secret" {
		t.Fatalf("Create with a wrong secret = %v", err)
	}
	if _, total, _ := s.Connections.FindConnections(ctx, quarry.ConnectionFilter{}); total != 0 {
		t.Fatalf("a refused connection was saved (%d)", total)
	}
	c, _, err := s.Create(ctx, newConn(sim, "good"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(c.SecretSealed, sim.DefaultApp().ClientSecret) || !strings.HasPrefix(c.SecretSealed, "v1:") {
		t.Fatalf("secret not sealed: %q", c.SecretSealed)
	}
	if _, _, err := s.RotateSecret(ctx, c.ID, "also-wrong"); quarry.ErrorField(err) != "client_secret" {
		t.Fatalf("rotation to a wrong secret = %v", err)
	}
	if _, res, err := s.Check(ctx, c.ID); err != nil || !res.OK {
		t.Fatalf("check after a refused rotation = %+v, %v", res, err)
	}
	// A sealed secret moved to another connection's row does not open there.
	c2, _, err := s.Create(ctx, newConn(sim, "other"))
	if err != nil {
		t.Fatal(err)
	}
	c2.SecretSealed = c.SecretSealed
	c2.ClientID = "another-client"
	if _, err := s.Client(ctx, c2); err == nil {
		t.Fatal("a sealed secret opened under another connection's identity")
	}
}

// TestClientReuse: inventory refreshes and checks of one connection share one provider client,
// so the platform is not asked for a new access token each time; a rotation replaces it.
func TestClientReuse(t *testing.T) {
	s, sim, _ := setup(t, 5)
	ctx := context.Background()
	c, _, err := s.Create(ctx, newConn(sim, "reuse"))
	if err != nil {
		t.Fatal(err)
	}
	tokens := func() int {
		n := 0
		for k, v := range sim.Stats().CallsByEndpoint {
			if strings.Contains(strings.ToLower(k), "token") {
				n += v
			}
		}
		return n
	}
	if _, _, err := s.Check(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	before := tokens()
	if before == 0 {
		t.Fatalf("the emulator counted no token calls: %v", sim.Stats().CallsByEndpoint)
	}
	for range 3 {
		if err := s.Refresh(ctx, c); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Check(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
	}
	if got := tokens() - before; got != 0 {
		t.Fatalf("3 refreshes and checks asked for %d new tokens, want 0", got)
	}
	c2, _, err := s.RotateSecret(ctx, c.ID, sim.DefaultApp().ClientSecret)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Client(ctx, c)
	b, _ := s.Client(ctx, c2)
	if a == b {
		t.Fatal("a rotated connection still uses its old client")
	}
}
