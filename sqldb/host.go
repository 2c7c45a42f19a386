package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/xdr"
)

// HostService caches each connection's host inventory.
type HostService struct {
	db *DB
}

var _ quarry.HostService = (*HostService)(nil)

// NewHostService returns a HostService on db.
func NewHostService(db *DB) *HostService { return &HostService{db: db} }

// DefaultHostLimit is the page size of FindHosts when the filter asks for none.
const DefaultHostLimit = 50

// hostBatch is how many hosts one INSERT writes. At 16 parameters a row it stays far below
// both dialects' limits on bind parameters (32766 on SQLite, 65535 on PostgreSQL), while
// keeping the statements few: 10,000 hosts take 20 of them.
const hostBatch = 500

const hostColumns = "host_id, name, os, os_version, arch, online, last_seen, ip, health, risk, tags"

const errHostNotFound = "Host not found."

func scanHost(s interface{ Scan(...any) error }) (*xdr.Host, error) {
	var h xdr.Host
	var tags string
	err := s.Scan(&h.ID, &h.Name, &h.OS, &h.OSVersion, &h.Arch, &h.Online, timeCol(&h.LastSeen), &h.IP, &h.Health, &h.Risk, &tags)
	if err != nil {
		return nil, err
	}
	if h.Tags, err = decodeStrings(tags); err != nil {
		return nil, fmt.Errorf("host %s tags: %w", h.ID, err)
	}
	return &h, nil
}

// ReplaceHosts makes hosts the whole cached inventory of the connection, in one transaction,
// and records when it was fetched (now, if fetchedAt is zero). Of hosts with the same ID the
// last wins. Text that the database cannot hold (invalid UTF-8, NUL) is repaired rather than
// refused, so one odd host does not keep the rest from being cached. An unknown connection is
// ENOTFOUND, a deleted one ECONFLICT.
func (s *HostService) ReplaceHosts(ctx context.Context, connectionID int64, hosts []xdr.Host, fetchedAt time.Time) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := replaceHosts(ctx, tx, connectionID, hosts, fetchedAt); err != nil {
		return err
	}
	return tx.Commit()
}

// FindHosts returns one page of a connection's cached hosts matching filter, ordered by name
// then ID, and how many match in all. A filter without a connection is EINVALID.
func (s *HostService) FindHosts(ctx context.Context, filter quarry.HostFilter) ([]xdr.Host, int, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	return findHosts(ctx, tx, filter)
}

// FindHost returns one cached host, or ENOTFOUND.
func (s *HostService) FindHost(ctx context.Context, connectionID int64, hostID string) (*xdr.Host, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	h, err := scanHost(tx.queryRow(ctx, "SELECT "+hostColumns+" FROM xdr_hosts WHERE connection_id = ? AND host_id = ?", connectionID, storableText(hostID)))
	return h, translate(err, "find host", errHostNotFound, "")
}

// FindInventory returns when the connection's inventory was last fetched and how many hosts it
// holds, or ENOTFOUND when it never was (or the connection is deleted).
func (s *HostService) FindInventory(ctx context.Context, connectionID int64) (*quarry.Inventory, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	inv := quarry.Inventory{ConnectionID: connectionID}
	err = tx.queryRow(ctx, "SELECT fetched_at, hosts FROM xdr_inventories WHERE connection_id = ?", connectionID).
		Scan(timeCol(&inv.FetchedAt), &inv.Hosts)
	if err != nil {
		return nil, translate(err, "find inventory", "The host inventory was never fetched.", "")
	}
	return &inv, nil
}

func replaceHosts(ctx context.Context, tx *Tx, connID int64, hosts []xdr.Host, fetchedAt time.Time) error {
	if _, err := lockLiveConnection(ctx, tx, connID); err != nil {
		return err
	}
	if err := deleteHosts(ctx, tx, connID, false); err != nil {
		return err
	}
	hosts = lastByID(hosts)
	if fetchedAt.IsZero() {
		fetchedAt = tx.now
	}
	for start := 0; start < len(hosts); start += hostBatch {
		if err := insertHosts(ctx, tx, connID, hosts[start:min(start+hostBatch, len(hosts))]); err != nil {
			return err
		}
	}
	_, err := tx.exec(ctx, `INSERT INTO xdr_inventories (connection_id, fetched_at, hosts) VALUES (?, ?, ?)
		ON CONFLICT (connection_id) DO UPDATE SET fetched_at = excluded.fetched_at, hosts = excluded.hosts`,
		connID, fetchedAt, len(hosts))
	return translate(err, "record inventory", "", "")
}

// deleteHosts drops a connection's cached hosts and their tags and, with inventory, the record
// of the fetch.
func deleteHosts(ctx context.Context, tx *Tx, connID int64, inventory bool) error {
	queries := []string{"DELETE FROM xdr_host_tags WHERE connection_id = ?", "DELETE FROM xdr_hosts WHERE connection_id = ?"}
	if inventory {
		queries = append(queries, "DELETE FROM xdr_inventories WHERE connection_id = ?")
	}
	for _, q := range queries {
		if _, err := tx.exec(ctx, q, connID); err != nil {
			return translate(err, "delete hosts", "", "")
		}
	}
	return nil
}

