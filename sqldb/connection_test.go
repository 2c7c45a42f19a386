package sqldb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
	"github.com/quarry-dfir/quarry/xdr"
)

// testProviderID names a provider registered only so that Connection.Validate accepts it: the
// store never calls a provider, so none of its other methods is needed.
const testProviderID = "sqldb_test"

type testProvider struct{ xdr.Provider }

func (testProvider) ID() string { return testProviderID }

func init() { xdr.Register(testProvider{}) }

// newConnection returns a valid connection named name, its secret sealed as the caller would.
func newConnection(name string) *quarry.Connection {
	key := strings.TrimSpace(name)
	return &quarry.Connection{
		Provider: testProviderID, Name: name, TenantID: "tenant-" + key, ClientID: "client-" + key,
		Cloud: "custom", APIURL: "https://127.0.0.1:8443", AuthorityURL: "https://127.0.0.1:8443/auth",
		CACertPEM: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", SecretSealed: "v1.sealed." + key,
	}
}

func mustCreateConnection(t testing.TB, s *sqldb.ConnectionService, ctx context.Context, name string) *quarry.Connection {
	t.Helper()
	c := newConnection(name)
	if err := s.CreateConnection(ctx, c); err != nil {
		t.Fatalf("CreateConnection(%q): %v", name, err)
	}
	return c
}

