package main

import (
	"context"
	"fmt"
	"io"

	"github.com/quarry-dfir/quarry/upload"
)

// runUpload sends a package written earlier with `collect --out`, or continues an interrupted
// upload of one: the resume state next to the file says where the server's copy stands.
func runUpload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("upload", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: quarry-host upload FILE --server URL --token T [--ca-cert FILE]")
		fs.PrintDefaults()
	}
	var so serverOptions
	so.register(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("upload: give exactly one package file")
	}
	if err := so.check(false); err != nil {
		return err
	}
	ss, ctx, err := startSession(ctx, so, newLogger(stderr), upload.PhaseUploading)
	if err != nil {
		return err
	}
	defer ss.close()
	// The hash is computed from the file: a package written earlier carries no trusted record of it.
	return ss.send(ctx, pos[0], "", 0, stdout)
}
