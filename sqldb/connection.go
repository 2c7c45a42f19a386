package sqldb

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/quarry-dfir/quarry"
)

// ConnectionService stores XDR connections. It keeps the client secret exactly as the caller
// sealed it: it never sees the plaintext, and never logs or alters the sealed form.
type ConnectionService struct {
	db *DB
}

var _ quarry.ConnectionService = (*ConnectionService)(nil)

// NewConnectionService returns a ConnectionService on db.
func NewConnectionService(db *DB) *ConnectionService { return &ConnectionService{db: db} }

const connectionColumns = `id, provider, name, tenant_id, client_id, cloud, api_url, authority_url, ca_cert_pem,
	secret_sealed, secret_set_at, health, health_message, checked_at, granted, missing,
	created_by, created_at, updated_at, deleted_at`

const errConnectionNotFound = "Connection not found."

func scanConnection(s interface{ Scan(...any) error }) (*quarry.Connection, error) {
	var c quarry.Connection
	var createdBy sql.NullInt64
	var granted, missing string
	err := s.Scan(&c.ID, &c.Provider, &c.Name, &c.TenantID, &c.ClientID, &c.Cloud, &c.APIURL, &c.AuthorityURL, &c.CACertPEM,
		&c.SecretSealed, timeCol(&c.SecretSetAt), &c.Health, &c.HealthMessage, nullTimeCol(&c.CheckedAt), &granted, &missing,
		&createdBy, timeCol(&c.CreatedAt), timeCol(&c.UpdatedAt), nullTimeCol(&c.DeletedAt))
	if err != nil {
		return nil, err
	}
	c.CreatedBy = createdBy.Int64
	if c.Granted, err = decodeStrings(granted); err != nil {
		return nil, fmt.Errorf("connection %d granted: %w", c.ID, err)
	}
	if c.Missing, err = decodeStrings(missing); err != nil {
		return nil, fmt.Errorf("connection %d missing: %w", c.ID, err)
	}
	return &c, nil
}

// encodeStrings returns list as a JSON array; nil becomes [] so that readers never see null.
func encodeStrings(list []string) string {
	if len(list) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(list) // a []string always marshals
	return string(b)
}

// decodeStrings reads a JSON array of strings; the result is never nil.
func decodeStrings(s string) ([]string, error) {
	list := []string{}
	if err := json.Unmarshal([]byte(s), &list); err != nil {
		return nil, err
	}
	if list == nil { // the text was null
		list = []string{}
	}
	return list, nil
}

// FindConnectionByID returns the connection with id, deleted or not, or ENOTFOUND.
func (s *ConnectionService) FindConnectionByID(ctx context.Context, id int64) (*quarry.Connection, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return findConnectionByID(ctx, tx, id)
}

// FindConnections returns the connections matching filter ordered by name, deleted ones only
// when filter.IncludeDeleted, and how many match in all.
func (s *ConnectionService) FindConnections(ctx context.Context, filter quarry.ConnectionFilter) ([]*quarry.Connection, int, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	return findConnections(ctx, tx, filter)
}

// CreateConnection validates and stores c, setting its ID and times, its health to unknown,
// and CreatedBy from the actor in ctx when it is zero. A name in use by a live connection (in
// any case) is ECONFLICT.
func (s *ConnectionService) CreateConnection(ctx context.Context, c *quarry.Connection) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := createConnection(ctx, tx, c); err != nil {
		return err
	}
	return tx.Commit()
}

// UpdateConnection renames a connection or replaces its sealed secret and returns it. An
// unknown id is ENOTFOUND, a deleted connection ECONFLICT, a name in use ECONFLICT.
func (s *ConnectionService) UpdateConnection(ctx context.Context, id int64, upd quarry.ConnectionUpdate) (*quarry.Connection, error) {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	c, err := updateConnection(ctx, tx, id, upd)
	if err != nil {
		return nil, err
	}
	return c, tx.Commit()
}

// RecordConnectionCheck stores the outcome of a check: health ok or failed, the message and
// the permissions granted and missing. A check is not an edit, so updated_at stays. An unknown
// id is ENOTFOUND, a deleted connection ECONFLICT.
func (s *ConnectionService) RecordConnectionCheck(ctx context.Context, id int64, check quarry.ConnectionCheck) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := recordConnectionCheck(ctx, tx, id, check); err != nil {
		return err
	}
	return tx.Commit()
}

// DeleteConnection marks a connection deleted, which frees its name, and drops its cached
// inventory. An unknown or already deleted connection is ENOTFOUND.
func (s *ConnectionService) DeleteConnection(ctx context.Context, id int64) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := deleteConnection(ctx, tx, id); err != nil {
		return err
	}
	return tx.Commit()
}

func findConnectionByID(ctx context.Context, tx *Tx, id int64) (*quarry.Connection, error) {
	c, err := scanConnection(tx.queryRow(ctx, "SELECT "+connectionColumns+" FROM connections WHERE id = ?", id))
	return c, translate(err, "find connection", errConnectionNotFound, "")
}