// lastByID drops every host whose ID, as stored, appears again later in hosts, keeping the
// order of the rest.
func lastByID(hosts []xdr.Host) []xdr.Host {
	last := make(map[string]int, len(hosts))
	for i, h := range hosts {
		last[storableText(h.ID)] = i
	}
	if len(last) == len(hosts) {
		return hosts
	}
	out := make([]xdr.Host, 0, len(last))
	for i, h := range hosts {
		if last[storableText(h.ID)] == i {
			out = append(out, h)
		}
	}
	return out
}

// storableText repairs text for the database: invalid UTF-8 becomes U+FFFD and NUL is dropped.
// Filters are repaired the same way, so that they find what was stored.
func storableText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// textKey is how host fields compare case-insensitively: repaired, then lower-cased in Go so
// that both dialects fold case alike.
func textKey(s string) string { return strings.ToLower(storableText(s)) }

// insertHosts writes one batch of hosts and their tags, each with a single multi-row INSERT.
func insertHosts(ctx context.Context, tx *Tx, connID int64, hosts []xdr.Host) error {
	const hostRow = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	args := make([]any, 0, 16*len(hosts))
	var tagArgs []any
	for _, h := range hosts {
		id, ip := storableText(h.ID), storableText(h.IP)
		health, risk := storableText(h.Health), storableText(h.Risk)
		name := storableText(h.Name)
		tags := make([]string, len(h.Tags))
		seen := make(map[string]bool, len(h.Tags))
		for i, tag := range h.Tags {
			tags[i] = storableText(tag)
			if key := textKey(tags[i]); !seen[key] {
				seen[key] = true
				tagArgs = append(tagArgs, connID, id, key)
			}
		}
		args = append(args, connID, id, name, textKey(name), storableText(h.OS), storableText(h.OSVersion),
			storableText(h.Arch), h.Online, h.LastSeen, ip, textKey(ip),
			health, textKey(health), risk, textKey(risk), encodeStrings(tags))
	}
	_, err := tx.exec(ctx, `INSERT INTO xdr_hosts (connection_id, host_id, name, name_key, os, os_version, arch, online,
		last_seen, ip, ip_key, health, health_key, risk, risk_key, tags) VALUES `+valuesList(hostRow, len(hosts)), args...)
	if err != nil {
		return translate(err, "insert hosts", "", "")
	}
	// One host can carry many tags; split so a batch never exceeds the parameter limit.
	const tagBatch = 3 * 5000
	for start := 0; start < len(tagArgs); start += tagBatch {
		part := tagArgs[start:min(start+tagBatch, len(tagArgs))]
		_, err := tx.exec(ctx, "INSERT INTO xdr_host_tags (connection_id, host_id, tag_key) VALUES "+valuesList("(?, ?, ?)", len(part)/3), part...)
		if err != nil {
			return translate(err, "insert host tags", "", "")
		}
	}
	return nil
}

// valuesList returns n copies of row separated by commas, for a multi-row VALUES list.
func valuesList(row string, n int) string {
	var b strings.Builder
	b.Grow(n * (len(row) + 2))
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}

func findHosts(ctx context.Context, tx *Tx, filter quarry.HostFilter) ([]xdr.Host, int, error) {
	if filter.ConnectionID == 0 {
		return nil, 0, quarry.FieldError("connection_id", "A connection is required.")
	}
	var w where
	w.add("connection_id = ?", filter.ConnectionID)
	if q := textKey(strings.TrimSpace(filter.Query)); q != "" {
		q = likeEscape(q)
		w.add(`(name_key LIKE ? ESCAPE '\' OR ip_key LIKE ? ESCAPE '\')`, "%"+q+"%", q+"%")
	}
	if filter.OS != "" {
		w.add("os = ?", storableText(filter.OS))
	}
	if filter.Online != nil {
		w.add("online = ?", *filter.Online)
	}
	if filter.Health != "" {
		w.add("health_key = ?", textKey(filter.Health))
	}
	if filter.Risk != "" {
		w.add("risk_key = ?", textKey(filter.Risk))
	}
	if filter.Tag != "" {
		w.add("host_id IN (SELECT host_id FROM xdr_host_tags WHERE connection_id = ? AND tag_key = ?)",
			filter.ConnectionID, textKey(filter.Tag))
	}
	limit := filter.Limit
	if limit <= 0 {
		limit = DefaultHostLimit
	}
	hosts := []xdr.Host{}
	total, err := findPage(ctx, tx, "SELECT "+hostColumns, "FROM xdr_hosts", &w, "name_key, host_id", filter.Offset, limit,
		func(rows *sql.Rows) error {
			h, err := scanHost(rows)
			if err == nil {
				hosts = append(hosts, *h)
			}
			return err
		})
	if err != nil {
		return nil, 0, translate(err, "find hosts", "", "")
	}
	return hosts, total, nil
}
