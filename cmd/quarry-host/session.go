package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/quarry-dfir/quarry/upload"
)

// serverOptions are the flags for talking to quarry, shared by collect and upload.
type serverOptions struct {
	server, token, caCert string
	insecure              bool
	heartbeat             time.Duration
	// enrolToken is collect's --enrol-token: the bootstrap script's token, traded for the
	// upload token of acquisition before anything else happens.
	enrolToken  string
	acquisition int64
	warned      bool
}

func (o *serverOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.server, "server", "", "quarry server URL, e.g. https://quarry.example.com")
	fs.StringVar(&o.token, "token", "", "upload token of the acquisition (or set "+tokenEnv+")")
	fs.StringVar(&o.caCert, "ca-cert", "", "PEM file of a CA to trust for the server, in addition to the system's")
	fs.BoolVar(&o.insecure, "insecure", false, "do not verify the server's TLS certificate (dangerous)")
	fs.DurationVar(&o.heartbeat, "heartbeat", 5*time.Second, "interval between progress reports to the server")
}

// check validates the flags; toFile says the output goes to --out instead of a server.
func (o *serverOptions) check(toFile bool) error {
	if o.token == "" && o.enrolToken == "" {
		o.token = os.Getenv(tokenEnv)
	}
	switch {
	case toFile && o.server != "":
		return usagef("give either --out or --server, not both")
	case toFile && (o.caCert != "" || o.insecure):
		return usagef("--ca-cert and --insecure need --server")
	case toFile && o.enrolToken != "":
		return usagef("--enrol-token needs --server")
	case toFile:
		return nil
	case o.server == "":
		return usagef("give --out FILE or --server URL")
	case o.token != "" && o.enrolToken != "":
		return usagef("give either --token or --enrol-token, not both")
	case strings.HasPrefix(o.token, "qe_"):
		return usagef("--token got an enrolment token (qe_…); pass it as --enrol-token with --acquisition N")
	case o.enrolToken != "" && !strings.HasPrefix(o.enrolToken, "qe_"):
		return usagef("--enrol-token: want the enrolment token (qe_…) of the bootstrap script")
	case o.enrolToken != "" && o.acquisition <= 0:
		return usagef("--enrol-token needs --acquisition N, the id of the acquisition to enrol")
	case o.token == "" && o.enrolToken == "":
		return usagef("--server needs --token (or %s) or --enrol-token", tokenEnv)
	case !strings.HasPrefix(o.server, "https://") && !strings.HasPrefix(o.server, "http://"):
		return usagef("--server %q: want an https:// URL", o.server)
	case o.heartbeat <= 0:
		return usagef("--heartbeat must be positive")
	}
	return nil
}

func (o *serverOptions) client(log *slog.Logger) (*upload.Client, error) {
	o.warn(log)
	return upload.New(o.config(o.token, log))
}

// warn says loudly when the connection to the server is not protected.
func (o *serverOptions) warn(log *slog.Logger) {
	if o.warned {
		return
	}
	o.warned = true
	if o.insecure {
		log.Warn("WARNING: --insecure: the server's certificate is NOT verified; anyone on the path can read or change the evidence and steal the token")
	}
	if strings.HasPrefix(o.server, "http://") {
		log.Warn("WARNING: plain http: the evidence and the token travel unencrypted")
	}
}

func (o *serverOptions) config(token string, log *slog.Logger) upload.Config {
	return upload.Config{
		Server: o.server, Token: token, CACertFile: o.caCert, Insecure: o.insecure,
		Logf: func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) },
	}
}