// lockLiveConnection locks the row of the connection with id until tx ends, so that a change
// and a concurrent delete happen one after the other (SQLite's write transactions are one at a
// time anyway; on PostgreSQL the no-op update takes the row lock). It returns the connection as
// it is once locked: ENOTFOUND when there is none and ECONFLICT when it is deleted, since the
// changes that call it make no sense on a deleted connection.
func lockLiveConnection(ctx context.Context, tx *Tx, id int64) (*quarry.Connection, error) {
	if _, err := tx.exec(ctx, "UPDATE connections SET updated_at = updated_at WHERE id = ? AND deleted_at IS NULL", id); err != nil {
		return nil, translate(err, "lock connection", "", "")
	}
	c, err := findConnectionByID(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	if c.DeletedAt != nil {
		return nil, quarry.Errorf(quarry.ECONFLICT, "The connection %s is deleted.", c.Name)
	}
	return c, nil
}

func findConnections(ctx context.Context, tx *Tx, filter quarry.ConnectionFilter) ([]*quarry.Connection, int, error) {
	var w where
	if filter.ID != nil {
		w.add("id = ?", *filter.ID)
	}
	if filter.Provider != nil {
		w.add("provider = ?", *filter.Provider)
	}
	if !filter.IncludeDeleted {
		w.add("deleted_at IS NULL")
	}
	var conns []*quarry.Connection
	total, err := findPage(ctx, tx, "SELECT "+connectionColumns, "FROM connections", &w, "name_key, id", filter.Offset, filter.Limit,
		func(rows *sql.Rows) error {
			c, err := scanConnection(rows)
			conns = append(conns, c)
			return err
		})
	if err != nil {
		return nil, 0, translate(err, "find connections", "", "")
	}
	return conns, total, nil
}

func errConnectionName(name string) string { return "A connection named " + name + " already exists." }

func createConnection(ctx context.Context, tx *Tx, c *quarry.Connection) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if c.CreatedBy == 0 {
		c.CreatedBy = quarry.UserIDFromContext(ctx)
	}
	createdBy := sql.NullInt64{Int64: c.CreatedBy, Valid: c.CreatedBy != 0}
	if c.SecretSetAt.IsZero() {
		c.SecretSetAt = tx.now
	}
	c.SecretSetAt = storedTime(c.SecretSetAt)
	c.Health, c.HealthMessage, c.CheckedAt = quarry.HealthUnknown, "", nil
	c.Granted, c.Missing = []string{}, []string{}
	c.CreatedAt, c.UpdatedAt, c.DeletedAt = tx.now, tx.now, nil
	err := tx.queryRow(ctx, `INSERT INTO connections (provider, name, name_key, tenant_id, client_id, cloud, api_url,
			authority_url, ca_cert_pem, secret_sealed, secret_set_at, health, health_message, granted, missing,
			created_by, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		c.Provider, c.Name, nameKey(c.Name), c.TenantID, c.ClientID, c.Cloud, c.APIURL,
		c.AuthorityURL, c.CACertPEM, c.SecretSealed, c.SecretSetAt, c.Health, c.HealthMessage, "[]", "[]",
		createdBy, c.CreatedAt, c.UpdatedAt).Scan(&c.ID)
	return translate(err, "create connection", "", errConnectionName(c.Name))
}

func updateConnection(ctx context.Context, tx *Tx, id int64, upd quarry.ConnectionUpdate) (*quarry.Connection, error) {
	c, err := lockLiveConnection(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	if upd.Name == nil && upd.SecretSealed == nil && upd.SecretSetAt == nil && upd.APIURL == nil && upd.AuthorityURL == nil && upd.CACertPEM == nil {
		return c, nil
	}
	for _, f := range []struct {
		dst *string
		src *string
	}{{&c.APIURL, upd.APIURL}, {&c.AuthorityURL, upd.AuthorityURL}, {&c.CACertPEM, upd.CACertPEM}} {
		if f.src != nil {
			*f.dst = *f.src
		}
	}
	if upd.Name != nil {
		c.Name = *upd.Name
		if err := c.Validate(); err != nil {
			return nil, err
		}
	}
	if upd.SecretSealed != nil {
		c.SecretSealed = *upd.SecretSealed
		c.SecretSetAt = tx.now // a new secret was set now, unless the caller says when
	}
	if upd.SecretSetAt != nil {
		c.SecretSetAt = storedTime(*upd.SecretSetAt)
	}
	c.UpdatedAt = tx.now
	_, err = tx.exec(ctx, `UPDATE connections SET name = ?, name_key = ?, secret_sealed = ?, secret_set_at = ?, api_url = ?,
		authority_url = ?, ca_cert_pem = ?, updated_at = ? WHERE id = ?`, c.Name, nameKey(c.Name), c.SecretSealed, c.SecretSetAt,
		c.APIURL, c.AuthorityURL, c.CACertPEM, c.UpdatedAt, id)
	if err != nil {
		return nil, translate(err, "update connection", "", errConnectionName(c.Name))
	}
	return c, nil
}

func recordConnectionCheck(ctx context.Context, tx *Tx, id int64, check quarry.ConnectionCheck) error {
	if _, err := lockLiveConnection(ctx, tx, id); err != nil {
		return err
	}
	health := quarry.HealthFailed
	if check.Result.OK {
		health = quarry.HealthOK
	}
	at := check.At
	if at.IsZero() {
		at = tx.now
	}
	_, err := tx.exec(ctx, "UPDATE connections SET health = ?, health_message = ?, granted = ?, missing = ?, checked_at = ? WHERE id = ?",
		health, check.Result.Message, encodeStrings(check.Result.Granted), encodeStrings(check.Result.Missing), at, id)
	return translate(err, "record connection check", "", "")
}

func deleteConnection(ctx context.Context, tx *Tx, id int64) error {
	n, err := execCount(ctx, tx, "UPDATE connections SET deleted_at = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL", tx.now, tx.now, id)
	if err != nil {
		return translate(err, "delete connection", "", "")
	} else if n == 0 {
		return quarry.Errorf(quarry.ENOTFOUND, errConnectionNotFound)
	}
	return deleteHosts(ctx, tx, id, true)
}
