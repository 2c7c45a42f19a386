package limit

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/quarry-dfir/quarry"
)

// Memory is a Limiter for one process: the same decisions as the SQL store, without a
// database. The scheduler's tests and the benchmark simulator use it.
type Memory struct {
	limits LimitsFunc

	mu       sync.Mutex
	nextID   int64
	live     map[int64]*Lease      // by lease id
	released map[int64]time.Time   // lease ids released and when, so Release stays idempotent
	launches map[int64][]time.Time // by connection
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns an empty Memory limiter; nil limits means Default for every connection.
func NewMemory(limits LimitsFunc) *Memory {
	if limits == nil {
		limits = Fixed(Default)
	}
	return &Memory{limits: limits, live: map[int64]*Lease{}, released: map[int64]time.Time{}, launches: map[int64][]time.Time{}}
}

// TryAcquire implements Limiter.
func (m *Memory) TryAcquire(ctx context.Context, connectionID int64, hostID string, acquisitionID int64, now time.Time) (*Lease, time.Time, string, error) {
	if err := ValidateHost(hostID); err != nil {
		return nil, time.Time{}, "", err
	}
	l := m.limits(connectionID)
	if err := l.Validate(); err != nil {
		return nil, time.Time{}, "", err
	}
	now = Stored(now)
	m.mu.Lock()
	defer m.mu.Unlock()
	// Prune as the SQL store does: launches before this window, except the newest
	// LaunchesPerWindow, which a caller whose clock is behind may still need.
	cut := now.Add(-l.Window)
	all := m.launches[connectionID]
	slices.SortFunc(all, time.Time.Compare)
	keep := all[max(len(all)-l.LaunchesPerWindow, 0):]
	if len(keep) > 0 {
		oldest := keep[0]
		all = slices.DeleteFunc(all, func(at time.Time) bool { return !at.After(cut) && at.Before(oldest) })
	}
	m.launches[connectionID] = all
	var recent []time.Time // sorted, since all is
	for _, at := range all {
		if at.After(cut) {
			recent = append(recent, at)
		}
	}
	running, hostBusy := 0, false
	for _, ls := range m.live {
		if ls.ConnectionID == connectionID && ls.HostID == hostID && ls.AcquisitionID == acquisitionID {
			// The acquisition's own live lease (see Limiter): its slot is held, but the launch
			// it is about to make counts in the rate window.
			if retryAt, reason := Decide(l, 0, false, recent, now); reason != "" {
				return nil, retryAt, reason, nil
			}
			m.launches[connectionID] = append(all, now)
			c := *ls
			return &c, time.Time{}, "", nil
		}
		if ls.ConnectionID == connectionID {
			running++
			hostBusy = hostBusy || ls.HostID == hostID
		}
	}
	if retryAt, reason := Decide(l, running, hostBusy, recent, now); reason != "" {
		return nil, retryAt, reason, nil
	}
	m.nextID++
	ls := &Lease{ID: m.nextID, ConnectionID: connectionID, HostID: hostID, AcquisitionID: acquisitionID, AcquiredAt: now}
	m.live[ls.ID] = ls
	m.launches[connectionID] = append(all, now)
	c := *ls
	return &c, time.Time{}, "", nil
}

// Release implements Limiter.
func (m *Memory) Release(ctx context.Context, leaseID int64, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.released[leaseID]; ok {
		return nil
	}
	if _, ok := m.live[leaseID]; !ok {
		return quarry.Errorf(quarry.ENOTFOUND, "Lease not found.")
	}
	m.release(leaseID, now)
	return nil
}

func (m *Memory) release(id int64, now time.Time) {
	delete(m.live, id)
	m.released[id] = Stored(now)
}

// Prune implements Limiter.
func (m *Memory) Prune(ctx context.Context, releasedBefore time.Time) (int, error) {
	releasedBefore = Stored(releasedBefore)
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for id, at := range m.released {
		if at.Before(releasedBefore) {
			delete(m.released, id)
			n++
		}
	}
	return n, nil
}

// ReleaseByAcquisition implements Limiter.
func (m *Memory) ReleaseByAcquisition(ctx context.Context, acquisitionID int64, now time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for id, ls := range m.live {
		if ls.AcquisitionID == acquisitionID {
			m.release(id, now)
			n++
		}
	}
	return n, nil
}

// Running implements Limiter.
func (m *Memory) Running(ctx context.Context, connectionID int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, ls := range m.live {
		if ls.ConnectionID == connectionID {
			n++
		}
	}
	return n, nil
}

// Expire implements Limiter. The leases come back oldest first.
func (m *Memory) Expire(ctx context.Context, olderThan, now time.Time) ([]Lease, error) {
	olderThan = Stored(olderThan)
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Lease
	for id, ls := range m.live {
		if ls.AcquiredAt.Before(olderThan) {
			out = append(out, *ls)
			m.release(id, now)
		}
	}
	sortLeases(out)
	return out, nil
}

// sortLeases orders leases oldest first, as Expire returns them.
func sortLeases(list []Lease) {
	slices.SortFunc(list, func(a, b Lease) int {
		return cmp.Or(a.AcquiredAt.Compare(b.AcquiredAt), cmp.Compare(a.ID, b.ID))
	})
}
