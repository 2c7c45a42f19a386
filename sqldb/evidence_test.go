package sqldb_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

func mustCreateProject(t *testing.T, db *sqldb.DB, name string) *quarry.Project {
	t.Helper()
	p := &quarry.Project{Name: name}
	if err := sqldb.NewProjectService(db).CreateProject(context.Background(), p); err != nil {
		t.Fatalf("CreateProject(%s): %v", name, err)
	}
	return p
}

func TestAcquisitionService(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		advance := setClock(db)
		s := sqldb.NewAcquisitionService(db)
		p := mustCreateProject(t, db, "case")
		other := mustCreateProject(t, db, "other")

		a := &quarry.Acquisition{ProjectID: p.ID, HostName: " web01 ", Source: quarry.SourceManual}
		if err := s.CreateAcquisition(ctx, a); err != nil {
			t.Fatalf("CreateAcquisition: %v", err)
		}
		t.Run("Create/OK", func(t *testing.T) {
			got, err := s.FindAcquisitionByID(ctx, a.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.HostName != "web01" || got.State != quarry.AcquisitionQueued || got.Profile != "triage" || got.ConnectionID != nil ||
				len(got.History) != 1 || got.History[0].State != quarry.AcquisitionQueued || !got.History[0].At.Equal(stored(base)) {
				t.Fatalf("FindAcquisitionByID = %+v", got)
			}
		})
		t.Run("Create/ErrInvalid", func(t *testing.T) {
			for _, bad := range []*quarry.Acquisition{
				{ProjectID: p.ID, HostName: "", Source: quarry.SourceManual},
				{ProjectID: p.ID, HostName: "h", Source: "usb"},
				{ProjectID: p.ID, HostName: "h", Source: quarry.SourceXDR},
				{ProjectID: p.ID, HostName: "h", Source: quarry.SourceManual, State: "sleeping"},
				{ProjectID: p.ID + 1000, HostName: "h", Source: quarry.SourceManual},
			} {
				wantCode(t, s.CreateAcquisition(ctx, bad), quarry.EINVALID)
			}
		})
		t.Run("Transition", func(t *testing.T) {
			advance(time.Minute)
			for _, step := range []struct {
				to, code string
			}{
				{quarry.AcquisitionCollecting, ""},
				{quarry.AcquisitionCollecting, ""}, // same state: no-op
				{quarry.AcquisitionQueued, quarry.ECONFLICT},
				{quarry.AcquisitionCompleted, quarry.ECONFLICT},
				{"nonsense", quarry.EINVALID},
				{quarry.AcquisitionUploading, ""},
				{quarry.AcquisitionFailed, ""},
				{quarry.AcquisitionReceived, quarry.ECONFLICT}, // failed is terminal
			} {
				_, err := s.TransitionAcquisition(ctx, a.ID, quarry.AcquisitionTransition{State: step.to, Error: "hash mismatch"})
				if quarry.ErrorCode(err) != step.code {
					t.Fatalf("TransitionAcquisition(%s) = %v, want code %q", step.to, err, step.code)
				}
			}
			got, err := s.FindAcquisitionByID(ctx, a.ID)
			if err != nil {
				t.Fatal(err)
			}
			states := pluck(got.History, func(c quarry.StateChange) string { return c.State })
			if strings.Join(states, ",") != "queued,collecting,uploading,failed" || got.Error != "hash mismatch" ||
				!got.History[1].At.Equal(stored(base.Add(time.Minute))) {
				t.Fatalf("after transitions: %v, error %q, history %+v", states, got.Error, got.History)
			}
		})
		t.Run("Progress", func(t *testing.T) {
			at := base.Add(time.Hour)
			if err := s.UpdateAcquisitionProgress(ctx, a.ID, quarry.Progress{Phase: "uploading", FilesDone: 3, BytesDone: 10, BytesTotal: 20}, at); err != nil {
				t.Fatal(err)
			}
			got, _ := s.FindAcquisitionByID(ctx, a.ID)
			if got.Progress != (quarry.Progress{Phase: "uploading", FilesDone: 3, BytesDone: 10, BytesTotal: 20}) || got.LastHeartbeatAt == nil || !got.LastHeartbeatAt.Equal(stored(at)) {
				t.Fatalf("progress = %+v at %v", got.Progress, got.LastHeartbeatAt)
			}
			wantCode(t, s.UpdateAcquisitionProgress(ctx, a.ID, quarry.Progress{BytesDone: -1}, at), quarry.EINVALID)
			wantCode(t, s.UpdateAcquisitionProgress(ctx, a.ID+1000, quarry.Progress{}, at), quarry.ENOTFOUND)
		})
		t.Run("Find", func(t *testing.T) {
			for i := range 3 {
				advance(time.Second)
				if err := s.CreateAcquisition(ctx, &quarry.Acquisition{ProjectID: other.ID, HostName: "h" + string(rune('a'+i)), Source: quarry.SourceManual}); err != nil {
					t.Fatal(err)
				}
			}
			list, total, err := s.FindAcquisitions(ctx, quarry.AcquisitionFilter{ProjectID: &other.ID, Limit: 2})
			if err != nil || total != 3 || len(list) != 2 || list[0].HostName != "hc" || len(list[0].History) != 1 {
				t.Fatalf("FindAcquisitions = %v, %d, %v", pluck(list, func(a *quarry.Acquisition) string { return a.HostName }), total, err)
			}
			_, err = s.FindAcquisitionByID(ctx, 99999)
			wantCode(t, err, quarry.ENOTFOUND)
		})
	})
}

