package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	fs.Int64Var(&c.MaxUploadBytes, "max-upload-bytes", c.envInt("MAX_UPLOAD_BYTES"), "largest evidence package accepted, in bytes (QUARRY_MAX_UPLOAD_BYTES); default 20 GiB")
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
	switch strings.ToLower(c.LogFormat) {
	case "text", "json":
	default:
		return fmt.Errorf("log format %q must be text or json", c.LogFormat)
	}
	return nil
}

// envInt reads a QUARRY_* integer; a malformed value is kept as an error that normalize reports.
func (c *Config) envInt(name string) int64 {
	v := os.Getenv("QUARRY_" + name)
	if v == "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		c.envErr = fmt.Errorf("QUARRY_%s=%q is not a whole number", name, v)
	}
	return n
}
