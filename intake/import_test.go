package intake_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/intake"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

// tarGz makes a UAC-like tar.gz with one file.
func tarGz(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	body := "Nov 25 10:00:01 web01 sshd[1]: Failed password for root from 203.0.113.9 port 4242 ssh2\n"
	if err := tw.WriteHeader(&tar.Header{Name: "[root]/var/log/auth.log", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	io.WriteString(tw, body)
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// TestImport: an analyst's upload becomes the evidence of a manual acquisition, stored
// immutably under its server-computed SHA-256 with a chain of custody naming the analyst, and
// goes to processing; what is no archive, or too large, is refused with a reason and leaves
// nothing behind.
func TestImport(t *testing.T) {
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	e := newEnv(t, db, fileBlobURL(t))
	var handed []*quarry.Evidence
	e.cfg.OnReceived = func(_ context.Context, ev *quarry.Evidence) { handed = append(handed, ev) }
	e.cfg.MaxUploadBytes = 1 << 20
	e.restart()
	ctx := context.Background()
	ours, oursSum := makePackage(t, "db02", 1000, 3)
	uac := tarGz(t)
	uacSum := sha256.Sum256(uac)

	for _, c := range []struct {
		name, host, file string
		body             []byte
		wantHost, sum    string
		wantFormat       string
	}{
		{"quarry package", "", "db02.zip", ours, "db02", oursSum, "quarry-package/1"},
		{"foreign tar.gz", "", "uac-web01-linux-20261125.tar.gz", uac, "uac-web01-linux-20261125", hex.EncodeToString(uacSum[:]), "tar.gz"},
		{"host named", "web01", "x.tar.gz", uac, "web01", hex.EncodeToString(uacSum[:]), "tar.gz"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, ev, err := e.svc.Import(ctx, intake.Import{ProjectID: e.project.ID, HostName: c.host, FileName: c.file,
				Body: bytes.NewReader(c.body), Actor: "user:alice", IP: "198.51.100.7"})
			if err != nil {
				t.Fatal(err)
			}
			if a.State != quarry.AcquisitionReceived || a.Source != quarry.SourceManual || a.HostName != c.wantHost || a.EvidenceID == nil || *a.EvidenceID != ev.ID {
				t.Errorf("acquisition = %+v", a)
			}
			if ev.SHA256 != c.sum || ev.Size != int64(len(c.body)) || ev.Manifest.Format != c.wantFormat {
				t.Errorf("evidence = %+v", ev)
			}
			r, err := e.bucket.NewReader(ctx, ev.BlobKey, nil)
			if err != nil {
				t.Fatal(err)
			}
			stored, _ := io.ReadAll(r)
			r.Close()
			if !bytes.Equal(stored, c.body) {
				t.Error("the stored package differs from the upload")
			}
			chain, err := e.cfg.Evidence.FindCustody(ctx, a.ID)
			if err != nil || e.custody(a.ID) != "uploaded,verified,stored" || chain[0].Actor != "user:alice" || chain[1].Details["sha256"] != c.sum {
				t.Errorf("custody = %s %+v (%v)", e.custody(a.ID), chain[0], err)
			}
			if len(handed) == 0 || handed[len(handed)-1].ID != ev.ID {
				t.Error("the evidence was not handed to processing")
			}
		})
	}

	n := len(handed)
	for _, c := range []struct {
		name string
		body []byte
		want string
	}{
		{"not an archive", []byte("MZ\x90\x00 an executable"), "is not a zip, tar or tar.gz archive"},
		{"too large", append([]byte("PK\x03\x04"), make([]byte, 1<<20)...), "larger than the limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := e.svc.Import(ctx, intake.Import{ProjectID: e.project.ID, FileName: "f.bin", Body: bytes.NewReader(c.body), Actor: "user:alice"})
			if quarry.ErrorCode(err) != quarry.EINVALID || !strings.Contains(quarry.ErrorMessage(err), c.want) {
				t.Fatalf("Import = %v, want EINVALID %q", err, c.want)
			}
		})
	}
	if len(handed) != n {
		t.Error("a refused upload reached processing")
	}
	if list, total, err := sqldb.NewAcquisitionService(db).FindAcquisitions(ctx, quarry.AcquisitionFilter{ProjectID: &e.project.ID}); err != nil || total != 3 {
		t.Errorf("acquisitions after two refusals = %d (%v), want the 3 imports only: %v", total, err, list)
	}
}
