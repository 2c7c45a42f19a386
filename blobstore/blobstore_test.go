package blobstore_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quarry-dfir/quarry/blobstore"
)

func TestFolderStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	u, err := blobstore.DefaultURL(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := blobstore.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.WriteAll(ctx, "evidence/1/package.zip", []byte("PK\x03\x04"), nil); err != nil {
		t.Fatal(err)
	}
	got, err := b.ReadAll(ctx, "evidence/1/package.zip")
	if err != nil || !bytes.Equal(got, []byte("PK\x03\x04")) {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", "evidence", "1", "package.zip")); err != nil {
		t.Fatalf("blob not stored under the data directory: %v", err)
	}
}

func TestOpenErrorsHideCredentials(t *testing.T) {
	_, err := blobstore.Open(context.Background(), "nosuch://user:hunter2@host/bucket?secret_key=hunter2")
	if err == nil {
		t.Fatal("Open of an unknown scheme succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks a credential: %v", err)
	}
}
