// Package limit decides when the scheduler may start a Live Response action on a connection,
// so that Quarry never meets Defender's limits: at most MaxRunning actions running at once, at
// most LaunchesPerWindow launches in any Window, and never two actions on one device.
//
// A Limiter hands out leases. A lease is held while the Live Response action runs (the bootstrap
// returns in seconds) and released when it ends, not when the collection ends. The SQL
// implementation (sqldb.Limiter) holds across several server processes sharing one database;
// Memory is the same contract in one process, for tests and tools.
package limit

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/quarry-dfir/quarry"
)

// Limits are a connection's Live Response limits.
type Limits struct {
	MaxRunning        int           // running Live Response actions at once
	LaunchesPerWindow int           // launches in any Window
	Window            time.Duration // the length of the sliding rate window
}

// Default are Defender's documented limits (design.md): 25 running sessions, 10 launches a minute.
var Default = Limits{MaxRunning: 25, LaunchesPerWindow: 10, Window: time.Minute}

// Validate refuses limits that would never allow a launch.
func (l Limits) Validate() error {
	switch {
	case l.MaxRunning <= 0:
		return quarry.FieldError("max_running", "The number of running Live Response actions must be positive.")
	case l.LaunchesPerWindow <= 0:
		return quarry.FieldError("launches_per_window", "The number of launches per window must be positive.")
	case l.Window <= 0:
		return quarry.FieldError("window", "The rate window must be positive.")
	}
	return nil
}

// ValidateHost refuses a device id that no store could keep: empty, longer than 200 bytes,
// invalid UTF-8 or holding NUL (Defender's ids are 40 hex digits).
func ValidateHost(hostID string) error {
	if hostID == "" || len(hostID) > 200 || !utf8.ValidString(hostID) || strings.IndexByte(hostID, 0) >= 0 {
		return quarry.FieldError("host_id", "Host ID must be 1 to 200 bytes of UTF-8 text without NUL characters.")
	}
	return nil
}

// LimitsFunc returns the limits of a connection.
type LimitsFunc func(connectionID int64) Limits

// Fixed returns a LimitsFunc that gives every connection l.
func Fixed(l Limits) LimitsFunc { return func(int64) Limits { return l } }

// Reasons a launch is refused, as returned by TryAcquire.
const (
	ReasonSlots    = "slots"     // MaxRunning actions are running; retry when a lease is released
	ReasonRate     = "rate"      // the window holds LaunchesPerWindow launches; retry at retryAt
	ReasonHostBusy = "host_busy" // the device has a live lease; retry when it is released
)

// Release reasons, as stored with a released lease.
const (
	ReleaseEnded   = "ended"   // the holder released it: the Live Response action ended
	ReleaseExpired = "expired" // Expire found it too old: its holder died
)

// Lease is the right to run one Live Response action on one device.
type Lease struct {
	ID            int64
	ConnectionID  int64
	HostID        string
	AcquisitionID int64
	AcquiredAt    time.Time
}

// Limiter hands out leases within each connection's Limits. Times are the caller's clock,
// kept to the microsecond (as the databases keep them).
type Limiter interface {
	// TryAcquire takes a lease on hostID for acquisitionID at now if the connection has a free
	// slot, room in its rate window and no live lease on the host; the check and the record are
	// one atomic step, across processes for the SQL implementation. Otherwise lease is nil,
	// reason is one of the Reason… constants, and retryAt is the earliest time a retry can
	// succeed: for ReasonRate the time the oldest counted launch leaves the window, for the
	// others the zero time, meaning "when a lease is released". A host that ValidateHost refuses, or limits that
	// Limits.Validate refuses, are EINVALID.
	// When acquisitionID already holds a live lease on hostID, that lease is returned as it
	// is, if the rate window has room, and the launch is counted again: a launch whose process
	// died after taking its lease takes it up when it is retried, instead of waiting behind it
	// until Expire, and the call it makes now is in the window whether or not the dead one's
	// went out.
	TryAcquire(ctx context.Context, connectionID int64, hostID string, acquisitionID int64, now time.Time) (lease *Lease, retryAt time.Time, reason string, err error)

	// Release ends the lease at now. Releasing a released lease does nothing; an unknown
	// lease is ENOTFOUND.
	Release(ctx context.Context, leaseID int64, now time.Time) error

	// ReleaseByAcquisition ends every live lease of acquisitionID at now and returns how many
	// it ended; none is not an error.
	ReleaseByAcquisition(ctx context.Context, acquisitionID int64, now time.Time) (int, error)

	// Running returns how many leases of the connection are live.
	Running(ctx context.Context, connectionID int64) (int, error)

	// Expire ends, at now with ReleaseExpired, the live leases acquired before olderThan (their
	// holder died: a Live Response action ends within its script timeout) and returns them.
	Expire(ctx context.Context, olderThan, now time.Time) ([]Lease, error)

	// Prune deletes the leases released before releasedBefore and returns how many it deleted.
	// Live leases are never pruned; a pruned lease's Release is ENOTFOUND.
	Prune(ctx context.Context, releasedBefore time.Time) (int, error)
}

// Decide applies l at now to a connection where running leases are live, hostBusy tells
// whether the device has one, and recent are the launch times after now-l.Window, oldest
// first. It returns "" when a launch may start, or the reason and retry time TryAcquire reports.
// The connection's limits are checked before the host, so a refusal for slots or rate tells
// the scheduler that no other host of the connection can start now either.
// Launches later than now (another process's clock running ahead) count: the window is
// checked for every launch when it is made, so counting them keeps every window within the
// limit whatever order the clocks' readings arrive in.
func Decide(l Limits, running int, hostBusy bool, recent []time.Time, now time.Time) (retryAt time.Time, reason string) {
	switch {
	case running >= l.MaxRunning:
		return time.Time{}, ReasonSlots
	case len(recent) >= l.LaunchesPerWindow:
		// A retry at t succeeds once at most LaunchesPerWindow-1 launches are later than
		// t-Window: the launches up to recent[len-limit] must have left the window.
		return recent[len(recent)-l.LaunchesPerWindow].Add(l.Window), ReasonRate
	case hostBusy:
		return time.Time{}, ReasonHostBusy
	}
	return time.Time{}, ""
}

// Stored returns t as limiters keep it: UTC, to the microsecond.
func Stored(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// SortLeases orders leases oldest first (by AcquiredAt, then ID), as Expire returns them.
func SortLeases(list []Lease) { sortLeases(list) }
