package sqldb_test

import (
	"context"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

func TestEnrolTokenService(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		advance := setClock(db)
		s := sqldb.NewEnrolTokenService(db)
		uploads := sqldb.NewUploadTokenService(db)
		evidence := sqldb.NewEvidenceService(db)
		conns := sqldb.NewConnectionService(db)
		alice := mustCreateUser(t, db, "alice", quarry.RoleAdmin)
		actx := quarry.NewContextWithActor(ctx, &quarry.Actor{User: alice, Role: alice.Role})
		prod := mustCreateConnection(t, conns, actx, "prod")
		lab := mustCreateConnection(t, conns, actx, "lab")

		create := func(t *testing.T, conn int64, hash string, ttl time.Duration) *quarry.EnrolToken {
			t.Helper()
			tok := &quarry.EnrolToken{ConnectionID: conn, Prefix: "qe_" + hash, Hash: hash, ExpiresAt: base.Add(ttl)}
			if err := s.CreateEnrolToken(ctx, tok); err != nil {
				t.Fatalf("CreateEnrolToken(%s): %v", hash, err)
			}
			return tok
		}
		find := func(t *testing.T, hash string) *quarry.EnrolToken {
			t.Helper()
			got, err := s.FindEnrolTokenByHash(ctx, hash)
			if err != nil {
				t.Fatalf("FindEnrolTokenByHash(%s): %v", hash, err)
			}
			return got
		}
		p1 := create(t, prod.ID, "p1", time.Hour)
		p2 := create(t, prod.ID, "p2", 2*time.Hour)
		l1 := create(t, lab.ID, "l1", time.Hour)

		t.Run("Create/OK", func(t *testing.T) {
			got := find(t, "p1")
			if got.ID != p1.ID || got.ConnectionID != prod.ID || got.Purpose != quarry.EnrolTokenPurpose || got.Prefix != "qe_p1" ||
				!got.CreatedAt.Equal(stored(base)) || !got.ExpiresAt.Equal(stored(base.Add(time.Hour))) || !got.Active(base) || got.Active(base.Add(time.Hour)) {
				t.Fatalf("FindEnrolTokenByHash = %+v", got)
			}
		})
		t.Run("Create/Err", func(t *testing.T) {
			for _, tt := range []struct {
				name string
				tok  *quarry.EnrolToken
				code string
			}{
				{"NoConnection", &quarry.EnrolToken{Prefix: "qe_x", Hash: "x1", ExpiresAt: base}, quarry.EINVALID},
				{"UnknownConnection", &quarry.EnrolToken{ConnectionID: lab.ID + 100, Prefix: "qe_x", Hash: "x2", ExpiresAt: base}, quarry.EINVALID},
				{"NoExpiry", &quarry.EnrolToken{ConnectionID: lab.ID, Prefix: "qe_x", Hash: "x3"}, quarry.EINVALID},
				{"NoHash", &quarry.EnrolToken{ConnectionID: lab.ID, Prefix: "qe_x", ExpiresAt: base}, quarry.EINVALID},
				{"BadPurpose", &quarry.EnrolToken{ConnectionID: lab.ID, Purpose: "upload", Prefix: "qe_x", Hash: "x4", ExpiresAt: base}, quarry.EINVALID},
				{"SameHash", &quarry.EnrolToken{ConnectionID: lab.ID, Prefix: "qe_x", Hash: "p1", ExpiresAt: base}, quarry.ECONFLICT},
			} {
				t.Run(tt.name, func(t *testing.T) { wantCode(t, s.CreateEnrolToken(ctx, tt.tok), tt.code) })
			}
			_, err := s.FindEnrolTokenByHash(ctx, "nope")
			wantCode(t, err, quarry.ENOTFOUND)
		})
		t.Run("Revoke", func(t *testing.T) {
			advance(time.Minute)
			first := base.Add(time.Minute)
			if err := s.RevokeEnrolToken(ctx, l1.ID, first); err != nil {
				t.Fatal(err)
			}
			if err := s.RevokeEnrolToken(ctx, l1.ID, first.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if got := find(t, "l1"); got.RevokedAt == nil || !got.RevokedAt.Equal(stored(first)) || got.Active(first) {
				t.Fatalf("revoked twice = %+v, want the first revocation time", got)
			}
			wantCode(t, s.RevokeEnrolToken(ctx, l1.ID+100, first), quarry.ENOTFOUND)
			if got := find(t, "p1"); got.RevokedAt != nil {
				t.Fatal("revoking lab's token revoked prod's")
			}
			if err := s.RevokeEnrolTokens(ctx, prod.ID, first); err != nil {
				t.Fatal(err)
			}
			for _, h := range []string{"p1", "p2"} {
				if got := find(t, h); got.RevokedAt == nil || got.Active(first) {
					t.Fatalf("%s after RevokeEnrolTokens(prod) = %+v", h, got)
				}
			}
		})
		t.Run("Enrol", func(t *testing.T) {
			p := mustCreateProject(t, db, "case")
			acqs := sqldb.NewAcquisitionService(db)
			a := &quarry.Acquisition{ProjectID: p.ID, ConnectionID: &prod.ID, HostName: "web01", Source: quarry.SourceXDR, State: quarry.AcquisitionLaunching}
			if err := acqs.CreateAcquisition(ctx, a); err != nil {
				t.Fatal(err)
			}
			// A token issued without enrolment (by hand, or before) does not count as one.
			if err := uploads.CreateUploadToken(ctx, &quarry.UploadToken{AcquisitionID: a.ID, Prefix: "qu_m", Hash: "m1", ExpiresAt: base.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			up := &quarry.UploadToken{AcquisitionID: a.ID, Prefix: "qu_e1", Hash: "e1", EnrolTokenID: &p2.ID, ExpiresAt: base.Add(time.Hour)}
			custody := []*quarry.CustodyEntry{{Actor: "enrol:qe_p2", Action: quarry.CustodyEnrolled, Details: map[string]any{"hostname": "web01"}}}
			if err := s.EnrolAcquisition(ctx, up, custody); err != nil {
				t.Fatalf("EnrolAcquisition: %v", err)
			}
			got, err := uploads.FindUploadTokenByHash(ctx, "e1")
			if err != nil || got.ID != up.ID || got.EnrolTokenID == nil || *got.EnrolTokenID != p2.ID || got.AcquisitionID != a.ID {
				t.Fatalf("enrolled upload token = %+v, %v", got, err)
			}
			if m, _ := uploads.FindUploadTokenByHash(ctx, "m1"); m.EnrolTokenID != nil {
				t.Fatalf("token created without enrolment names enrol token %d", *m.EnrolTokenID)
			}

			again := &quarry.UploadToken{AcquisitionID: a.ID, Prefix: "qu_e2", Hash: "e2", EnrolTokenID: &p1.ID, ExpiresAt: base.Add(time.Hour)}
			err = s.EnrolAcquisition(ctx, again, []*quarry.CustodyEntry{{Actor: "enrol:qe_p1", Action: quarry.CustodyEnrolled}})
			wantCode(t, err, quarry.ECONFLICT)
			if _, err := uploads.FindUploadTokenByHash(ctx, "e2"); quarry.ErrorCode(err) != quarry.ENOTFOUND {
				t.Fatalf("refused enrolment stored its token: %v", err)
			}
			chain, err := evidence.FindCustody(ctx, a.ID)
			if err != nil || len(chain) != 1 || chain[0].Actor != "enrol:qe_p2" || chain[0].Details["hostname"] != "web01" {
				t.Fatalf("custody after one enrolment and one refusal = %+v, %v", chain, err)
			}
			wantCode(t, s.EnrolAcquisition(ctx, &quarry.UploadToken{AcquisitionID: a.ID, Prefix: "qu_e3", Hash: "e3", ExpiresAt: base}, nil), quarry.EINVALID)

			// Deleting the enrolment token leaves the acquisition enrolled.
			n, err := s.DeleteExpiredEnrolTokens(ctx, base.Add(3*time.Hour))
			if err != nil || n != 3 {
				t.Fatalf("DeleteExpiredEnrolTokens = %d, %v; want 3", n, err)
			}
			err = s.EnrolAcquisition(ctx, &quarry.UploadToken{AcquisitionID: a.ID, Prefix: "qu_e4", Hash: "e4", EnrolTokenID: &p2.ID, ExpiresAt: base.Add(time.Hour)}, nil)
			wantCode(t, err, quarry.ECONFLICT)
		})
		t.Run("DeleteExpired", func(t *testing.T) {
			live := create(t, lab.ID, "live", 10*time.Hour)
			old := create(t, lab.ID, "old", time.Hour)
			n, err := s.DeleteExpiredEnrolTokens(ctx, base.Add(5*time.Hour))
			if err != nil || n != 1 {
				t.Fatalf("DeleteExpiredEnrolTokens = %d, %v; want 1 (old)", n, err)
			}
			if got := find(t, "live"); got.ID != live.ID {
				t.Fatal("a live token was deleted")
			}
			if _, err := s.FindEnrolTokenByHash(ctx, old.Hash); quarry.ErrorCode(err) != quarry.ENOTFOUND {
				t.Fatalf("expired token still found: %v", err)
			}
		})
	})
}
