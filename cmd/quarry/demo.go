package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/auth"
	"github.com/quarry-dfir/quarry/defendersim"
	"github.com/quarry-dfir/quarry/integration"
	"github.com/quarry-dfir/quarry/sqldb"
)

// demoConnection names the connection the demo adds for its emulated tenant.
const demoConnection = "Demo tenant (Defender emulator)"

func init() {
	register("demo", "run Quarry with everything embedded and print a login (try this first)", runDemo)
}

// demoCredentials is what the demo prints so a newcomer can sign in and call the API.
type demoCredentials struct {
	URL, Username, Password, Token string
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("quarry demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	data := fs.String("data", "./quarry-demo", "data directory (kept between runs)")
	hosts := fs.Int("hosts", 40, "number of simulated Defender hosts")
	verbose := fs.Bool("v", false, "log every request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *hosts < 0 {
		return fmt.Errorf("--hosts must be zero or more")
	}
	level := "warn"
	if *verbose {
		level = "debug"
	}
	logger, err := newLogger(stderr, level, "text")
	if err != nil {
		return err
	}
	m := NewMain(Config{Addr: *addr, DataDir: *data, LogLevel: level, LogFormat: "text", LRWindowMargin: time.Second}, logger)
	if err := m.Run(ctx); err != nil {
		return err
	}
	defer m.Close()
	// Build the collector for this platform now, not when the first host asks for it.
	go func() {
		if _, err := m.Collectors.Builds(ctx); err != nil {
			logger.Warn("no quarry-host build for this platform", "err", err)
		}
	}()
	creds, err := m.prepareDemo(ctx)
	if err != nil {
		return err
	}
	tenant := "none (--hosts 0)"
	if *hosts > 0 {
		if tenant, err = m.startDemoTenant(ctx, *hosts); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, `Quarry demo is running.

  Open:      %s/
  Sign in:   %s / %s
  API token: %s
             (try: curl -H "Authorization: Bearer %s" %s/api/v1/projects)
  Defender:  %s
  Data:      %s

Press Ctrl-C to stop.
`, creds.URL, creds.Username, creds.Password, creds.Token, creds.Token, creds.URL, tenant, m.Config.DataDir)
	<-ctx.Done()
	return m.Close()
}

// prepareDemo makes sure the demo admin exists with a fresh random password (the demo prints
// it, so every run gets a new one), issues a week-long API token, and creates a first project
// on an empty database.
func (m *Main) prepareDemo(ctx context.Context) (*demoCredentials, error) {
	const username = "admin"
	pw := randomPassword()
	users := m.Auth.Users
	u, err := users.FindUserByUsername(ctx, username)
	switch {
	case quarry.ErrorCode(err) == quarry.ENOTFOUND:
		if u, err = m.Auth.CreateUser(ctx, username, pw, quarry.RoleAdmin); err != nil {
			return nil, fmt.Errorf("demo: create admin: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("demo: find admin: %w", err)
	default:
		hash, err := auth.HashPassword(pw)
		if err != nil {
			return nil, err
		}
		enabled, admin := false, quarry.RoleAdmin
		if _, err := users.UpdateUser(ctx, u.ID, quarry.UserUpdate{PasswordHash: &hash, Disabled: &enabled, Role: &admin}); err != nil {
			return nil, fmt.Errorf("demo: reset admin password: %w", err)
		}
	}
	_, token, err := m.Auth.CreateToken(ctx, u.ID, "demo", quarry.RoleAdmin, 7*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("demo: create token: %w", err)
	}
	projects := sqldb.NewProjectService(m.DB)
	if _, total, err := projects.FindProjects(ctx, quarry.ProjectFilter{Limit: 1}); err != nil {
		return nil, err
	} else if total == 0 {
		if err := projects.CreateProject(ctx, &quarry.Project{Name: "Demo investigation", Description: "A first project to explore Quarry.", CreatedBy: u.ID}); err != nil {
			return nil, fmt.Errorf("demo: create project: %w", err)
		}
	}
	audit := sqldb.NewAuditService(m.DB)
	e := quarry.NewAuditEntry(ctx, "demo.prepare", "user", username)
	e.Details = map[string]any{"token": "created", "password": "reset"}
	if err := audit.RecordAudit(ctx, e); err != nil {
		return nil, err
	}
	return &demoCredentials{URL: m.URL(), Username: username, Password: pw, Token: token}, nil
}

// startDemoTenant starts the in-process Defender emulator, turns the Defender experiment on and
// makes sure a ready connection points at the emulator (whose port changes at every start).
func (m *Main) startDemoTenant(ctx context.Context, hosts int) (string, error) {
	sim, err := defendersim.Start(ctx, defendersim.Options{
		Machines: hosts, Seed: 1, DataDir: filepath.Join(m.Config.DataDir, "defender-sim"),
		Logger: m.Logger.With("part", "defender-sim"),
	})
	if err != nil {
		return "", fmt.Errorf("demo: start the Defender emulator: %w", err)
	}
	m.closers = append(m.closers, sim.Close)

	if _, err := sqldb.NewExperimentService(m.DB).SetExperiment(ctx, quarry.ExperimentDefenderXDR, true); err != nil {
		return "", fmt.Errorf("demo: turn on %s: %w", quarry.ExperimentDefenderXDR, err)
	}
	app := sim.DefaultApp()
	provider := "defender"
	conns, _, err := m.Integrations.Connections.FindConnections(ctx, quarry.ConnectionFilter{Provider: &provider, Limit: 1000})
	if err != nil {
		return "", err
	}
	for _, c := range conns {
		if c.Name != demoConnection {
			continue
		}
		api, authority, ca := sim.APIURL(), sim.AuthorityURL(), string(sim.CACertPEM())
		if _, err := m.Integrations.Connections.UpdateConnection(ctx, c.ID, quarry.ConnectionUpdate{APIURL: &api, AuthorityURL: &authority, CACertPEM: &ca}); err != nil {
			return "", fmt.Errorf("demo: update the emulator connection: %w", err)
		}
		if _, _, err := m.Integrations.RotateSecret(ctx, c.ID, app.ClientSecret); err != nil {
			return "", fmt.Errorf("demo: check the emulator connection: %w", err)
		}
		return fmt.Sprintf("%d emulated hosts at %s (connection %q)", hosts, sim.APIURL(), demoConnection), nil
	}
	_, res, err := m.Integrations.Create(ctx, integration.NewConnection{
		Provider: provider, Name: demoConnection, TenantID: app.TenantID, ClientID: app.ClientID, ClientSecret: app.ClientSecret,
		Cloud: "custom", APIURL: sim.APIURL(), AuthorityURL: sim.AuthorityURL(), CACertPEM: string(sim.CACertPEM()),
	})
	if err != nil {
		return "", fmt.Errorf("demo: add the emulator connection: %w", err)
	}
	if !res.OK {
		return "", fmt.Errorf("demo: the emulator connection failed its check: %s", res.Message)
	}
	return fmt.Sprintf("%d emulated hosts at %s (connection %q)", hosts, sim.APIURL(), demoConnection), nil
}