func TestConnectionService(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		advance := setClock(db)
		s := sqldb.NewConnectionService(db)
		alice := mustCreateUser(t, db, "alice", quarry.RoleAdmin)
		actx := quarry.NewContextWithActor(ctx, &quarry.Actor{User: alice, Role: alice.Role})
		find := func(t *testing.T, id int64) *quarry.Connection {
			t.Helper()
			c, err := s.FindConnectionByID(ctx, id)
			if err != nil {
				t.Fatalf("FindConnectionByID(%d): %v", id, err)
			}
			return c
		}

		first := mustCreateConnection(t, s, actx, "  Production ")
		advance(time.Second)
		t.Run("CreateConnection/OK", func(t *testing.T) {
			want := newConnection("  Production ")
			want.ID, want.Name, want.CreatedBy = first.ID, "Production", alice.ID
			want.SecretSetAt, want.CreatedAt, want.UpdatedAt = stored(base), stored(base), stored(base)
			want.Health, want.Granted, want.Missing = quarry.HealthUnknown, []string{}, []string{}
			if !reflect.DeepEqual(first, want) {
				t.Fatalf("created connection = %+v, want %+v", first, want)
			}
			if got := find(t, first.ID); !reflect.DeepEqual(got, want) {
				t.Fatalf("FindConnectionByID = %+v, want %+v", got, want)
			}
			b, _ := json.Marshal(find(t, first.ID))
			if !strings.Contains(string(b), `"granted":[],"missing":[]`) || strings.Contains(string(b), "sealed") {
				t.Errorf("JSON = %s, want empty granted and missing arrays and no secret", b)
			}
		})
		t.Run("CreateConnection/BySystem", func(t *testing.T) {
			c := mustCreateConnection(t, s, ctx, "system")
			if got := find(t, c.ID); got.CreatedBy != 0 {
				t.Fatalf("CreatedBy = %d, want 0", got.CreatedBy)
			}
		})
		t.Run("CreateConnection/Errors", func(t *testing.T) {
			unknown := newConnection("other")
			unknown.Provider = "nope"
			badCreator := newConnection("bad creator")
			badCreator.CreatedBy = alice.ID + 100
			tests := []struct {
				name string
				c    *quarry.Connection
				code string
			}{
				{"ErrConflictFoldsCase", newConnection("PRODUCTION"), quarry.ECONFLICT},
				{"ErrUnknownProvider", unknown, quarry.EINVALID},
				{"ErrEmptyName", newConnection("  "), quarry.EINVALID},
				{"ErrUnknownCreator", badCreator, quarry.EINVALID},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					err := s.CreateConnection(ctx, tt.c)
					wantCode(t, err, tt.code)
					if strings.Contains(err.Error(), tt.c.SecretSealed) {
						t.Errorf("error %q names the sealed secret", err)
					}
				})
			}
			err := s.CreateConnection(ctx, newConnection("PRODUCTION"))
			if msg := quarry.ErrorMessage(err); msg != "A connection named PRODUCTION already exists." {
				t.Errorf("conflict message = %q", msg)
			}
		})
		t.Run("FindConnectionByID/ErrNotFound", func(t *testing.T) {
			_, err := s.FindConnectionByID(ctx, first.ID+100)
			wantCode(t, err, quarry.ENOTFOUND)
		})

		t.Run("UpdateConnection", func(t *testing.T) {
			c := mustCreateConnection(t, s, ctx, "staging")
			mustCreateConnection(t, s, ctx, "taken")
			gone := mustCreateConnection(t, s, ctx, "gone")
			if err := s.DeleteConnection(ctx, gone.ID); err != nil {
				t.Fatal(err)
			}
			str := func(s string) *string { return &s }
			setAt := base.Add(-time.Hour)
			tests := []struct {
				name       string
				id         int64
				upd        quarry.ConnectionUpdate
				code       string
				wantName   string
				wantSecret string
				wantSetAt  time.Time // zero: now
				wantEdit   bool
			}{
				{"Rename", c.ID, quarry.ConnectionUpdate{Name: str(" Staging EU ")}, "", "Staging EU", c.SecretSealed, c.SecretSetAt, true},
				{"RenameCaseOnly", c.ID, quarry.ConnectionUpdate{Name: str("STAGING EU")}, "", "STAGING EU", c.SecretSealed, c.SecretSetAt, true},
				{"NewSecretStampsNow", c.ID, quarry.ConnectionUpdate{SecretSealed: str("v1.rotated")}, "", "STAGING EU", "v1.rotated", time.Time{}, true},
				{"NewSecretAt", c.ID, quarry.ConnectionUpdate{SecretSealed: str("v1.again"), SecretSetAt: &setAt}, "", "STAGING EU", "v1.again", stored(setAt), true},
				{"Nothing", c.ID, quarry.ConnectionUpdate{}, "", "STAGING EU", "v1.again", stored(setAt), false},
				{"ErrNameTaken", c.ID, quarry.ConnectionUpdate{Name: str("Taken")}, quarry.ECONFLICT, "", "", time.Time{}, false},
				{"ErrEmptyName", c.ID, quarry.ConnectionUpdate{Name: str(" ")}, quarry.EINVALID, "", "", time.Time{}, false},
				{"ErrNotFound", c.ID + 100, quarry.ConnectionUpdate{Name: str("x")}, quarry.ENOTFOUND, "", "", time.Time{}, false},
				{"ErrDeleted", gone.ID, quarry.ConnectionUpdate{Name: str("back")}, quarry.ECONFLICT, "", "", time.Time{}, false},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					advance(time.Second)
					before := find(t, c.ID)
					got, err := s.UpdateConnection(ctx, tt.id, tt.upd)
					if tt.code != "" {
						wantCode(t, err, tt.code)
						if after := find(t, c.ID); !reflect.DeepEqual(after, before) {
							t.Fatalf("failed update changed the connection: %+v, was %+v", after, before)
						}
						return
					}
					if err != nil {
						t.Fatalf("UpdateConnection: %v", err)
					}
					wantUpdated, wantSetAt := before.UpdatedAt, tt.wantSetAt
					if tt.wantEdit {
						wantUpdated = stored(db.Now())
					}
					if wantSetAt.IsZero() { // the secret was set now
						wantSetAt = stored(db.Now())
					}
					if got.Name != tt.wantName || got.SecretSealed != tt.wantSecret || !got.SecretSetAt.Equal(wantSetAt) || !got.UpdatedAt.Equal(wantUpdated) {
						t.Fatalf("UpdateConnection = name %q secret %q set %v updated %v; want %q %q %v %v",
							got.Name, got.SecretSealed, got.SecretSetAt, got.UpdatedAt, tt.wantName, tt.wantSecret, wantSetAt, wantUpdated)
					}
					if stored := find(t, c.ID); !reflect.DeepEqual(stored, got) {
						t.Fatalf("stored %+v, returned %+v", stored, got)
					}
				})
			}
		})

		t.Run("RecordConnectionCheck", func(t *testing.T) {
			c := mustCreateConnection(t, s, ctx, "checked")
			gone := mustCreateConnection(t, s, ctx, "checked and gone")
			if err := s.DeleteConnection(ctx, gone.ID); err != nil {
				t.Fatal(err)
			}
			at := base.Add(time.Minute)
			tests := []struct {
				name    string
				id      int64
				check   quarry.ConnectionCheck
				code    string
				health  string
				granted []string
				missing []string
			}{
				{"OK", c.ID, quarry.ConnectionCheck{At: at, Result: xdr.CheckResult{OK: true, SignedIn: true, Granted: []string{"Machine.Read.All", "Machine.LiveResponse"}, Message: "All good."}},
					"", quarry.HealthOK, []string{"Machine.Read.All", "Machine.LiveResponse"}, []string{}},
				{"Failed", c.ID, quarry.ConnectionCheck{At: at.Add(time.Minute), Result: xdr.CheckResult{SignedIn: true, Granted: []string{"Machine.Read.All"}, Missing: []string{"Library.Manage"}, Message: "Grant Library.Manage."}},
					"", quarry.HealthFailed, []string{"Machine.Read.All"}, []string{"Library.Manage"}},
				{"FailedSignIn", c.ID, quarry.ConnectionCheck{At: at.Add(2 * time.Minute), Result: xdr.CheckResult{Message: "The client secret is wrong."}},
					"", quarry.HealthFailed, []string{}, []string{}},
				{"ErrNotFound", c.ID + 100, quarry.ConnectionCheck{At: at}, quarry.ENOTFOUND, "", nil, nil},
				{"ErrDeleted", gone.ID, quarry.ConnectionCheck{At: at}, quarry.ECONFLICT, "", nil, nil},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					before := find(t, c.ID)
					err := s.RecordConnectionCheck(ctx, tt.id, tt.check)
					if tt.code != "" {
						wantCode(t, err, tt.code)
						return
					}
					if err != nil {
						t.Fatalf("RecordConnectionCheck: %v", err)
					}
					got := find(t, c.ID)
					if got.Health != tt.health || got.HealthMessage != tt.check.Result.Message || got.CheckedAt == nil || !got.CheckedAt.Equal(stored(tt.check.At)) ||
						!reflect.DeepEqual(got.Granted, tt.granted) || !reflect.DeepEqual(got.Missing, tt.missing) {
						t.Fatalf("after check: health %q message %q at %v granted %q missing %q; want %q %q %v %q %q", got.Health, got.HealthMessage, got.CheckedAt,
							got.Granted, got.Missing, tt.health, tt.check.Result.Message, stored(tt.check.At), tt.granted, tt.missing)
					}
					if !got.UpdatedAt.Equal(before.UpdatedAt) {
						t.Errorf("a check moved updated_at from %v to %v", before.UpdatedAt, got.UpdatedAt)
					}
				})
			}
		})

		t.Run("DeleteConnection", func(t *testing.T) {
			c := mustCreateConnection(t, s, ctx, "Doomed")
			hosts := sqldb.NewHostService(db)
			if err := hosts.ReplaceHosts(ctx, c.ID, []xdr.Host{{ID: "h1", Name: "one", Tags: []string{"t"}}}, base); err != nil {
				t.Fatal(err)
			}
			advance(time.Second)
			if err := s.DeleteConnection(ctx, c.ID); err != nil {
				t.Fatalf("DeleteConnection: %v", err)
			}
			got := find(t, c.ID)
			if got.DeletedAt == nil || !got.DeletedAt.Equal(stored(db.Now())) || got.Name != "Doomed" {
				t.Fatalf("deleted connection = %+v, want it kept with DeletedAt %v", got, stored(db.Now()))
			}
			_, err := hosts.FindHost(ctx, c.ID, "h1")
			wantCode(t, err, quarry.ENOTFOUND)
			_, err = hosts.FindInventory(ctx, c.ID)
			wantCode(t, err, quarry.ENOTFOUND)
			var tags int
			if err := db.SQL().QueryRow("SELECT COUNT(*) FROM xdr_host_tags").Scan(&tags); err != nil || tags != 0 {
				t.Errorf("%d tags left, %v; want none", tags, err)
			}
			wantCode(t, s.DeleteConnection(ctx, c.ID), quarry.ENOTFOUND)
			wantCode(t, s.DeleteConnection(ctx, c.ID+100), quarry.ENOTFOUND)
			wantCode(t, hosts.ReplaceHosts(ctx, c.ID, nil, base), quarry.ECONFLICT)

			again := mustCreateConnection(t, s, ctx, "DOOMED")
			if again.ID == c.ID {
				t.Fatalf("the new connection reused id %d", c.ID)
			}
			if err := s.DeleteConnection(ctx, again.ID); err != nil {
				t.Fatalf("DeleteConnection of the second Doomed: %v", err)
			}
		})

		t.Run("FindConnections", func(t *testing.T) {
			other := "other"
			provider := testProviderID
			tests := []struct {
				name   string
				filter quarry.ConnectionFilter
				want   []string
				total  int
			}{
				{"Live", quarry.ConnectionFilter{}, []string{"checked", "Production", "STAGING EU", "system", "taken"}, 5},
				{"IncludeDeleted", quarry.ConnectionFilter{IncludeDeleted: true},
					[]string{"checked", "checked and gone", "Doomed", "DOOMED", "gone", "Production", "STAGING EU", "system", "taken"}, 9},
				{"Page", quarry.ConnectionFilter{Offset: 1, Limit: 2}, []string{"Production", "STAGING EU"}, 5},
				{"ID", quarry.ConnectionFilter{ID: &first.ID}, []string{"Production"}, 1},
				{"Provider", quarry.ConnectionFilter{Provider: &provider, Limit: 1}, []string{"checked"}, 5},
				{"ProviderNone", quarry.ConnectionFilter{Provider: &other}, nil, 0},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					conns, total, err := s.FindConnections(ctx, tt.filter)
					names := pluck(conns, func(c *quarry.Connection) string { return c.Name })
					if err != nil || total != tt.total || !reflect.DeepEqual(names, tt.want) {
						t.Fatalf("FindConnections(%+v) = %q, %d, %v; want %q, %d", tt.filter, names, total, err, tt.want, tt.total)
					}
				})
			}
		})

		// The store keeps the sealed secret byte for byte: it never trims, re-encodes or logs it.
		t.Run("SecretStoredVerbatim", func(t *testing.T) {
			for _, secret := range []string{"v1.AAEC/+8=.x", "  leading and trailing spaces  ", "line\nbreak\tand ünïcode", ""} {
				c := newConnection("secret " + secret)
				c.SecretSealed = secret
				if err := s.CreateConnection(ctx, c); err != nil {
					t.Fatalf("CreateConnection: %v", err)
				}
				var raw string
				if err := db.SQL().QueryRow(fmt.Sprintf("SELECT secret_sealed FROM connections WHERE id = %d", c.ID)).Scan(&raw); err != nil || raw != secret {
					t.Fatalf("secret_sealed column = %q, %v; want %q", raw, err, secret)
				}
				if got := find(t, c.ID); got.SecretSealed != secret {
					t.Fatalf("FindConnectionByID secret = %q, want %q", got.SecretSealed, secret)
				}
			}
		})
	})
}

func TestConnectionEndpointUpdate(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := sqldb.NewConnectionService(db)
		c := mustCreateConnection(t, s, ctx, "moving emulator")
		api, authority, ca := "https://127.0.0.1:4444", "https://127.0.0.1:4444/", "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
		got, err := s.UpdateConnection(ctx, c.ID, quarry.ConnectionUpdate{APIURL: &api, AuthorityURL: &authority, CACertPEM: &ca})
		if err != nil {
			t.Fatal(err)
		}
		again, err := s.FindConnectionByID(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range []*quarry.Connection{got, again} {
			if x.APIURL != api || x.AuthorityURL != authority || x.CACertPEM != ca || x.Name != c.Name || x.SecretSealed != c.SecretSealed {
				t.Fatalf("after endpoint update = %+v", x)
			}
		}
	})
}
