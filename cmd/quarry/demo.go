package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
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
	acquire := fs.Int("acquire", 4, "hosts to acquire into the demo project on its first run, so its timeline fills by itself (0: none)")
	verbose := fs.Bool("v", false, "log every request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *hosts < 0 || *acquire < 0 {
		return fmt.Errorf("--hosts and --acquire must be zero or more")
	}
	level := "warn"
	if *verbose {
		level = "debug"
	}
	logger, err := newLogger(stderr, level, "text")
	if err != nil {
		return err
	}
	// The emulator's alerts go back two days: the demo's rule acts on all of them.
	m := NewMain(Config{Addr: *addr, DataDir: *data, LogLevel: level, LogFormat: "text", LRWindowMargin: time.Second,
		AlertRuleLookback: 48 * time.Hour}, logger)
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
	tenant, acquiring := "none (--hosts 0)", ""
	if *hosts > 0 {
		var sim *defendersim.Sim
		var connID int64
		if tenant, sim, connID, err = m.startDemoTenant(ctx, *hosts); err != nil {
			return err
		}
		if acquiring, err = m.firstDemoAcquisitions(ctx, sim, connID, *acquire); err != nil {
			return err
		}
		if err := m.demoDetectionRule(ctx, connID); err != nil {
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
%s
Press Ctrl-C to stop.
`, creds.URL, creds.Username, creds.Password, creds.Token, creds.Token, creds.URL, tenant, m.Config.DataDir, acquiring)
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
func (m *Main) startDemoTenant(ctx context.Context, hosts int) (string, *defendersim.Sim, int64, error) {
	sim, err := defendersim.Start(ctx, defendersim.Options{
		Machines: hosts, Seed: 1, DataDir: filepath.Join(m.Config.DataDir, "defender-sim"),
		Logger: m.Logger.With("part", "defender-sim"),
	})
	if err != nil {
		return "", nil, 0, fmt.Errorf("demo: start the Defender emulator: %w", err)
	}
	m.closers = append(m.closers, sim.Close)

	if _, err := sqldb.NewExperimentService(m.DB).SetExperiment(ctx, quarry.ExperimentDefenderXDR, true); err != nil {
		return "", nil, 0, fmt.Errorf("demo: turn on %s: %w", quarry.ExperimentDefenderXDR, err)
	}
	app := sim.DefaultApp()
	provider := "defender"
	conns, _, err := m.Integrations.Connections.FindConnections(ctx, quarry.ConnectionFilter{Provider: &provider, Limit: 1000})
	if err != nil {
		return "", nil, 0, err
	}
	for _, c := range conns {
		if c.Name != demoConnection {
			continue
		}
		api, authority, ca := sim.APIURL(), sim.AuthorityURL(), string(sim.CACertPEM())
		if _, err := m.Integrations.Connections.UpdateConnection(ctx, c.ID, quarry.ConnectionUpdate{APIURL: &api, AuthorityURL: &authority, CACertPEM: &ca}); err != nil {
			return "", nil, 0, fmt.Errorf("demo: update the emulator connection: %w", err)
		}
		if _, _, err := m.Integrations.RotateSecret(ctx, c.ID, app.ClientSecret); err != nil {
			return "", nil, 0, fmt.Errorf("demo: check the emulator connection: %w", err)
		}
		return fmt.Sprintf("%d emulated hosts at %s (connection %q)", hosts, sim.APIURL(), demoConnection), sim, c.ID, nil
	}
	c, res, err := m.Integrations.Create(ctx, integration.NewConnection{
		Provider: provider, Name: demoConnection, TenantID: app.TenantID, ClientID: app.ClientID, ClientSecret: app.ClientSecret,
		Cloud: "custom", APIURL: sim.APIURL(), AuthorityURL: sim.AuthorityURL(), CACertPEM: string(sim.CACertPEM()),
	})
	if err != nil {
		return "", nil, 0, fmt.Errorf("demo: add the emulator connection: %w", err)
	}
	if !res.OK {
		return "", nil, 0, fmt.Errorf("demo: the emulator connection failed its check: %s", res.Message)
	}
	return fmt.Sprintf("%d emulated hosts at %s (connection %q)", hosts, sim.APIURL(), demoConnection), sim, c.ID, nil
}

// firstDemoAcquisitions acquires up to n online hosts of the emulated tenant into the demo
// project when it has no acquisitions yet (a first run), the compromised ones first, so that a
// newcomer finds timelines with something to find within a minute or two.
func (m *Main) firstDemoAcquisitions(ctx context.Context, sim *defendersim.Sim, connID int64, n int) (string, error) {
	if n == 0 {
		return "", nil
	}
	projects, _, err := sqldb.NewProjectService(m.DB).FindProjects(ctx, quarry.ProjectFilter{Limit: 1})
	if err != nil || len(projects) == 0 {
		return "", err
	}
	p := projects[0]
	if _, total, err := sqldb.NewAcquisitionService(m.DB).FindAcquisitions(ctx, quarry.AcquisitionFilter{ProjectID: &p.ID, Limit: 1}); err != nil || total > 0 {
		return "", err
	}
	compromised := map[string]bool{}
	for _, id := range sim.Compromised() {
		compromised[id] = true
	}
	var first, rest []string
	for _, mc := range sim.Machines() {
		if mc.HealthStatus != "Active" {
			continue
		}
		if compromised[mc.ID] {
			first = append(first, mc.ID)
		} else {
			rest = append(rest, mc.ID)
		}
	}
	ids := append(first, rest...)
	ids = ids[:min(n, len(ids))]
	if len(ids) == 0 {
		return "", nil
	}
	if _, err := m.Scheduler.Acquire(ctx, p.ID, connID, ids, "light", false); err != nil {
		return "", fmt.Errorf("demo: acquire the first hosts: %w", err)
	}
	e := quarry.NewAuditEntry(ctx, "acquisition.create", "project", strconv.FormatInt(p.ID, 10))
	e.Details = map[string]any{"connection_id": connID, "host_ids": ids, "profile": "light", "by": "demo"}
	if err := sqldb.NewAuditService(m.DB).RecordAudit(ctx, e); err != nil {
		return "", err
	}
	return fmt.Sprintf("  Acquiring: %d hosts into %q; their timelines fill in as their packages arrive.\n", len(ids), p.Name), nil
}

// demoDetectionRule creates, on a database without detection rules, an enabled rule that
// acquires every host with a medium or higher Defender alert into a project of its own, so
// that the emulator's alerts drive acquisitions within a poll or two of the first start.
func (m *Main) demoDetectionRule(ctx context.Context, connID int64) error {
	rules := sqldb.NewDetectionRuleService(m.DB)
	if _, total, err := rules.FindDetectionRules(ctx, quarry.DetectionRuleFilter{Limit: 1}); err != nil || total > 0 {
		return err
	}
	p := &quarry.Project{Name: "Defender alerts", Description: "Hosts the demo's detection rule acquired because Defender raised an alert on them."}
	if err := sqldb.NewProjectService(m.DB).CreateProject(ctx, p); err != nil && quarry.ErrorCode(err) != quarry.ECONFLICT {
		return err
	} else if err != nil {
		name := p.Name
		ps, _, ferr := sqldb.NewProjectService(m.DB).FindProjects(ctx, quarry.ProjectFilter{Name: &name, Limit: 1})
		if ferr != nil || len(ps) == 0 {
			return err
		}
		p = ps[0]
	}
	r := &quarry.DetectionRule{Name: "Acquire hosts with medium or high alerts", Enabled: true, MinSeverity: "medium",
		ConnectionID: &connID, ProjectID: &p.ID, Profile: "light", Cooldown: 24 * time.Hour, CommentOnAlert: true}
	if err := rules.CreateDetectionRule(ctx, r); err != nil {
		return fmt.Errorf("demo: create the detection rule: %w", err)
	}
	e := quarry.NewAuditEntry(ctx, "detection_rule.create", "detection_rule", strconv.FormatInt(r.ID, 10))
	e.Details = map[string]any{"name": r.Name, "project_id": p.ID, "by": "demo"}
	return sqldb.NewAuditService(m.DB).RecordAudit(ctx, e)
}
