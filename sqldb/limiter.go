package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/quarry-dfir/quarry/scheduler/limit"
)

// Limiter is the launch limiter on the database, so that its limits hold across every server
// process sharing it. Each TryAcquire is one transaction, serialised per connection: on
// PostgreSQL by a transaction advisory lock on the connection (READ COMMITTED alone would let
// two processes count the same free slot), on SQLite by the write lock that an immediate
// transaction takes at BEGIN.
type Limiter struct {
	db     *DB
	limits limit.LimitsFunc
}

var _ limit.Limiter = (*Limiter)(nil)

// NewLimiter returns a Limiter on db with each connection's limits from limits; nil means
// limit.Default for every connection.
func NewLimiter(db *DB, limits limit.LimitsFunc) *Limiter {
	if limits == nil {
		limits = limit.Fixed(limit.Default)
	}
	return &Limiter{db: db, limits: limits}
}

// lockConnection serialises the limiter's transactions on one connection until tx ends.
func lockConnection(ctx context.Context, tx *Tx, connectionID int64) error {
	if tx.db.dialect != DialectPostgres {
		return nil // the immediate transaction holds the database's write lock already
	}
	h := fnv.New64a()
	h.Write([]byte("quarry.limiter\x00" + tx.db.schema + "\x00" + strconv.FormatInt(connectionID, 10)))
	_, err := tx.exec(ctx, "SELECT pg_advisory_xact_lock(?)", int64(h.Sum64()>>1))
	return err
}

// TryAcquire implements limit.Limiter.
func (s *Limiter) TryAcquire(ctx context.Context, connectionID int64, hostID string, acquisitionID int64, now time.Time) (*limit.Lease, time.Time, string, error) {
	if err := limit.ValidateHost(hostID); err != nil {
		return nil, time.Time{}, "", err
	}
	l := s.limits(connectionID)
	if err := l.Validate(); err != nil {
		return nil, time.Time{}, "", err
	}
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return nil, time.Time{}, "", fmt.Errorf("limiter: %w", err)
	}
	defer tx.Rollback()
	lease, retryAt, reason, err := tryAcquire(ctx, tx, l, connectionID, hostID, acquisitionID, limit.Stored(now))
	if err == nil {
		err = tx.Commit()
	}
	if errClass(err) == errClassUnique {
		// The index refused a second live lease on the device. The count in tryAcquire makes
		// this unreachable while every writer takes the lock, so it is a refusal, not a failure.
		return nil, time.Time{}, limit.ReasonHostBusy, nil
	} else if err != nil {
		return nil, time.Time{}, "", translate(err, fmt.Sprintf("limiter: acquire on connection %d host %q", connectionID, hostID), "", "")
	}
	return lease, retryAt, reason, nil
}

func tryAcquire(ctx context.Context, tx *Tx, l limit.Limits, connectionID int64, hostID string, acquisitionID int64, now time.Time) (*limit.Lease, time.Time, string, error) {
	if err := lockConnection(ctx, tx, connectionID); err != nil {
		return nil, time.Time{}, "", err
	}
	// Prune what no caller can need: launches before this window, except the newest
	// LaunchesPerWindow. A caller whose clock is behind ours (another process, or one that
	// waited for the lock) may still count older ones, but it only ever needs the newest
	// LaunchesPerWindow to refuse and to say when to retry.
	cut := now.Add(-l.Window)
	_, err := tx.exec(ctx, `DELETE FROM lr_launches WHERE connection_id = ? AND at <= ? AND at <
		(SELECT at FROM lr_launches WHERE connection_id = ? ORDER BY at DESC LIMIT 1 OFFSET ?)`,
		connectionID, cut, connectionID, l.LaunchesPerWindow-1)
	if err != nil {
		return nil, time.Time{}, "", err
	}
	own := &limit.Lease{ConnectionID: connectionID, HostID: hostID, AcquisitionID: acquisitionID}
	err = tx.queryRow(ctx, `SELECT id, acquired_at FROM lr_leases
		WHERE connection_id = ? AND host_id = ? AND acquisition_id = ? AND released_at IS NULL`,
		connectionID, hostID, acquisitionID).Scan(&own.ID, timeCol(&own.AcquiredAt))
	if err == nil {
		// The acquisition's own live lease (see limit.Limiter): it holds its slot already, but
		// the launch it is about to make is a new one for the rate window.
		recent, err := recentLaunches(ctx, tx, connectionID, cut)
		if err != nil {
			return nil, time.Time{}, "", err
		}
		if retryAt, reason := limit.Decide(l, 0, false, recent, now); reason != "" {
			return nil, retryAt, reason, nil
		}
		if _, err := tx.exec(ctx, "INSERT INTO lr_launches (connection_id, at) VALUES (?, ?)", connectionID, now); err != nil {
			return nil, time.Time{}, "", err
		}
		return own, time.Time{}, "", nil
	} else if !errors.Is(err, sql.ErrNoRows) {
		return nil, time.Time{}, "", err
	}
	var running, hostBusy int
	err = tx.queryRow(ctx, `SELECT
		(SELECT COUNT(*) FROM lr_leases WHERE connection_id = ? AND released_at IS NULL),
		(SELECT COUNT(*) FROM lr_leases WHERE connection_id = ? AND host_id = ? AND released_at IS NULL)`,
		connectionID, connectionID, hostID).Scan(&running, &hostBusy)
	if err != nil {
		return nil, time.Time{}, "", err
	}
	recent, err := recentLaunches(ctx, tx, connectionID, cut)
	if err != nil {
		return nil, time.Time{}, "", err
	}
	if retryAt, reason := limit.Decide(l, running, hostBusy > 0, recent, now); reason != "" {
		return nil, retryAt, reason, nil
	}
	lease := &limit.Lease{ConnectionID: connectionID, HostID: hostID, AcquisitionID: acquisitionID, AcquiredAt: now}
	err = tx.queryRow(ctx, `INSERT INTO lr_leases (connection_id, host_id, acquisition_id, acquired_at)
		VALUES (?, ?, ?, ?) RETURNING id`, connectionID, hostID, acquisitionID, now).Scan(&lease.ID)
	if err != nil {
		return nil, time.Time{}, "", err
	}
	if _, err := tx.exec(ctx, "INSERT INTO lr_launches (connection_id, at) VALUES (?, ?)", connectionID, now); err != nil {
		return nil, time.Time{}, "", err
	}
	return lease, time.Time{}, "", nil
}

