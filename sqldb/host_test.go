package sqldb_test

import (
	"cmp"
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
	"github.com/quarry-dfir/quarry/xdr"
)

// filterHosts are few and varied, so each filter case names its result by hand. By name in
// byte order they come a6, a4, a3, a5, a1, a2.
var filterHosts = []xdr.Host{
	{ID: "a1", Name: "WS-Alpha", OS: "windows", OSVersion: "11", Arch: "amd64", Online: true, LastSeen: base, IP: "10.0.0.1", Health: "Active", Risk: "High", Tags: []string{"Finance", "VIP"}},
	{ID: "a2", Name: "ws-beta", OS: "windows", OSVersion: "10", Arch: "amd64", Online: false, LastSeen: base.Add(-time.Hour), IP: "10.0.1.2", Health: "Inactive", Risk: "Low", Tags: []string{"finance"}},
	{ID: "a3", Name: "srv-db01", OS: "linux", OSVersion: "Ubuntu 24.04", Arch: "arm64", Online: true, LastSeen: base, IP: "192.168.1.10", Health: "Active", Risk: "Medium"},
	{ID: "a4", Name: "MacBook-Ana", OS: "macos", OSVersion: "15.1", Arch: "arm64", Online: true, LastSeen: base, IP: "FE80::1", Health: "ImpairedCommunication", Risk: "None", Tags: []string{"VIP", "vip"}},
	{ID: "a5", Name: "srv_web", OS: "linux", OSVersion: "RHEL 9", Arch: "amd64", Online: false, LastSeen: base.Add(-48 * time.Hour), IP: "10.0.0.15", Health: "Active", Risk: "High", Tags: []string{"dmz", "Web"}},
	{ID: "a6", Name: "Büro-PC", OS: "windows", OSVersion: "11", Arch: "amd64", Online: true, LastSeen: base, IP: "172.16.0.5", Health: "active", Risk: "Informational", Tags: []string{"Ünïcode"}},
}

// manyHosts returns n hosts whose names sort in a different order from their IDs, with
// duplicate names so that paging must fall back on the ID.
func manyHosts(n int) []xdr.Host {
	hosts := make([]xdr.Host, n)
	for i := range hosts {
		hosts[i] = xdr.Host{
			ID: fmt.Sprintf("%040x", i*7919), Name: fmt.Sprintf("HOST-%04d", (n-i)/2), OS: []string{"windows", "linux", "macos"}[i%3],
			OSVersion: "10", Online: i%2 == 0, LastSeen: base.Add(time.Duration(i) * time.Second), IP: fmt.Sprintf("10.%d.%d.%d", i/65536, i/256%256, i%256),
			Health: "Active", Risk: "Low", Tags: []string{"fleet", fmt.Sprintf("group-%d", i%10)},
		}
	}
	return hosts
}

// wantStored is h as the store returns it: times in UTC microseconds, tags never nil.
func wantStored(h xdr.Host) xdr.Host {
	h.LastSeen = stored(h.LastSeen)
	if h.Tags == nil {
		h.Tags = []string{}
	}
	return h
}

func hostIDs(hosts []xdr.Host) []string { return pluck(hosts, func(h xdr.Host) string { return h.ID }) }

