// Package blobstore opens the object store where Quarry keeps evidence packages: a local folder
// by default (file://), S3-compatible or Azure Blob storage at scale, all behind gocloud.dev/blob.
package blobstore

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// URLs
	_ "gocloud.dev/blob/s3blob"   // s3:// URLs
)

// DefaultURL returns the file:// URL of the blob folder under a data directory.
func DefaultURL(dataDir string) (string, error) {
	abs, err := filepath.Abs(filepath.Join(dataDir, "blobs"))
	if err != nil {
		return "", fmt.Errorf("blobstore: %w", err)
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}
	// No-op signer key material stays out of the URL; signed URLs are not used for the folder store.
	q := url.Values{"create_dir": {"true"}, "no_tmp_dir": {"true"}}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Open opens the bucket at rawURL, creating a local folder when needed. Errors name the store
// without credentials.
func Open(ctx context.Context, rawURL string) (*blob.Bucket, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("blobstore: the blob store URL is not a URL: %w", err)
	}
	safe := redact(u)
	if u.Scheme == "file" {
		if err := os.MkdirAll(u.Path, 0o700); err != nil {
			return nil, fmt.Errorf("blobstore: create folder %s: %w", u.Path, err)
		}
	}
	b, err := blob.OpenBucket(ctx, rawURL)
	if err != nil {
		// The driver's message quotes the URL verbatim, credentials included: redact it.
		return nil, fmt.Errorf("blobstore: open %s: %s", safe, strings.ReplaceAll(err.Error(), rawURL, safe))
	}
	return b, nil
}

func redact(u *url.URL) string {
	c := *u
	c.User = nil
	q := c.Query()
	for k := range q {
		if strings.Contains(strings.ToLower(k), "secret") || strings.Contains(strings.ToLower(k), "key") || strings.Contains(strings.ToLower(k), "token") {
			q.Set(k, "REDACTED")
		}
	}
	c.RawQuery = q.Encode()
	return c.String()
}