// recentLaunches returns the connection's launch times after cut, oldest first.
func recentLaunches(ctx context.Context, tx *Tx, connectionID int64, cut time.Time) ([]time.Time, error) {
	rows, err := tx.query(ctx, "SELECT at FROM lr_launches WHERE connection_id = ? AND at > ? ORDER BY at", connectionID, cut)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []time.Time
	for rows.Next() {
		var at time.Time
		if err := rows.Scan(timeCol(&at)); err != nil {
			return nil, err
		}
		list = append(list, at)
	}
	return list, rows.Err()
}

// Release implements limit.Limiter. It needs no lock: ending a lease only frees room.
func (s *Limiter) Release(ctx context.Context, leaseID int64, now time.Time) error {
	err := s.write(ctx, func(tx *Tx) error {
		res, err := tx.exec(ctx, "UPDATE lr_leases SET released_at = ?, release_reason = ? WHERE id = ? AND released_at IS NULL",
			now, limit.ReleaseEnded, leaseID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return nil
		}
		var id int64
		return tx.queryRow(ctx, "SELECT id FROM lr_leases WHERE id = ?", leaseID).Scan(&id)
	})
	return translate(err, fmt.Sprintf("limiter: release lease %d", leaseID), "Lease not found.", "")
}

// ReleaseByAcquisition implements limit.Limiter.
func (s *Limiter) ReleaseByAcquisition(ctx context.Context, acquisitionID int64, now time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *Tx) error {
		res, err := tx.exec(ctx, "UPDATE lr_leases SET released_at = ?, release_reason = ? WHERE acquisition_id = ? AND released_at IS NULL",
			now, limit.ReleaseEnded, acquisitionID)
		if err == nil {
			n, err = res.RowsAffected()
		}
		return err
	})
	return int(n), translate(err, fmt.Sprintf("limiter: release acquisition %d", acquisitionID), "", "")
}

// Running implements limit.Limiter.
func (s *Limiter) Running(ctx context.Context, connectionID int64) (int, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return 0, fmt.Errorf("limiter: %w", err)
	}
	defer tx.Rollback()
	n, err := tx.count(ctx, "SELECT COUNT(*) FROM lr_leases WHERE connection_id = ? AND released_at IS NULL", connectionID)
	return n, translate(err, fmt.Sprintf("limiter: running on connection %d", connectionID), "", "")
}

// Expire implements limit.Limiter.
func (s *Limiter) Expire(ctx context.Context, olderThan, now time.Time) ([]limit.Lease, error) {
	var list []limit.Lease
	err := s.write(ctx, func(tx *Tx) error {
		rows, err := tx.query(ctx, `UPDATE lr_leases SET released_at = ?, release_reason = ?
			WHERE released_at IS NULL AND acquired_at < ?
			RETURNING id, connection_id, host_id, acquisition_id, acquired_at`, now, limit.ReleaseExpired, olderThan)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ls limit.Lease
			if err := rows.Scan(&ls.ID, &ls.ConnectionID, &ls.HostID, &ls.AcquisitionID, timeCol(&ls.AcquiredAt)); err != nil {
				return err
			}
			list = append(list, ls)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, translate(err, "limiter: expire leases", "", "")
	}
	limit.SortLeases(list)
	return list, nil
}

// Prune implements limit.Limiter.
func (s *Limiter) Prune(ctx context.Context, releasedBefore time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *Tx) error {
		res, err := tx.exec(ctx, "DELETE FROM lr_leases WHERE released_at IS NOT NULL AND released_at < ?", releasedBefore)
		if err == nil {
			n, err = res.RowsAffected()
		}
		return err
	})
	return int(n), translate(err, "limiter: prune leases", "", "")
}

// write runs fn in a read-write transaction and commits it.
func (s *Limiter) write(ctx context.Context, fn func(*Tx) error) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}
