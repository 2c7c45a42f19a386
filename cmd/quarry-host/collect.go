package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry/collector"
	"github.com/quarry-dfir/quarry/collector/livestate"
	"github.com/quarry-dfir/quarry/collector/priority"
	"github.com/quarry-dfir/quarry/upload"
)

func runCollect(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := newFlagSet("collect", stderr)
	profile := fs.String("profile", "triage", "what to collect and the default budgets: light, triage or full")
	groups := fs.String("groups", "", "comma-separated groups or targets to collect (default: all of the profile; see 'quarry-host targets')")
	var include, exclude stringList
	fs.Var(&include, "include", "also collect files matching this glob (repeatable; * ? [..] within a name, ** any depth)")
	fs.Var(&exclude, "exclude", "never collect files matching this glob (repeatable)")
	goos := fs.String("os", "auto", "file system to expect: auto, windows, linux or darwin")
	root := fs.String("root", "", "collect from this folder (a mounted image) instead of the live system; skips live state")
	maxFile := fs.String("max-file-size", "", "largest file to collect whole, e.g. 200MB (default: the profile's)")
	maxTotal := fs.String("max-total-size", "", "stop collecting after this many bytes, e.g. 4GB (default: the profile's)")
	maxDur := fs.Duration("max-duration", 0, "stop collecting after this long, e.g. 30m (default: the profile's)")
	out := fs.String("out", "", "write the package to this file instead of sending it")
	acq := fs.String("acquisition", "", "acquisition id to record in the manifest (with --server, the server's is used)")
	spool := fs.String("spool", os.TempDir(), "folder for the package before upload and for the --detach log")
	detached := fs.Bool("detach", false, "start in the background, print {\"status\",\"acquisition\",\"pid\",\"log\"} (or {\"status\":\"error\",\"error\"}) as one line of JSON and exit at once")
	var so serverOptions
	so.register(fs)
	fs.StringVar(&so.enrolToken, "enrol-token", "", "enrolment token (qe_…) of a bootstrap script: trade it for the upload token of --acquisition, then go on as with --token")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *detached {
		// A Live Response script relays our stdout: one line of JSON is what it reports, so a
		// failure must be that line too, not only text on stderr.
		defer func() {
			if err != nil {
				printJSON(stdout, struct {
					Status string `json:"status"`
					Error  string `json:"error"`
				}{"error", strings.Join(strings.Fields(err.Error()), " ")})
			}
		}()
	}
	if len(pos) > 0 {
		return usagef("collect: unexpected argument %q", pos[0])
	}

	opts := collector.Options{
		Profile: *profile, Include: include, Exclude: exclude, OS: *goos, Root: *root,
		MaxDuration: *maxDur, AcquisitionID: *acq, Version: Version,
	}
	if _, ok := collector.Profiles()[*profile]; !ok {
		return usagef("--profile %q: want light, triage or full", *profile)
	}
	switch *goos {
	case "auto", "windows", "linux", "darwin":
	default:
		return usagef("--os %q: want auto, windows, linux or darwin", *goos)
	}
	if *groups != "" {
		ts, err := collector.DefaultTargets()
		if err != nil {
			return err
		}
		for _, g := range strings.Split(*groups, ",") {
			g = strings.TrimSpace(g)
			switch {
			case g == "":
			case slices.Contains(ts.Groups(), g) || ts.Get(g) != nil:
				opts.Groups = append(opts.Groups, g)
			default:
				return usagef("--groups: unknown group or target %q (see 'quarry-host targets')", g)
			}
		}
	}
	for _, s := range []struct {
		flag, val string
		dst       *int64
	}{{"max-file-size", *maxFile, &opts.MaxFileSize}, {"max-total-size", *maxTotal, &opts.MaxTotalSize}} {
		if s.val == "" {
			continue
		}
		if *s.dst, err = collector.ParseSize(s.val); err != nil || *s.dst == 0 {
			return usagef("--%s %q: want a size such as 500MB or 2GB", s.flag, s.val)
		}
	}
	if *maxDur < 0 {
		return usagef("--max-duration must not be negative")
	}
	if so.enrolToken != "" && *acq != "" {
		n, err := strconv.ParseInt(*acq, 10, 64)
		if err != nil || n <= 0 {
			return usagef("--acquisition %q: want the acquisition's id, a positive number", *acq)
		}
		so.acquisition = n
	}
	if err := so.check(*out != ""); err != nil {
		return err
	}
	log := newLogger(stderr)
	// Enrolment comes first, also before detaching: a wrong token or acquisition is then
	// reported by the script that started us, within seconds.
	if err := so.enrol(ctx, *goos, log); err != nil {
		return err
	}
	if *detached {
		var acqID int64
		if so.server != "" {
			// Checked here too, so the Live Response script that starts us reports a bad token,
			// certificate or proxy at once instead of "started" and a failure in a log file.
			c, err := so.client(log)
			if err != nil {
				return err
			}
			pctx, cancel := context.WithTimeout(ctx, time.Minute)
			pf, err := c.Preflight(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("preflight: %w", err)
			}
			acqID = pf.AcquisitionID
		}
		if err := os.MkdirAll(*spool, 0o700); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		return detach(fs, so.token, acqID, *spool, stdout)
	}

	opts.Logger = log
	opts.LiveState = func(ctx context.Context) map[string]any { return liveErrors(livestate.Collect(ctx)) }
	if *root != "" {
		opts.LiveState = func(context.Context) map[string]any { return liveErrors(livestate.Root(*root)) }
	}
	acc, closeAcc, err := liveAccessor(*root, *goos)
	if err != nil {
		return err
	}
	defer closeAcc()
	opts.Accessor = acc

	if *out != "" {
		res, err := collector.CollectToFile(ctx, *out, opts)
		if err != nil {
			return err
		}
		return printJSON(stdout, map[string]any{
			"status": "written", "package": res.Path, "sha256": res.SHA256, "size": res.Size,
			"files": res.Manifest.Stats.Files, "skipped": res.Manifest.Stats.Skipped,
		})
	}
	return collectAndSend(ctx, so, *spool, opts, log, stdout)
}

