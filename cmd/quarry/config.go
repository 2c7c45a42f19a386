package main

import (
	"cmp"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry/detect"
)

// Config is the server's configuration. Every field has a flag and a QUARRY_* variable; a flag
// given on the command line wins over the variable.
type Config struct {
	Addr       string
	PublicURL  string
	Database   string // SQLite file path, or a postgres:// URL
	BlobURL    string // gocloud.dev/blob URL; default a folder under DataDir
	DataDir    string
	SecretKey  string // 32 bytes hex/base64; default: DataDir/secret.key, created on first start
	LogLevel   string
	LogFormat  string
	TrustProxy bool
	// CollectorDir holds release builds of quarry-host (quarry-host_<os>_<arch>[.exe]); without
	// one for the local platform the server builds it from source when it can.
	CollectorDir string
	// MaxUploadBytes caps one evidence package (0: the intake default, 20 GiB).
	MaxUploadBytes int64

	// Live Response limits per connection (design.md: Defender allows 25 sessions and 10
	// launches a minute). The window is a minute plus LRWindowMargin: Defender counts launches
	// when they reach it, so a launch whose request travels faster than the one ten launches
	// before it must not fall inside that one's minute.
	LRMaxSessions       int
	LRLaunchesPerMinute int
	LRWindowMargin      time.Duration
	// HeartbeatTimeout fails a collection whose collector went silent; OfflineExpiry expires an
	// acquisition whose host stayed offline (Defender keeps a queued action for 3 days).
	HeartbeatTimeout time.Duration
	OfflineExpiry    time.Duration
	// SignCert and SignKey are PEM files of an Authenticode code-signing certificate (with its
	// chain) and its key; when both are set the Windows bootstrap is signed with osslsigncode.
	SignCert string
	SignKey  string
	// TimeScale divides every Live Response wait, window and timeout, to run against a
	// Defender emulator started with the same --time-scale. Never set it against Defender.
	TimeScale float64
	// JobRescueAfter is how long a job a dead server was running waits before another takes it.
	JobRescueAfter time.Duration
	// ProcessingWorkers is how many packages this server processes at once: 0 picks (one on
	// SQLite, whose single writer a second would only wait for; two on PostgreSQL), -1 leaves
	// processing to other servers sharing the database.
	ProcessingWorkers int
	// SigmaRules are folders of Sigma rules (a checkout of SigmaHQ's rules, for example) that
	// processing evaluates on every event, besides Quarry's own unless NoBuiltinSigma.
	SigmaRules     []string
	NoBuiltinSigma bool
	// SeverityMap maps detection levels to event severities ("critical=alarm,high=alarm,
	// medium=suspicious"); empty is detect.DefaultSeverities.
	SeverityMap string
	severities  detect.Severities
	// AlertRuleLookback: detection rules act only on alerts the platform raised this recently.
	AlertRuleLookback time.Duration
	// AlertPollEvery is how often each connection's alerts are listed (divided by TimeScale).
	AlertPollEvery time.Duration

	envErr error // a malformed QUARRY_* value, reported by normalize
}

