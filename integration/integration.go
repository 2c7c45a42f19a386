// Package integration manages XDR connections: it seals their secrets, checks them against
// the platform, and keeps each one's host inventory cached and fresh. It sits between the HTTP
// layer and the xdr providers, and knows no provider by name.
package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/secret"
	"github.com/quarry-dfir/quarry/xdr"
)

// DefaultInventoryTTL is how long a fetched host inventory is served before it is fetched again.
const DefaultInventoryTTL = 5 * time.Minute

// Service manages connections. Connections, Hosts and Box are required.
type Service struct {
	Connections  quarry.ConnectionService
	Hosts        quarry.HostService
	Box          *secret.Box
	Logger       *slog.Logger
	Now          func() time.Time
	InventoryTTL time.Duration
	HTTPClient   *http.Client // for tests; nil uses the provider's default
	// TimeScale runs the providers' rate windows and backoff this many times faster, to match
	// an emulator run at the same scale; 0 is 1 (production).
	TimeScale float64

	mu       sync.Mutex
	inflight map[int64]*refresh // one inventory fetch per connection at a time
	clients  map[int64]cachedClient
}

// cachedClient keeps a connection's provider client, and with it the platform access token,
// until the connection changes (a rotated secret or a moved endpoint bumps UpdatedAt).
type cachedClient struct {
	updated time.Time
	client  xdr.Client
}