// collectAndSend is `collect --server`: preflight first so a bad token, certificate or proxy fails in
// seconds, then collect into the spool folder, then upload, reporting progress all along.
func collectAndSend(ctx context.Context, so serverOptions, spool string, opts collector.Options, log *slog.Logger, stdout io.Writer) error {
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	ss, ctx, err := startSession(ctx, so, log, upload.PhaseStarting)
	if err != nil {
		return err
	}
	defer ss.close()
	if opts.AcquisitionID != "" && opts.AcquisitionID != strconv.FormatInt(ss.acq, 10) {
		log.Warn("--acquisition differs from the token's acquisition; using the server's", "flag", opts.AcquisitionID, "server", ss.acq)
	}
	opts.AcquisitionID = strconv.FormatInt(ss.acq, 10)
	if err := priority.Lower(); err != nil {
		log.Warn("could not lower priority; collecting at normal priority", "err", err)
	}
	opts.Progress = func(p collector.Progress) {
		ss.prog.set(upload.Heartbeat{Phase: upload.PhaseCollecting, FilesDone: int64(p.FilesDone), BytesDone: p.BytesDone, BytesTotal: p.BytesTotal})
	}
	pkg := filepath.Join(spool, packageName(ss.acq))
	res, err := collector.CollectToFile(ctx, pkg, opts)
	if err != nil {
		return ss.fail(ctx, upload.PhaseFailed, err)
	}
	log.Info("package written", "path", pkg, "size", res.Size, "files", res.Manifest.Stats.Files, "skipped", res.Manifest.Stats.Skipped)
	if ss.maxBytes > 0 && res.Size > ss.maxBytes {
		return ss.fail(ctx, upload.PhaseFailed, fmt.Errorf("package is %d bytes, the server accepts at most %d; it is kept at %s", res.Size, ss.maxBytes, pkg))
	}
	return ss.send(ctx, pkg, res.SHA256, int64(res.Manifest.Stats.Files), stdout)
}

// liveErrors turns livestate's way of saying an item is missing (a string in place of the data) into
// the collector's (a document with an "error" field), so the reason lands in the manifest.
func liveErrors(m map[string]any) map[string]any {
	for k, v := range m {
		if s, ok := v.(string); ok {
			m[k] = map[string]any{"error": s}
		}
	}
	return m
}

// packageName names a package so an operator looking into the spool folder knows what it is.
func packageName(acq int64) string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r == '-' || r == '.' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, host)
	if host == "" {
		host = "host"
	}
	return fmt.Sprintf("quarry-%d-%s-%s.zip", acq, host, time.Now().UTC().Format("20060102T150405Z"))
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