func TestEvidenceService(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		setClock(db)
		acqs := sqldb.NewAcquisitionService(db)
		s := sqldb.NewEvidenceService(db)
		p := mustCreateProject(t, db, "case")
		a := &quarry.Acquisition{ProjectID: p.ID, HostName: "web01", Source: quarry.SourceManual}
		if err := acqs.CreateAcquisition(ctx, a); err != nil {
			t.Fatal(err)
		}
		sum := strings.Repeat("ab", 32)
		e := &quarry.Evidence{ProjectID: p.ID, AcquisitionID: a.ID, SHA256: sum, Size: 42, ReceivedFromIP: "127.0.0.1",
			TokenID: 7, TokenPrefix: "qu_abcd", Hostname: "web01", Manifest: quarry.ManifestSummary{Files: 3, OS: "linux", Profile: "triage"}}
		err := s.CreateEvidence(ctx, e, []*quarry.CustodyEntry{
			{Actor: "upload-token:qu_abcd", Action: quarry.CustodyUploaded, Details: map[string]any{"bytes": 42}},
			{Actor: "system", Action: quarry.CustodyVerified},
		})
		if err != nil {
			t.Fatalf("CreateEvidence: %v", err)
		}
		t.Run("Create/OK", func(t *testing.T) {
			got, err := s.FindEvidenceByID(ctx, e.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.BlobKey != sqldb.EvidenceBlobKey(e.ID) || got.State != quarry.EvidenceReceived || got.Manifest.Files != 3 ||
				got.SHA256 != sum || !got.ReceivedAt.Equal(stored(base)) {
				t.Fatalf("FindEvidenceByID = %+v", got)
			}
		})
		t.Run("Create/ErrConflict", func(t *testing.T) {
			dup := *e
			dup.ID, dup.BlobKey = 0, ""
			wantCode(t, s.CreateEvidence(ctx, &dup, nil), quarry.ECONFLICT)
		})
		t.Run("Create/ErrInvalid", func(t *testing.T) {
			bad := *e
			bad.SHA256 = strings.ToUpper(sum)
			wantCode(t, s.CreateEvidence(ctx, &bad, nil), quarry.EINVALID)
		})
		t.Run("Find", func(t *testing.T) {
			list, total, err := s.FindEvidence(ctx, quarry.EvidenceFilter{ProjectID: &p.ID})
			if err != nil || total != 1 || list[0].ID != e.ID {
				t.Fatalf("FindEvidence = %v, %d, %v", list, total, err)
			}
			_, err = s.FindEvidenceByID(ctx, e.ID+100)
			wantCode(t, err, quarry.ENOTFOUND)
		})
		t.Run("Processing", func(t *testing.T) {
			r := &quarry.ProcessingReport{Stage: quarry.StageParsing, Format: "quarry-package/1", FilesTotal: 4, FilesDone: 2, Events: 90,
				Parsers:  map[string]*quarry.ParserReport{"syslog": {Files: 2, Records: 95, Events: 90, Skipped: 5}},
				Problems: []quarry.ProcessingProblem{{Path: "var/log/x", Parser: "syslog", Reason: "truncated gzip"}}, ProblemsTotal: 1}
			if err := s.UpdateEvidenceProcessing(ctx, e.ID, quarry.EvidenceProcessing, r); err != nil {
				t.Fatal(err)
			}
			got, err := s.FindEvidenceByID(ctx, e.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != quarry.EvidenceProcessing || got.Processing == nil || got.Processing.FilesDone != 2 ||
				got.Processing.Parsers["syslog"].Skipped != 5 || got.Processing.Problems[0].Reason != "truncated gzip" {
				t.Fatalf("after UpdateEvidenceProcessing: %+v %+v", got, got.Processing)
			}
			wantCode(t, s.UpdateEvidenceProcessing(ctx, e.ID, "exploded", r), quarry.EINVALID)
			wantCode(t, s.UpdateEvidenceProcessing(ctx, e.ID+100, quarry.EvidenceProcessed, r), quarry.ENOTFOUND)
			if err := s.UpdateEvidenceProcessing(ctx, e.ID, quarry.EvidenceReceived, nil); err != nil {
				t.Fatal(err)
			}
			if got, _ := s.FindEvidenceByID(ctx, e.ID); got.Processing != nil || got.State != quarry.EvidenceReceived {
				t.Fatalf("after a reset: %+v", got)
			}
		})
		t.Run("Custody", func(t *testing.T) {
			if err := s.RecordCustody(ctx, &quarry.CustodyEntry{AcquisitionID: a.ID, EvidenceID: &e.ID, Actor: "system", Action: quarry.CustodyStored}); err != nil {
				t.Fatal(err)
			}
			wantCode(t, s.RecordCustody(ctx, &quarry.CustodyEntry{AcquisitionID: a.ID}), quarry.EINVALID)
			chain, err := s.FindCustody(ctx, a.ID)
			actions := pluck(chain, func(c *quarry.CustodyEntry) string { return c.Action })
			if err != nil || strings.Join(actions, ",") != "uploaded,verified,stored" || *chain[0].EvidenceID != e.ID || chain[0].Details["bytes"] != float64(42) {
				t.Fatalf("FindCustody = %v, %v", actions, err)
			}
		})
		t.Run("Custody/AppendOnly", func(t *testing.T) {
			stmts := []string{"UPDATE custody_log SET actor = 'mallory'", "DELETE FROM custody_log"}
			if db.Dialect() == sqldb.DialectPostgres {
				stmts = append(stmts, "TRUNCATE custody_log")
			}
			for _, stmt := range stmts {
				_, err := db.SQL().ExecContext(ctx, stmt)
				if err == nil || !strings.Contains(err.Error(), "append-only") {
					t.Errorf("%s: err = %v, want the append-only trigger to refuse it", stmt, err)
				}
			}
		})
	})
}