type refresh struct {
	done chan struct{}
	err  error
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// NewConnection is what an admin enters to add a connection.
type NewConnection struct {
	Provider     string
	Name         string
	TenantID     string
	ClientID     string
	ClientSecret string
	Cloud        string
	APIURL       string
	AuthorityURL string
	CACertPEM    string
}

// Create checks the connection first and saves it only when its credentials sign in: wrong
// credentials leave nothing behind. A connection that signs in but lacks permissions is saved
// with the failed check, so the admin can grant them and check again.
func (s *Service) Create(ctx context.Context, in NewConnection) (*quarry.Connection, *xdr.CheckResult, error) {
	c := &quarry.Connection{
		Provider: in.Provider, Name: in.Name, TenantID: in.TenantID, ClientID: in.ClientID, Cloud: in.Cloud,
		APIURL: in.APIURL, AuthorityURL: in.AuthorityURL, CACertPEM: in.CACertPEM,
		CreatedBy: quarry.UserIDFromContext(ctx),
	}
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	if in.ClientSecret == "" {
		return nil, nil, quarry.FieldError("client_secret", "Client secret is required.")
	}
	res, err := s.check(ctx, c, in.ClientSecret)
	if err != nil {
		return nil, nil, err
	}
	if !res.SignedIn {
		return nil, res, quarry.FieldError("client_secret", "The connection was not saved: %s", res.Message)
	}
	c.SecretSealed, c.SecretSetAt = s.Box.Seal([]byte(in.ClientSecret), c.SecretPlace()), s.now()
	if err := s.Connections.CreateConnection(ctx, c); err != nil {
		return nil, nil, err
	}
	if err := s.record(ctx, c, res); err != nil {
		return nil, nil, err
	}
	return c, res, nil
}

// check opens a provider client with the given secret and runs the provider's check.
func (s *Service) check(ctx context.Context, c *quarry.Connection, clientSecret string) (*xdr.CheckResult, error) {
	client, err := s.open(c, clientSecret)
	if err != nil {
		return nil, err
	}
	res := client.Check(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &res, nil
}

func (s *Service) record(ctx context.Context, c *quarry.Connection, res *xdr.CheckResult) error {
	at := s.now()
	if err := s.Connections.RecordConnectionCheck(ctx, c.ID, quarry.ConnectionCheck{At: at, Result: *res}); err != nil {
		return fmt.Errorf("integration: record check: %w", err)
	}
	c.CheckedAt, c.Granted, c.Missing, c.HealthMessage = &at, res.Granted, res.Missing, res.Message
	c.Health = quarry.HealthFailed
	if res.OK {
		c.Health = quarry.HealthOK
	}
	return nil
}

// open builds a provider client; configuration errors come back as field errors.
func (s *Service) open(c *quarry.Connection, clientSecret string) (xdr.Client, error) {
	p, ok := xdr.Lookup(c.Provider)
	if !ok {
		return nil, quarry.FieldError("provider", "Unknown provider %q.", c.Provider)
	}
	client, err := p.Open(xdr.Config{
		TenantID: c.TenantID, ClientID: c.ClientID, ClientSecret: clientSecret, Cloud: c.Cloud,
		APIURL: c.APIURL, AuthorityURL: c.AuthorityURL, CACertPEM: []byte(c.CACertPEM),
		HTTPClient: s.HTTPClient, Logger: s.logger().With("connection", c.ID, "provider", c.Provider), TimeScale: s.TimeScale,
	})
	if err != nil {
		var ce *xdr.ConfigError
		if errors.As(err, &ce) {
			return nil, quarry.FieldError(ce.Field, "%s", ce.Message)
		}
		return nil, quarry.Errorf(quarry.EINVALID, "The connection settings are not valid: %v", err)
	}
	return client, nil
}

// Client returns a provider client for a saved connection, unsealing its secret.
func (s *Service) Client(ctx context.Context, c *quarry.Connection) (xdr.Client, error) {
	if c.DeletedAt != nil {
		return nil, quarry.Errorf(quarry.ECONFLICT, "Connection %q was deleted.", c.Name)
	}
	s.mu.Lock()
	cc, ok := s.clients[c.ID]
	s.mu.Unlock()
	if ok && cc.updated.Equal(c.UpdatedAt) {
		return cc.client, nil
	}
	sec, err := s.Box.Open(c.SecretSealed, c.SecretPlace())
	if err != nil {
		return nil, fmt.Errorf("integration: connection %d: %w", c.ID, err)
	}
	client, err := s.open(c, string(sec))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.clients == nil {
		s.clients = map[int64]cachedClient{}
	}
	s.clients[c.ID] = cachedClient{updated: c.UpdatedAt, client: client}
	s.mu.Unlock()
	return client, nil
}

// Check runs the check of a saved connection and records its result.
func (s *Service) Check(ctx context.Context, id int64) (*quarry.Connection, *xdr.CheckResult, error) {
	c, err := s.Connections.FindConnectionByID(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	client, err := s.Client(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	res := client.Check(ctx)
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := s.record(ctx, c, &res); err != nil {
		return nil, nil, err
	}
	return c, &res, nil
}

// RotateSecret replaces a connection's client secret after checking that the new one signs in;
// a secret that does not leaves the old one in place.
func (s *Service) RotateSecret(ctx context.Context, id int64, clientSecret string) (*quarry.Connection, *xdr.CheckResult, error) {
	if clientSecret == "" {
		return nil, nil, quarry.FieldError("client_secret", "Client secret is required.")
	}
	c, err := s.Connections.FindConnectionByID(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if c.DeletedAt != nil {
		return nil, nil, quarry.Errorf(quarry.ECONFLICT, "Connection %q was deleted.", c.Name)
	}
	res, err := s.check(ctx, c, clientSecret)
	if err != nil {
		return nil, nil, err
	}
	if !res.SignedIn {
		return nil, res, quarry.FieldError("client_secret", "The secret was not replaced: %s", res.Message)
	}
	sealed, at := s.Box.Seal([]byte(clientSecret), c.SecretPlace()), s.now()
	if c, err = s.Connections.UpdateConnection(ctx, id, quarry.ConnectionUpdate{SecretSealed: &sealed, SecretSetAt: &at}); err != nil {
		return nil, nil, err
	}
	if err := s.record(ctx, c, res); err != nil {
		return nil, nil, err
	}
	return c, res, nil
}

// CheckAll re-checks every live connection (the daily check), logging what changed.
func (s *Service) CheckAll(ctx context.Context) error {
	cs, _, err := s.Connections.FindConnections(ctx, quarry.ConnectionFilter{Limit: 10000})
	if err != nil {
		return err
	}
	for _, c := range cs {
		before := c.Health
		c2, res, err := s.Check(ctx, c.ID)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			s.logger().Error("connection check failed", "connection", c.ID, "err", err)
			continue
		}
		if c2.Health != before {
			s.logger().Warn("connection health changed", "connection", c.ID, "name", c.Name, "from", before, "to", c2.Health, "message", res.Message)
		}
	}
	return nil
}

// HostPage is one page of a connection's inventory.
type HostPage struct {
	Hosts     []xdr.Host
	Total     int
	FetchedAt time.Time
}

// ListHosts pages through a connection's cached inventory, fetching it first when it is older than
// the TTL, has never been fetched, or refresh is asked for. Concurrent callers share one fetch.
func (s *Service) ListHosts(ctx context.Context, f quarry.HostFilter, forceRefresh bool) (*HostPage, error) {
	c, err := s.Connections.FindConnectionByID(ctx, f.ConnectionID)
	if err != nil {
		return nil, err
	}
	inv, err := s.Hosts.FindInventory(ctx, c.ID)
	if err != nil && quarry.ErrorCode(err) != quarry.ENOTFOUND {
		return nil, err
	}
	ttl := s.InventoryTTL
	if ttl == 0 {
		ttl = DefaultInventoryTTL
	}
	if forceRefresh || inv == nil || s.now().Sub(inv.FetchedAt) > ttl {
		if err := s.Refresh(ctx, c); err != nil {
			// A stale inventory is better than none: serve it and say so in the log.
			if inv == nil || forceRefresh {
				return nil, err
			}
			s.logger().Warn("inventory refresh failed; serving the cached one", "connection", c.ID, "err", err)
		}
		if inv, err = s.Hosts.FindInventory(ctx, c.ID); err != nil {
			return nil, err
		}
	}
	hosts, total, err := s.Hosts.FindHosts(ctx, f)
	if err != nil {
		return nil, err
	}
	return &HostPage{Hosts: hosts, Total: total, FetchedAt: inv.FetchedAt}, nil
}

// Refresh fetches a connection's whole inventory from the platform and replaces the cache.
func (s *Service) Refresh(ctx context.Context, c *quarry.Connection) error {
	s.mu.Lock()
	if r, ok := s.inflight[c.ID]; ok {
		s.mu.Unlock()
		select {
		case <-r.done:
			return r.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r := &refresh{done: make(chan struct{})}
	if s.inflight == nil {
		s.inflight = map[int64]*refresh{}
	}
	s.inflight[c.ID] = r
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.inflight, c.ID)
		s.mu.Unlock()
		close(r.done)
	}()

	r.err = s.fetch(ctx, c)
	return r.err
}

func (s *Service) fetch(ctx context.Context, c *quarry.Connection) error {
	client, err := s.Client(ctx, c)
	if err != nil {
		return err
	}
	hosts, err := client.ListHosts(ctx)
	if err != nil {
		return platformError(c, "list hosts", err)
	}
	return s.Hosts.ReplaceHosts(ctx, c.ID, hosts, s.now())
}

// platformError turns a provider error into a domain error with a message the user can act on.
func platformError(c *quarry.Connection, op string, err error) error {
	var xe *xdr.Error
	msg := ""
	if errors.As(err, &xe) && xe.Message != "" {
		msg = xe.Message
	}
	wrap := func(code, def string) error {
		if msg == "" {
			msg = def
		}
		return &quarry.Error{Code: code, Message: fmt.Sprintf("%s (%s): %s", c.Name, op, msg), Err: err}
	}
	switch {
	case errors.Is(err, xdr.ErrUnauthorized):
		return wrap(quarry.EUNAVAILABLE, "the platform refused the connection's credentials; check the connection")
	case errors.Is(err, xdr.ErrForbidden):
		return wrap(quarry.EUNAVAILABLE, "a permission is missing; check the connection")
	case errors.Is(err, xdr.ErrThrottled):
		return wrap(quarry.ETHROTTLED, "the platform's rate limit was reached; try again shortly")
	case errors.Is(err, xdr.ErrNotFound):
		return wrap(quarry.ENOTFOUND, "not found on the platform")
	case errors.Is(err, xdr.ErrUnavailable):
		return wrap(quarry.EUNAVAILABLE, "the platform is not answering; try again later")
	}
	return fmt.Errorf("integration: connection %d: %s: %w", c.ID, op, err)
}

// Rename changes a connection's display name.
func (s *Service) Rename(ctx context.Context, id int64, name string) (*quarry.Connection, error) {
	c, err := s.Connections.FindConnectionByID(ctx, id)
	if err != nil {
		return nil, err
	}
	c.Name = name
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return s.Connections.UpdateConnection(ctx, id, quarry.ConnectionUpdate{Name: &c.Name})
}
