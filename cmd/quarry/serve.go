package main

import (
	"context"
	"flag"
	"fmt"
	"io"
)

func init() {
	register("serve", "run the Quarry server (web UI, REST API, job workers)", runServe)
	register("version", "print the version", func(_ context.Context, _ []string, stdout, _ io.Writer) error {
		fmt.Fprintln(stdout, "quarry", Version)
		return nil
	})
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("quarry serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	cfg.bind(fs, "127.0.0.1:8080", "./quarry-data")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	m := NewMain(cfg, logger)
	if err := m.Run(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	logger.Info("shutting down")
	return m.Close()
}
