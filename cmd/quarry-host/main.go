// Command quarry-host is Quarry's endpoint collector. It collects a triage package from the live host
// or from a mounted image (--root) and either writes it to a file or sends it to a quarry server with
// a resumable upload, reporting progress on the way. Defender Live Response starts it detached
// (--detach), so the launching script finishes in seconds while the collection runs on.
//
// Exit codes: 0 success, 1 the collection or upload failed, 2 the command line is wrong.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Version and Commit are set at build time:
//
//	go build -ldflags "-s -w -X main.Version=1.2.0 -X main.Commit=$(git rev-parse HEAD)" ./cmd/quarry-host
var (
	Version = "dev"
	Commit  = ""
)

// usageError is a wrong command line: exit code 2, and the message says what to fix.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal stops cleanly (the package and its resume state stay); a second one
		// gets the default behaviour and ends the process at once.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode reports err on stderr and maps it to the documented exit codes.
func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "quarry-host: %s\nRun 'quarry-host help' for usage.\n", ue.msg)
		return 2
	default:
		fmt.Fprintln(stderr, "quarry-host: "+strings.Join(strings.Fields(err.Error()), " "))
		return 1
	}
}

var commands = []struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}{
	{"collect", "collect a triage package to a file (--out) or to a quarry server (--server)", runCollect},
	{"upload", "send a package written earlier with --out to a quarry server", runUpload},
	{"targets", "list the profiles, groups and targets this build knows", runTargets},
	{"version", "print version, commit, Go version and platform", runVersion},
}

// run is the whole program minus process exit, so tests drive it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return usagef("no command given")
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return nil
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	return usagef("unknown command %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "quarry-host: Quarry's endpoint collector.\n\nUsage: quarry-host <command> [flags]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'quarry-host <command> -h' for a command's flags.")
	fmt.Fprintln(w, "Exit codes: 0 success, 1 collection or upload failed, 2 wrong command line.")
}

// newFlagSet returns a flag set whose errors come back as usage errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("quarry-host "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args allowing flags after positional arguments (`upload FILE --server ...`), and
// returns the positional ones. Flag errors become usage errors.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