// bind declares the configuration flags on fs with defaults from the environment.
func (c *Config) bind(fs *flag.FlagSet, defaultAddr, defaultData string) {
	env := func(name, def string) string {
		if v, ok := os.LookupEnv("QUARRY_" + name); ok {
			return v
		}
		return def
	}
	fs.StringVar(&c.Addr, "addr", env("ADDR", defaultAddr), "listen address (QUARRY_ADDR)")
	fs.StringVar(&c.PublicURL, "public-url", env("PUBLIC_URL", ""), "URL users and collectors use to reach this server (QUARRY_PUBLIC_URL); default http://<addr>")
	fs.StringVar(&c.Database, "database", env("DATABASE", ""), "SQLite file or postgres:// URL (QUARRY_DATABASE); default <data>/quarry.db")
	fs.StringVar(&c.BlobURL, "blob-url", env("BLOB_URL", ""), "blob store URL: file://, s3:// (QUARRY_BLOB_URL); default <data>/blobs")
	fs.StringVar(&c.DataDir, "data", env("DATA_DIR", defaultData), "data directory (QUARRY_DATA_DIR)")
	// The key is read from the environment only: a flag would show it in the process list.
	c.SecretKey = env("SECRET_KEY", "")
	fs.StringVar(&c.LogLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (QUARRY_LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", env("LOG_FORMAT", "text"), "text or json (QUARRY_LOG_FORMAT)")
	fs.StringVar(&c.CollectorDir, "collector-dir", env("COLLECTOR_DIR", ""), "folder of quarry-host release builds quarry-host_<os>_<arch>[.exe] (QUARRY_COLLECTOR_DIR)")
	fs.Int64Var(&c.MaxUploadBytes, "max-upload-bytes", c.envInt("MAX_UPLOAD_BYTES", 0), "largest evidence package accepted, in bytes (QUARRY_MAX_UPLOAD_BYTES); default 20 GiB")
	fs.IntVar(&c.LRMaxSessions, "lr-max-sessions", int(c.envInt("LR_MAX_SESSIONS", 25)), "Live Response actions running at once per connection (QUARRY_LR_MAX_SESSIONS)")
	fs.IntVar(&c.LRLaunchesPerMinute, "lr-launches-per-minute", int(c.envInt("LR_LAUNCHES_PER_MINUTE", 10)), "Live Response launches per minute per connection (QUARRY_LR_LAUNCHES_PER_MINUTE)")
	fs.DurationVar(&c.LRWindowMargin, "lr-window-margin", c.envDuration("LR_WINDOW_MARGIN", time.Second), "added to the one-minute launch window against network jitter (QUARRY_LR_WINDOW_MARGIN)")
	fs.DurationVar(&c.HeartbeatTimeout, "heartbeat-timeout", c.envDuration("HEARTBEAT_TIMEOUT", 15*time.Minute), "fail a collection after this long without a collector heartbeat (QUARRY_HEARTBEAT_TIMEOUT)")
	fs.DurationVar(&c.OfflineExpiry, "offline-expiry", c.envDuration("OFFLINE_EXPIRY", 72*time.Hour), "expire an acquisition whose host stays offline this long (QUARRY_OFFLINE_EXPIRY)")
	fs.StringVar(&c.SignCert, "sign-cert", env("SIGN_CERT", ""), "PEM code-signing certificate (and chain) to Authenticode-sign the Windows bootstrap (QUARRY_SIGN_CERT)")
	fs.StringVar(&c.SignKey, "sign-key", env("SIGN_KEY", ""), "PEM private key of --sign-cert (QUARRY_SIGN_KEY)")
	fs.Float64Var(&c.TimeScale, "time-scale", 1, "only against a Defender emulator run with the same --time-scale: run Live Response limits and timeouts this many times faster")
	fs.DurationVar(&c.JobRescueAfter, "job-rescue-after", c.envDuration("JOB_RESCUE_AFTER", 5*time.Minute), "take up jobs that a dead server was running after this long (QUARRY_JOB_RESCUE_AFTER)")
	fs.IntVar(&c.ProcessingWorkers, "processing-workers", int(c.envInt("PROCESSING_WORKERS", 0)), "packages this server processes at once; 0 picks by database, -1 leaves processing to other servers (QUARRY_PROCESSING_WORKERS)")
	fs.Func("sigma-rules", "a folder of Sigma rules to evaluate on every event; repeat it for more, or list them in QUARRY_SIGMA_RULES separated by "+string(os.PathListSeparator), func(v string) error {
		c.SigmaRules = append(c.SigmaRules, v)
		return nil
	})
	if v := env("SIGMA_RULES", ""); v != "" {
		c.SigmaRules = filepath.SplitList(v)
	}
	fs.BoolVar(&c.NoBuiltinSigma, "no-builtin-sigma", env("NO_BUILTIN_SIGMA", "") == "true", "leave out Quarry's own Sigma rules (QUARRY_NO_BUILTIN_SIGMA=true)")
	fs.StringVar(&c.SeverityMap, "severity-map", env("SEVERITY_MAP", ""), "detection level to event severity, e.g. critical=alarm,high=alarm,medium=suspicious,low=none (QUARRY_SEVERITY_MAP)")
	fs.DurationVar(&c.AlertPollEvery, "alert-poll-every", c.envDuration("ALERT_POLL_EVERY", time.Minute), "how often each connection's alerts are listed: 1m is 60 of Defender's 1,500 calls an hour (QUARRY_ALERT_POLL_EVERY)")
	fs.DurationVar(&c.AlertRuleLookback, "alert-rule-lookback", c.envDuration("ALERT_RULE_LOOKBACK", 24*time.Hour), "detection rules act only on alerts raised this recently, so that a first poll of a long history does not acquire every host (QUARRY_ALERT_RULE_LOOKBACK)")
	fs.BoolVar(&c.TrustProxy, "trust-proxy", env("TRUST_PROXY", "") == "true", "take client addresses from X-Forwarded-For (QUARRY_TRUST_PROXY=true)")
}

// normalize fills derived defaults and checks values, with messages that say what to fix.
func (c *Config) normalize() error {
	if c.envErr != nil {
		return c.envErr
	}
	if c.DataDir == "" {
		return fmt.Errorf("the data directory is empty: set --data or QUARRY_DATA_DIR")
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("data directory %q: %w", c.DataDir, err)
	}
	c.DataDir = abs
	if c.Database == "" {
		c.Database = filepath.Join(c.DataDir, "quarry.db")
	}
	// An empty public URL defaults to the listen address, once it is known (Main.Run).
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("public URL %q must be an absolute http(s) URL", c.PublicURL)
		}
	}
	// Zero is the default, for a Config made in code (demo, tests) rather than from flags.
	c.LRMaxSessions = cmp.Or(c.LRMaxSessions, 25)
	c.LRLaunchesPerMinute = cmp.Or(c.LRLaunchesPerMinute, 10)
	c.HeartbeatTimeout = cmp.Or(c.HeartbeatTimeout, 15*time.Minute)
	c.OfflineExpiry = cmp.Or(c.OfflineExpiry, 72*time.Hour)
	c.JobRescueAfter = cmp.Or(c.JobRescueAfter, 5*time.Minute)
	c.TimeScale = cmp.Or(c.TimeScale, 1)
	switch {
	case c.LRMaxSessions < 1 || c.LRLaunchesPerMinute < 1:
		return fmt.Errorf("Live Response limits must be at least 1 (got %d sessions, %d launches a minute)", c.LRMaxSessions, c.LRLaunchesPerMinute)
	case c.LRWindowMargin < 0 || c.LRWindowMargin > time.Minute:
		return fmt.Errorf("the launch window margin %s must be between 0 and a minute", c.LRWindowMargin)
	case c.HeartbeatTimeout < time.Minute:
		return fmt.Errorf("the heartbeat timeout %s must be at least a minute: collectors report every few seconds, but a busy host may pause", c.HeartbeatTimeout)
	case c.TimeScale < 1 || c.TimeScale > 1000:
		return fmt.Errorf("the time scale %g must be between 1 and 1000", c.TimeScale)
	case c.JobRescueAfter < 2*time.Second:
		return fmt.Errorf("the job rescue delay %s must be at least 2s", c.JobRescueAfter)
	case c.AlertPollEvery < 0 || (c.AlertPollEvery > 0 && c.AlertPollEvery < 10*time.Second):
		return fmt.Errorf("the alert poll interval %s must be at least 10s: each poll is a call against the platform's hourly budget", c.AlertPollEvery)
	case c.OfflineExpiry < time.Minute:
		return fmt.Errorf("the offline expiry %s must be at least a minute", c.OfflineExpiry)
	case (c.SignCert == "") != (c.SignKey == ""):
		return fmt.Errorf("signing the bootstrap needs both --sign-cert and --sign-key")
	}
	c.severities = detect.DefaultSeverities()
	if c.SeverityMap != "" {
		m, err := detect.ParseSeverities(c.SeverityMap)
		if err != nil {
			return err
		}
		c.severities = m
	}
	switch strings.ToLower(c.LogFormat) {
	case "text", "json":
	default:
		return fmt.Errorf("log format %q must be text or json", c.LogFormat)
	}
	return nil
}

// envInt reads a QUARRY_* integer; a malformed value is kept as an error that normalize reports.
func (c *Config) envInt(name string, def int64) int64 {
	v := os.Getenv("QUARRY_" + name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		c.envErr = fmt.Errorf("QUARRY_%s=%q is not a whole number", name, v)
	}
	return n
}

// envDuration reads a QUARRY_* duration such as 90s or 72h; a malformed value is kept as an
// error that normalize reports.
func (c *Config) envDuration(name string, def time.Duration) time.Duration {
	v := os.Getenv("QUARRY_" + name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		c.envErr = fmt.Errorf("QUARRY_%s=%q is not a duration such as 90s, 15m or 72h", name, v)
	}
	return d
}