// enrol trades the enrolment token for the acquisition's upload token, which then serves as
// --token would. goos is the --os flag ("auto": this build's platform).
func (o *serverOptions) enrol(ctx context.Context, goos string, log *slog.Logger) error {
	if o.enrolToken == "" {
		return nil
	}
	o.warn(log)
	host, _ := os.Hostname()
	if goos == "auto" {
		goos = runtime.GOOS
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tok, err := upload.Enrol(ctx, o.config(o.enrolToken, log), o.acquisition, host, goos)
	if err != nil {
		return err
	}
	log.Info("enrolled", "acquisition", o.acquisition, "hostname", host)
	o.token, o.enrolToken = tok, ""
	return nil
}

// session is one run's conversation with the server: the client, the progress its heartbeat
// goroutine reports, and the cancellation that the server can trigger by closing the acquisition.
type session struct {
	c        *upload.Client
	log      *slog.Logger
	prog     progress
	acq      int64
	maxBytes int64
	stop     func() // ends the heartbeats
	cancel   context.CancelCauseFunc
}

// startSession runs the preflight, reports phase and starts the heartbeats. The returned context
// ends when the caller's does or when the server says the acquisition is over.
func startSession(ctx context.Context, so serverOptions, log *slog.Logger, phase string) (*session, context.Context, error) {
	c, err := so.client(log)
	if err != nil {
		return nil, nil, err
	}
	pf, err := c.Preflight(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("preflight: %w", err)
	}
	log.Info("preflight ok", "acquisition", pf.AcquisitionID, "clock_skew", pf.ClockSkew.Round(time.Second).String())
	ss := &session{c: c, log: log, acq: pf.AcquisitionID, maxBytes: pf.MaxUploadBytes}
	ss.prog.set(upload.Heartbeat{Phase: phase})
	if err := c.Heartbeat(ctx, ss.prog.get()); errors.Is(err, upload.ErrAcquisitionClosed) {
		return nil, nil, err
	}
	ctx, ss.cancel = context.WithCancelCause(ctx)
	ss.stop = c.Heartbeats(ctx, so.heartbeat, ss.prog.get, func(err error) {
		log.Error("stopping: " + err.Error())
		ss.cancel(err)
	})
	return ss, ctx, nil
}

func (ss *session) close() {
	ss.stop()
	ss.cancel(nil)
}

// fail ends the heartbeats with a last report of phase and returns err, or the server's reason when
// it was the server that stopped the work.
func (ss *session) fail(ctx context.Context, phase string, err error) error {
	ss.stop()
	if cause := context.Cause(ctx); errors.Is(cause, upload.ErrAcquisitionClosed) {
		return cause
	}
	hb := ss.prog.get()
	hb.Phase, hb.Message = phase, err.Error()
	ss.beat(ctx, hb)
	return err
}

// send uploads pkg, reports the outcome in a last heartbeat and on stdout, and removes the package
// only once the server confirmed it holds it; otherwise the package stays, resumable, and the error
// says where it is.
func (ss *session) send(ctx context.Context, pkg, sum string, files int64, stdout io.Writer) error {
	ss.prog.set(upload.Heartbeat{Phase: upload.PhaseUploading, FilesDone: files})
	st, err := ss.c.UploadFile(ctx, pkg, upload.Options{SHA256: sum, AcquisitionID: ss.acq, Progress: func(done, total int64) {
		ss.prog.set(upload.Heartbeat{Phase: upload.PhaseUploading, FilesDone: files, BytesDone: done, BytesTotal: total})
	}})
	switch {
	case err == nil:
	case st.State != "":
		printJSON(stdout, map[string]any{"status": st.State, "error": st.Error, "package": pkg})
		return ss.fail(ctx, upload.PhaseFailed, fmt.Errorf("%w; the package is kept at %s", err, pkg))
	case errors.Is(err, context.Canceled) && context.Cause(ctx) == context.Canceled:
		// Interrupted by the operator: the upload is not failed, only paused, so the last report
		// keeps the phase and the server keeps taking the rest.
		return ss.fail(ctx, upload.PhaseUploading, fmt.Errorf("interrupted; the package is kept at %s and 'quarry-host upload %s --server ... --token ...' continues the upload", pkg, pkg))
	default:
		return ss.fail(ctx, upload.PhaseFailed, fmt.Errorf("%w; the package is kept at %s", err, pkg))
	}
	ss.stop()
	hb := ss.prog.get()
	hb.Phase, hb.BytesDone = upload.PhaseDone, hb.BytesTotal
	ss.beat(ctx, hb)
	for _, p := range []string{pkg, upload.StatePath(pkg)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("received, but removing the local copy failed: %w", err)
		}
	}
	return printJSON(stdout, map[string]any{"status": st.State, "evidence_id": st.EvidenceID, "sha256": st.SHA256})
}

// beat sends one heartbeat, also after ctx was cancelled (to say why), and ignores failures:
// heartbeats are best effort.
func (ss *session) beat(ctx context.Context, hb upload.Heartbeat) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ss.c.Heartbeat(ctx, hb)
}

// progress is the latest state for the heartbeat goroutine; the collector and the upload write it.
type progress struct {
	v atomic.Pointer[upload.Heartbeat]
}

func (p *progress) set(hb upload.Heartbeat) { p.v.Store(&hb) }

func (p *progress) get() upload.Heartbeat {
	if hb := p.v.Load(); hb != nil {
		return *hb
	}
	return upload.Heartbeat{Phase: upload.PhaseStarting}
}

func printJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
