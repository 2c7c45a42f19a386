package defendersim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
)

// RunCLI is `quarry defender-sim`: it starts an emulator from flags, prints how to connect to it and
// serves until ctx is done.
func RunCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("defender-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts Options
	fs.StringVar(&opts.Addr, "addr", "127.0.0.1:0", "listen address")
	fs.IntVar(&opts.Machines, "machines", 40, "number of simulated devices")
	fs.Int64Var(&opts.Seed, "seed", 1, "seed: the same seed gives the same tenant, devices, alerts and artifacts")
	fs.StringVar(&opts.DataDir, "data", "", "folder for device file systems, results and the CA (default: a temporary folder)")
	fs.Float64Var(&opts.TimeScale, "time-scale", 1, "run limit windows, timeouts and expiries this many times faster")
	verbose := fs.Bool("v", false, "log requests and lifecycle events to stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("defender-sim: unexpected argument %q", fs.Arg(0))
	}
	if opts.Machines < 1 || opts.Machines > 100_000 {
		return fmt.Errorf("defender-sim: --machines must be between 1 and 100000")
	}
	if opts.TimeScale < 0 {
		return fmt.Errorf("defender-sim: --time-scale must be positive")
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	sim, err := Start(ctx, opts)
	if err != nil {
		return err
	}
	defer sim.Close()
	if ip := sim.ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		fmt.Fprintf(stderr, "warning: defender-sim listens on %s; whoever has the client secret can run scripts on this machine\n", sim.ln.Addr())
	}
	app := sim.DefaultApp()
	fmt.Fprintf(stdout, "Defender for Endpoint emulator: %d devices, seed %d, time scale %g\n", len(sim.devices), opts.Seed, sim.opts.TimeScale)
	fmt.Fprintf(stdout, "api_url:       %s\n", sim.APIURL())
	fmt.Fprintf(stdout, "authority_url: %s\n", sim.AuthorityURL())
	fmt.Fprintf(stdout, "tenant_id:     %s\n", sim.TenantID())
	fmt.Fprintf(stdout, "client_id:     %s\n", app.ClientID)
	fmt.Fprintf(stdout, "client_secret: %s\n", app.ClientSecret)
	fmt.Fprintf(stdout, "ca_cert:       %s\n", sim.CACertFile())
	fmt.Fprintf(stdout, "stats:         %s/_sim/stats\n", sim.APIURL())
	<-ctx.Done()
	return sim.Close()
}
