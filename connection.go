package quarry

import (
	"context"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry/xdr"
)

// Connection health, from the latest check.
const (
	HealthUnknown = "unknown" // never checked
	HealthOK      = "ok"
	HealthFailed  = "failed"
)

// Connection is a configured XDR tenant: which provider, which app registration, which cloud.
// The client secret is sealed at rest (SecretSealed) and never leaves the server: it is not in
// JSON, not in logs, and the API cannot return it.
type Connection struct {
	ID           int64  `json:"id"`
	Provider     string `json:"provider"`
	Name         string `json:"name"`
	TenantID     string `json:"tenant_id"`
	ClientID     string `json:"client_id"`
	Cloud        string `json:"cloud"`
	APIURL       string `json:"api_url,omitempty"`
	AuthorityURL string `json:"authority_url,omitempty"`
	CACertPEM    string `json:"ca_cert,omitempty"`

	SecretSealed string    `json:"-"`
	SecretSetAt  time.Time `json:"secret_set_at"`

	Health        string     `json:"health"`
	HealthMessage string     `json:"health_message"`
	CheckedAt     *time.Time `json:"checked_at,omitempty"`
	Granted       []string   `json:"granted"`
	Missing       []string   `json:"missing"`

	CreatedBy int64      `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	DeletedAt *time.Time `json:"deleted_at,omitempty"` // deleted connections stay for the acquisitions that name them
}

// Validate checks the fields a caller sets (the provider validates its own settings on Open).
func (c *Connection) Validate() error {
	c.Name = strings.TrimSpace(c.Name)
	c.TenantID = strings.TrimSpace(c.TenantID)
	c.ClientID = strings.TrimSpace(c.ClientID)
	if _, ok := xdr.Lookup(c.Provider); !ok {
		return FieldError("provider", "Unknown provider %q.", c.Provider)
	}
	if c.Name == "" || len(c.Name) > 100 {
		return FieldError("name", "Connection name must be 1 to 100 characters.")
	}
	if c.TenantID == "" {
		return FieldError("tenant_id", "Tenant ID is required.")
	}
	if c.ClientID == "" {
		return FieldError("client_id", "Client ID is required.")
	}
	return nil
}

// SecretPlace is the associated data that binds a connection's sealed secret to its row.
func (c *Connection) SecretPlace() string {
	return "connection:" + c.Provider + ":" + c.TenantID + ":" + c.ClientID + ":client_secret"
}

// ConnectionFilter selects connections; deleted ones only when asked.
type ConnectionFilter struct {
	ID             *int64
	Provider       *string
	IncludeDeleted bool
	Offset, Limit  int
}

// ConnectionUpdate changes a connection; nil fields are left alone.
type ConnectionUpdate struct {
	Name         *string
	SecretSealed *string
	SecretSetAt  *time.Time
	// Endpoint settings, for a custom deployment that moved (the demo's emulator gets a new
	// port at every start).
	APIURL       *string
	AuthorityURL *string
	CACertPEM    *string
}

// ConnectionCheck is the stored outcome of a connection check.
type ConnectionCheck struct {
	At     time.Time
	Result xdr.CheckResult
}

// ConnectionService stores XDR connections. FindConnectionByID returns deleted connections too
// (past acquisitions name them) and ENOTFOUND for unknown ids; CreateConnection returns
// ECONFLICT for a name in use by a live connection.
type ConnectionService interface {
	FindConnectionByID(ctx context.Context, id int64) (*Connection, error)
	FindConnections(ctx context.Context, filter ConnectionFilter) ([]*Connection, int, error)
	CreateConnection(ctx context.Context, c *Connection) error
	UpdateConnection(ctx context.Context, id int64, upd ConnectionUpdate) (*Connection, error)
	RecordConnectionCheck(ctx context.Context, id int64, check ConnectionCheck) error
	DeleteConnection(ctx context.Context, id int64) error
}

// HostFilter selects cached inventory hosts of one connection.
type HostFilter struct {
	ConnectionID int64
	Query        string // case-insensitive substring of the name, or an IP prefix
	OS           string // windows, linux, macos, other
	Online       *bool
	Health       string
	Risk         string
	Tag          string
	Offset       int
	Limit        int
}

// Inventory is what the host cache knows of a connection.
type Inventory struct {
	ConnectionID int64     `json:"connection_id"`
	FetchedAt    time.Time `json:"fetched_at"`
	Hosts        int       `json:"hosts"`
}

// HostService caches each connection's host inventory so that paging through thousands of hosts
// costs no platform calls. ReplaceHosts swaps a connection's whole inventory atomically.
type HostService interface {
	ReplaceHosts(ctx context.Context, connectionID int64, hosts []xdr.Host, fetchedAt time.Time) error
	FindHosts(ctx context.Context, filter HostFilter) ([]xdr.Host, int, error)
	FindHost(ctx context.Context, connectionID int64, hostID string) (*xdr.Host, error)
	FindInventory(ctx context.Context, connectionID int64) (*Inventory, error) // ENOTFOUND when never fetched
}