func TestHostService(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		setClock(db)
		conns := sqldb.NewConnectionService(db)
		s := sqldb.NewHostService(db)
		c := mustCreateConnection(t, conns, ctx, "hosts")
		other := mustCreateConnection(t, conns, ctx, "other hosts")
		if err := s.ReplaceHosts(ctx, c.ID, filterHosts, base); err != nil {
			t.Fatalf("ReplaceHosts: %v", err)
		}
		// The other connection has hosts with the same IDs; no query may mix the two.
		if err := s.ReplaceHosts(ctx, other.ID, []xdr.Host{{ID: "a1", Name: "elsewhere", Tags: []string{"VIP"}}}, base); err != nil {
			t.Fatalf("ReplaceHosts(other): %v", err)
		}

		t.Run("FindHost", func(t *testing.T) {
			for _, h := range filterHosts {
				got, err := s.FindHost(ctx, c.ID, h.ID)
				if want := wantStored(h); err != nil || !reflect.DeepEqual(*got, want) {
					t.Fatalf("FindHost(%s) = %+v, %v; want %+v", h.ID, got, err, want)
				}
			}
			_, err := s.FindHost(ctx, c.ID, "nope")
			wantCode(t, err, quarry.ENOTFOUND)
			_, err = s.FindHost(ctx, c.ID+100, "a1")
			wantCode(t, err, quarry.ENOTFOUND)
		})

		t.Run("FindInventory", func(t *testing.T) {
			inv, err := s.FindInventory(ctx, c.ID)
			want := quarry.Inventory{ConnectionID: c.ID, FetchedAt: stored(base), Hosts: len(filterHosts)}
			if err != nil || *inv != want {
				t.Fatalf("FindInventory = %+v, %v; want %+v", inv, err, want)
			}
			never := mustCreateConnection(t, conns, ctx, "never fetched")
			_, err = s.FindInventory(ctx, never.ID)
			wantCode(t, err, quarry.ENOTFOUND)
		})

		t.Run("FindHosts", func(t *testing.T) {
			yes, no := true, false
			f := func(mod func(*quarry.HostFilter)) quarry.HostFilter {
				filter := quarry.HostFilter{ConnectionID: c.ID}
				mod(&filter)
				return filter
			}
			tests := []struct {
				name   string
				filter quarry.HostFilter
				want   []string
				total  int
			}{
				{"All", f(func(*quarry.HostFilter) {}), []string{"a6", "a4", "a3", "a5", "a1", "a2"}, 6},
				{"QueryNameFoldsCase", f(func(f *quarry.HostFilter) { f.Query = " WS-" }), []string{"a1", "a2"}, 2},
				{"QueryNameSubstring", f(func(f *quarry.HostFilter) { f.Query = "db0" }), []string{"a3"}, 1},
				{"QueryUnderscoreIsLiteral", f(func(f *quarry.HostFilter) { f.Query = "SRV_" }), []string{"a5"}, 1},
				{"QueryNonASCIIFoldsCase", f(func(f *quarry.HostFilter) { f.Query = "BÜRO" }), []string{"a6"}, 1},
				{"QueryIPPrefix", f(func(f *quarry.HostFilter) { f.Query = "10.0.0." }), []string{"a5", "a1"}, 2},
				{"QueryIPNotInfix", f(func(f *quarry.HostFilter) { f.Query = "0.0.1" }), nil, 0},
				{"QueryIPFoldsCase", f(func(f *quarry.HostFilter) { f.Query = "fe80:" }), []string{"a4"}, 1},
				{"OS", f(func(f *quarry.HostFilter) { f.OS = "linux" }), []string{"a3", "a5"}, 2},
				{"Online", f(func(f *quarry.HostFilter) { f.Online = &yes }), []string{"a6", "a4", "a3", "a1"}, 4},
				{"Offline", f(func(f *quarry.HostFilter) { f.Online = &no }), []string{"a5", "a2"}, 2},
				{"HealthFoldsCase", f(func(f *quarry.HostFilter) { f.Health = "ACTIVE" }), []string{"a6", "a3", "a5", "a1"}, 4},
				{"HealthExact", f(func(f *quarry.HostFilter) { f.Health = "Activ" }), nil, 0},
				{"RiskFoldsCase", f(func(f *quarry.HostFilter) { f.Risk = "high" }), []string{"a5", "a1"}, 2},
				{"TagFoldsCase", f(func(f *quarry.HostFilter) { f.Tag = "FINANCE" }), []string{"a1", "a2"}, 2},
				{"TagDuplicateOnce", f(func(f *quarry.HostFilter) { f.Tag = "vip" }), []string{"a4", "a1"}, 2},
				{"TagNonASCII", f(func(f *quarry.HostFilter) { f.Tag = "ÜNÏCODE" }), []string{"a6"}, 1},
				{"TagExact", f(func(f *quarry.HostFilter) { f.Tag = "fin" }), nil, 0},
				{"Combined", f(func(f *quarry.HostFilter) { f.OS, f.Online, f.Tag = "windows", &yes, "vip" }), []string{"a1"}, 1},
				{"CombinedQueryRisk", f(func(f *quarry.HostFilter) { f.Query, f.Risk = "srv", "High" }), []string{"a5"}, 1},
				{"CombinedAll", f(func(f *quarry.HostFilter) {
					f.Query, f.OS, f.Online, f.Health, f.Risk, f.Tag = "10.", "linux", &no, "active", "high", "DMZ"
				}), []string{"a5"}, 1},
				{"CombinedNone", f(func(f *quarry.HostFilter) { f.OS, f.Tag = "macos", "finance" }), nil, 0},
				{"Page", f(func(f *quarry.HostFilter) { f.Offset, f.Limit = 2, 2 }), []string{"a3", "a5"}, 6},
				{"PageFiltered", f(func(f *quarry.HostFilter) { f.Online, f.Offset, f.Limit = &yes, 3, 2 }), []string{"a1"}, 4},
				{"PagePastEnd", f(func(f *quarry.HostFilter) { f.Offset = 6 }), nil, 6},
				{"OtherConnection", quarry.HostFilter{ConnectionID: other.ID, Tag: "vip"}, []string{"a1"}, 1},
				{"UnknownConnection", quarry.HostFilter{ConnectionID: other.ID + 100}, nil, 0},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					hosts, total, err := s.FindHosts(ctx, tt.filter)
					if ids := hostIDs(hosts); err != nil || total != tt.total || !reflect.DeepEqual(ids, tt.want) {
						t.Fatalf("FindHosts(%+v) = %q, %d, %v; want %q, %d", tt.filter, ids, total, err, tt.want, tt.total)
					}
					if hosts == nil {
						t.Errorf("FindHosts returned a nil slice")
					}
				})
			}
		})

		t.Run("FindHosts/ErrNoConnection", func(t *testing.T) {
			_, _, err := s.FindHosts(ctx, quarry.HostFilter{Query: "a"})
			wantCode(t, err, quarry.EINVALID)
		})

		t.Run("ReplaceHosts/Replaces", func(t *testing.T) {
			conn := mustCreateConnection(t, conns, ctx, "replaced")
			first := []xdr.Host{
				{ID: "keep", Name: "keep", Tags: []string{"old"}},
				{ID: "gone", Name: "gone", Tags: []string{"old"}},
			}
			if err := s.ReplaceHosts(ctx, conn.ID, first, base); err != nil {
				t.Fatal(err)
			}
			second := []xdr.Host{
				{ID: "keep", Name: "kept, renamed", Online: true, Tags: []string{"new"}},
				{ID: "fresh", Name: "fresh"},
				{ID: "dup", Name: "first copy", Tags: []string{"first"}},
				{ID: "dup", Name: "last copy", Tags: []string{"last"}},
			}
			if err := s.ReplaceHosts(ctx, conn.ID, second, base.Add(time.Hour)); err != nil {
				t.Fatalf("ReplaceHosts: %v", err)
			}
			hosts, total, err := s.FindHosts(ctx, quarry.HostFilter{ConnectionID: conn.ID})
			want := []xdr.Host{wantStored(second[1]), wantStored(second[0]), wantStored(second[3])}
			if err != nil || total != 3 || !reflect.DeepEqual(hosts, want) {
				t.Fatalf("after replace: %+v, %d, %v; want %+v", hosts, total, err, want)
			}
			_, err = s.FindHost(ctx, conn.ID, "gone")
			wantCode(t, err, quarry.ENOTFOUND)
			for tag, want := range map[string][]string{"old": nil, "new": {"keep"}, "first": nil, "last": {"dup"}} {
				hosts, _, err := s.FindHosts(ctx, quarry.HostFilter{ConnectionID: conn.ID, Tag: tag})
				if ids := hostIDs(hosts); err != nil || !reflect.DeepEqual(ids, want) {
					t.Errorf("FindHosts(tag %s) = %q, %v; want %q", tag, ids, err, want)
				}
			}
			inv, err := s.FindInventory(ctx, conn.ID)
			if err != nil || inv.Hosts != 3 || !inv.FetchedAt.Equal(stored(base.Add(time.Hour))) {
				t.Fatalf("FindInventory = %+v, %v; want 3 hosts fetched at %v", inv, err, stored(base.Add(time.Hour)))
			}

			// An empty inventory is an inventory: the platform has no hosts left. Without a
			// fetch time, the store's clock says when.
			if err := s.ReplaceHosts(ctx, conn.ID, nil, time.Time{}); err != nil {
				t.Fatal(err)
			}
			hosts, total, err = s.FindHosts(ctx, quarry.HostFilter{ConnectionID: conn.ID})
			inv, invErr := s.FindInventory(ctx, conn.ID)
			if err != nil || total != 0 || len(hosts) != 0 || invErr != nil || inv.Hosts != 0 || !inv.FetchedAt.Equal(stored(db.Now())) {
				t.Fatalf("after empty replace: %d hosts (total %d, %v), inventory %+v, %v; want none, fetched %v", len(hosts), total, err, inv, invErr, stored(db.Now()))
			}
			// Other connections' caches are untouched.
			if _, total, err := s.FindHosts(ctx, quarry.HostFilter{ConnectionID: c.ID}); err != nil || total != len(filterHosts) {
				t.Fatalf("the first connection has %d hosts, %v; want %d", total, err, len(filterHosts))
			}
		})

		t.Run("ReplaceHosts/HostileText", func(t *testing.T) {
			conn := mustCreateConnection(t, conns, ctx, "hostile")
			// The second host's ID is the first one's once repaired: it replaces it.
			hosts := []xdr.Host{{ID: "h", Name: "replaced"}, {ID: "h\x00", Name: "bad\xffname\x00", IP: "10.0.0.1\x00", Tags: []string{"t\xfe", "T\ufffd"}}}
			if err := s.ReplaceHosts(ctx, conn.ID, hosts, base); err != nil {
				t.Fatalf("ReplaceHosts(hostile text): %v", err)
			}
			got, err := s.FindHost(ctx, conn.ID, "h")
			want := xdr.Host{ID: "h", Name: "bad\ufffdname", IP: "10.0.0.1", LastSeen: stored(time.Time{}), Tags: []string{"t\ufffd", "T\ufffd"}}
			if err != nil || !reflect.DeepEqual(*got, want) {
				t.Fatalf("FindHost = %+v, %v; want %+v", got, err, want)
			}
			// A filter is repaired the same way, so it finds what was stored.
			found, _, err := s.FindHosts(ctx, quarry.HostFilter{ConnectionID: conn.ID, Tag: "T\xfe", Query: "BAD\xff\x00N"})
			if ids := hostIDs(found); err != nil || !reflect.DeepEqual(ids, []string{"h"}) {
				t.Fatalf("FindHosts(invalid UTF-8 filter) = %q, %v; want [h]", ids, err)
			}
		})

		// Whichever of a refresh and a delete comes first, a deleted connection keeps no hosts.
		t.Run("ReplaceHosts/RacesDelete", func(t *testing.T) {
			hosts := manyHosts(300)
			for i := range 10 {
				conn := mustCreateConnection(t, conns, ctx, fmt.Sprintf("race %d", i))
				replaced := make(chan error, 1)
				go func() { replaced <- s.ReplaceHosts(ctx, conn.ID, hosts, base) }()
				if err := conns.DeleteConnection(ctx, conn.ID); err != nil {
					t.Fatalf("DeleteConnection: %v", err)
				}
				if err := <-replaced; err != nil && quarry.ErrorCode(err) != quarry.ECONFLICT {
					t.Fatalf("ReplaceHosts racing a delete = %v, want success or ECONFLICT", err)
				}
				_, total, err := s.FindHosts(ctx, quarry.HostFilter{ConnectionID: conn.ID})
				_, invErr := s.FindInventory(ctx, conn.ID)
				if err != nil || total != 0 || quarry.ErrorCode(invErr) != quarry.ENOTFOUND {
					t.Fatalf("deleted connection %d keeps %d hosts (%v), inventory %v", i, total, err, invErr)
				}
			}
		})

		t.Run("ReplaceHosts/Errors", func(t *testing.T) {
			wantCode(t, s.ReplaceHosts(ctx, other.ID+100, filterHosts, base), quarry.ENOTFOUND)
		})

		t.Run("Paging", func(t *testing.T) {
			conn := mustCreateConnection(t, conns, ctx, "fleet")
			hosts := manyHosts(1234)
			if err := s.ReplaceHosts(ctx, conn.ID, hosts, base); err != nil {
				t.Fatal(err)
			}
			want := make([]string, len(hosts))
			for i, h := range slices.SortedFunc(slices.Values(hosts), func(a, b xdr.Host) int {
				return cmp.Or(strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), strings.Compare(a.ID, b.ID))
			}) {
				want[i] = h.ID
			}
			var got []string
			for offset := 0; offset < len(hosts); offset += 50 {
				page, total, err := s.FindHosts(ctx, quarry.HostFilter{ConnectionID: conn.ID, Offset: offset, Limit: 50})
				if err != nil || total != len(hosts) || len(page) != min(50, len(hosts)-offset) {
					t.Fatalf("page at %d: %d hosts, total %d, %v; want %d of %d", offset, len(page), total, err, min(50, len(hosts)-offset), len(hosts))
				}
				got = append(got, hostIDs(page)...)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("pages saw %d hosts, not each once in name then ID order", len(got))
			}

			for _, tt := range []struct {
				limit, want int
			}{{0, sqldb.DefaultHostLimit}, {-1, sqldb.DefaultHostLimit}, {7, 7}, {1 << 30, sqldb.MaxLimit}} {
				page, total, err := s.FindHosts(ctx, quarry.HostFilter{ConnectionID: conn.ID, Limit: tt.limit})
				if err != nil || total != len(hosts) || len(page) != tt.want {
					t.Errorf("FindHosts(limit %d) = %d hosts of %d, %v; want %d", tt.limit, len(page), total, err, tt.want)
				}
			}
			page, total, err := s.FindHosts(ctx, quarry.HostFilter{ConnectionID: conn.ID, Tag: "group-3", OS: "linux", Limit: 1000})
			var wantTagged int
			for i := range hosts {
				if i%10 == 3 && i%3 == 1 {
					wantTagged++
				}
			}
			if err != nil || total != wantTagged || len(page) != wantTagged {
				t.Errorf("FindHosts(group-3, linux) = %d hosts of %d, %v; want %d", len(page), total, err, wantTagged)
			}
		})
	})
}

