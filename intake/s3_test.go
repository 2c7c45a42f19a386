package intake_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

const versitygwInstall = "go install github.com/versity/versitygw/cmd/versitygw@latest"

// startS3 runs versitygw (Apache-2.0) in posix mode on a temporary folder and returns the
// blob URL of a fresh bucket on it. Without versitygw on PATH the test is skipped, or fails
// under CI=true.
func startS3(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("versitygw")
	if err != nil {
		msg := "versitygw is not on PATH; install it with: " + versitygwInstall
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg + " (set CI=true to fail instead)")
	}
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "evidence"), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	const access, secret = "quarrytest", "quarrytestsecret"
	cmd := exec.Command(bin, "--access", access, "--secret", secret, "--port", addr, "--quiet", "posix", root)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// Ready when it answers HTTP; give up when the process has exited.
	exited := make(chan struct{})
	go func() { cmd.Process.Wait(); close(exited) }()
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("versitygw exited: %s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Setenv("AWS_ACCESS_KEY_ID", access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("AWS_REGION", "us-east-1")
	return fmt.Sprintf("s3://evidence?endpoint=http://%s&region=us-east-1&use_path_style=true&response_checksum_validation=when_required", addr)
}

// TestUploadS3 runs receipt against a real S3 server: the package lands in the bucket, is
// never overwritten (conditional write), and a rejected one is kept.
func TestUploadS3(t *testing.T) {
	blobURL := startS3(t)
	e := newEnv(t, sqldbtest.Open(t, sqldb.DialectSQLite), blobURL)
	ctx := context.Background()

	acq, tok := e.manual("s3host")
	// Large enough for a multipart upload to S3 (parts of 5 MiB).
	pkg, sum := makePackage(t, "s3host", 12<<20, 11)
	loc := e.create(tok, len(pkg), metadata(sum, acq))
	e.cutPatch(tok, loc, 0, pkg, 3<<20)
	off := e.head(tok, loc)
	for ; off < int64(len(pkg)); off += 8 << 20 {
		e.patch(tok, loc, off, pkg[off:min(off+8<<20, int64(len(pkg)))])
	}
	ev := e.checkReceived(acq, tok, pkg, sum)

	// A key that is taken (here by a squatter) is never overwritten: storage stops instead.
	acq2, tok2 := e.manual("s3host2")
	pkg2, sum2 := makePackage(t, "s3host2", 5_000, 12)
	next := ev.ID + 1
	if err := e.bucket.WriteAll(ctx, fmt.Sprintf("evidence/%d/package.zip", next), []byte("squatter"), nil); err != nil {
		t.Fatal(err)
	}
	loc2 := e.create(tok2, len(pkg2), metadata(sum2, acq2))
	resp, body := e.do("PATCH", loc2, tok2, map[string]string{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, pkg2)
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("final PATCH over an occupied key: %s %s, want 500", resp.Status, body)
	}
	if got, _ := e.bucket.ReadAll(ctx, fmt.Sprintf("evidence/%d/package.zip", next)); string(got) != "squatter" {
		t.Fatalf("existing S3 object was overwritten")
	}

	acq3, tok3 := e.manual("s3host3")
	pkg3, sum3 := makePackage(t, "s3host3", 5_000, 13)
	pkg3[10] ^= 1
	e.upload(tok3, acq3, pkg3, sum3, 1<<20)
	if st := e.status(tok3); st.State != quarry.AcquisitionFailed {
		t.Fatalf("tampered package: status %+v", st)
	}
	keys := 0
	iter := e.bucket.List(nil)
	for {
		obj, err := iter.Next(ctx)
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(obj.Key, fmt.Sprintf("rejected/%d/", acq3)) {
			keys++
		}
	}
	if keys != 1 {
		t.Fatalf("%d rejected objects kept for acquisition %d, want 1", keys, acq3)
	}
}
