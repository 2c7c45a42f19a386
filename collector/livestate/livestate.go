// Package livestate captures what is running on the machine the collector
// runs on — processes, network connections and logged-on users — as
// JSON-able values for the live/ folder of a package.
//
// It is pure Go (CGO_ENABLED=0): /proc and utmp on Linux; Toolhelp32,
// iphlpapi and WTS on Windows; on macOS only processes (sysctl kern.proc),
// network connections and users report "not supported" there for now. Live
// state only describes a running system, so a --root collection (a mounted
// image) has none: use Root.
package livestate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Names of the live state items, which are also the file names under live/.
const (
	Processes = "processes"
	Network   = "network"
	Users     = "users"
)

const (
	// DefaultTimeout bounds Collect when the caller's context has no
	// deadline: hashing executables must not hold up the file collection.
	DefaultTimeout = 2 * time.Minute
	// MaxHashSize is the largest executable that is hashed.
	MaxHashSize = 256 << 20
)

// Process is one running process.
type Process struct {
	PID         int       `json:"pid"`
	PPID        int       `json:"ppid"`
	Name        string    `json:"name"`
	CommandLine string    `json:"command_line,omitempty"`
	User        string    `json:"user,omitempty"`
	StartTime   time.Time `json:"start_time,omitzero"` // UTC
	Exe         string    `json:"exe,omitempty"`
	ExeSHA256   string    `json:"exe_sha256,omitempty"`
	// ExeError says why the executable has no hash (too large, gone, time
	// budget exhausted, access denied).
	ExeError string `json:"exe_error,omitempty"`
}

// Connection is one TCP or UDP socket.
type Connection struct {
	Proto      string `json:"proto"` // "tcp", "tcp6", "udp", "udp6"
	LocalAddr  string `json:"local_addr"`
	LocalPort  int    `json:"local_port"`
	RemoteAddr string `json:"remote_addr,omitempty"`
	RemotePort int    `json:"remote_port,omitempty"`
	State      string `json:"state,omitempty"` // "LISTEN", "ESTABLISHED", …; empty for unconnected UDP
	PID        int    `json:"pid,omitempty"`   // 0 when unknown
}

// User is one logged-on session.
type User struct {
	Name      string    `json:"name"`
	Terminal  string    `json:"terminal,omitempty"` // tty, or the Windows session name
	Host      string    `json:"host,omitempty"`     // remote host of the session, if any
	LoginTime time.Time `json:"login_time,omitzero"`
	PID       int       `json:"pid,omitempty"`
	Session   int       `json:"session,omitempty"` // Windows session id
}

// Collect gathers the live state of this machine. The result maps Processes,
// Network and Users to a slice of Process, Connection or User, or to a string
// saying why that item could not be collected. It never fails as a whole.
// Executables are hashed until ctx ends (DefaultTimeout when ctx has no
// deadline); the processes not reached by then carry an ExeError.
func Collect(ctx context.Context) map[string]any {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	out := map[string]any{}
	put := func(name string, v any, err error) {
		if err != nil {
			out[name] = fmt.Sprintf("livestate: %s: %v", name, err)
			return
		}
		out[name] = v
	}
	// Sockets first: they come and go fastest, and hashing takes a while.
	conns, err := connections(ctx)
	put(Network, conns, err)
	procs, err := processes(ctx, newHasher())
	put(Processes, procs, err)
	users, err := users(ctx)
	put(Users, users, err)
	return out
}

// Root is the live state of a --root collection: there is none, since live
// state describes the machine running the collector, not the mounted image.
// Every item is a string saying so, for the manifest.
func Root(root string) map[string]any {
	msg := fmt.Sprintf("skipped: collecting from %s, and live state would describe the collecting machine, not the image", root)
	return map[string]any{Processes: msg, Network: msg, Users: msg}
}

// errUnsupported marks an item this operating system does not provide yet.
var errUnsupported = errors.New("not supported on this operating system yet")

// hasher hashes each distinct executable once.
type hasher struct {
	maxSize int64
	done    map[string]hashResult
}

type hashResult struct{ sum, err string }

func newHasher() *hasher { return &hasher{maxSize: MaxHashSize, done: map[string]hashResult{}} }

// hash returns the SHA-256 of the file open returns, remembered under key
// (the file identity, so hard links and renames are hashed once).
func (h *hasher) hash(ctx context.Context, key string, open func() (*os.File, error)) (sum, problem string) {
	if r, ok := h.done[key]; ok && key != "" {
		return r.sum, r.err
	}
	r := h.compute(ctx, open)
	if ctx.Err() == nil { // a budget miss is not a property of the file
		h.done[key] = r
	}
	return r.sum, r.err
}

func (h *hasher) compute(ctx context.Context, open func() (*os.File, error)) hashResult {
	if ctx.Err() != nil {
		return hashResult{err: "not hashed: time budget exhausted"}
	}
	f, err := open()
	if err != nil {
		return hashResult{err: err.Error()}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return hashResult{err: err.Error()}
	}
	if fi.Size() > h.maxSize {
		return hashResult{err: fmt.Sprintf("not hashed: %d bytes is over the %d byte limit", fi.Size(), h.maxSize)}
	}
	sha := sha256.New()
	if _, err := io.Copy(sha, io.LimitReader(ctxReader{ctx, f}, h.maxSize)); err != nil {
		if ctx.Err() != nil {
			return hashResult{err: "not hashed: time budget exhausted"}
		}
		return hashResult{err: err.Error()}
	}
	return hashResult{sum: hex.EncodeToString(sha.Sum(nil))}
}

// ctxReader stops a copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