// BenchmarkReplaceHosts10k measures swapping a whole inventory of 10,000 hosts, the size of a
// large tenant, over a cache that already holds one.
func BenchmarkReplaceHosts10k(b *testing.B) {
	for _, dialect := range []string{sqldb.DialectSQLite, sqldb.DialectPostgres} {
		b.Run(dialect, func(b *testing.B) {
			ctx := context.Background()
			db := sqldbtest.Open(b, dialect)
			c := mustCreateConnection(b, sqldb.NewConnectionService(db), ctx, "bench")
			s := sqldb.NewHostService(db)
			hosts := manyHosts(10000)
			if err := s.ReplaceHosts(ctx, c.ID, hosts, base); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := s.ReplaceHosts(ctx, c.ID, hosts, base); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFindHosts10k measures one filtered page of a 10,000-host inventory, the query the
// host list runs; it needs no index beyond the one that orders by name.
func BenchmarkFindHosts10k(b *testing.B) {
	for _, dialect := range []string{sqldb.DialectSQLite, sqldb.DialectPostgres} {
		b.Run(dialect, func(b *testing.B) {
			ctx := context.Background()
			db := sqldbtest.Open(b, dialect)
			c := mustCreateConnection(b, sqldb.NewConnectionService(db), ctx, "bench")
			s := sqldb.NewHostService(db)
			if err := s.ReplaceHosts(ctx, c.ID, manyHosts(10000), base); err != nil {
				b.Fatal(err)
			}
			online := true
			filter := quarry.HostFilter{ConnectionID: c.ID, OS: "linux", Online: &online, Tag: "group-4", Offset: 100, Limit: 50}
			for b.Loop() {
				if _, total, err := s.FindHosts(ctx, filter); err != nil || total == 0 {
					b.Fatalf("FindHosts = total %d, %v", total, err)
				}
			}
		})
	}
}