func TestUploadTokenService(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		setClock(db)
		s := sqldb.NewUploadTokenService(db)
		p := mustCreateProject(t, db, "case")
		a := &quarry.Acquisition{ProjectID: p.ID, HostName: "web01", Source: quarry.SourceManual}
		if err := sqldb.NewAcquisitionService(db).CreateAcquisition(ctx, a); err != nil {
			t.Fatal(err)
		}
		tok := &quarry.UploadToken{AcquisitionID: a.ID, Prefix: "qu_abcd", Hash: "h1", ExpiresAt: base.Add(time.Hour)}
		if err := s.CreateUploadToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		wantCode(t, s.CreateUploadToken(ctx, &quarry.UploadToken{AcquisitionID: a.ID, Prefix: "qu_x", Hash: "h2"}), quarry.EINVALID)
		got, err := s.FindUploadTokenByHash(ctx, "h1")
		if err != nil || got.ID != tok.ID || got.Purpose != quarry.UploadTokenPurposeUpload || !got.ExpiresAt.Equal(stored(base.Add(time.Hour))) || !got.Active(base) {
			t.Fatalf("FindUploadTokenByHash = %+v, %v", got, err)
		}
		_, err = s.FindUploadTokenByHash(ctx, "nope")
		wantCode(t, err, quarry.ENOTFOUND)

		if err := s.BindUploadTokenUpload(ctx, tok.ID, "", "up1"); err != nil {
			t.Fatalf("first bind: %v", err)
		}
		wantCode(t, s.BindUploadTokenUpload(ctx, tok.ID, "", "up2"), quarry.ECONFLICT)
		if got, _ := s.FindUploadTokenByHash(ctx, "h1"); got.UploadID != "up1" {
			t.Fatalf("upload id = %q after a refused second bind, want up1", got.UploadID)
		}
		if err := s.RevokeUploadTokens(ctx, a.ID, base); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.FindUploadTokenByHash(ctx, "h1"); got.RevokedAt == nil || got.Active(base) {
			t.Fatalf("revoked token = %+v", got)
		}
	})
}
