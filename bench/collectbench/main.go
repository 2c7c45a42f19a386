// Command collectbench runs one collection with collector.CollectToFile, so bench/collect.sh can time the
// engine and measure its peak memory without the rest of quarry-host.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/quarry-dfir/quarry/collector"
)

func main() {
	root := flag.String("root", "", "folder holding the file system to collect")
	goos := flag.String("os", "auto", "windows, linux, darwin or auto")
	out := flag.String("out", "package.zip", "package to write")
	profile := flag.String("profile", "triage", "light, triage or full")
	flag.Parse()
	start := time.Now()
	res, err := collector.CollectToFile(context.Background(), *out, collector.Options{Root: *root, OS: *goos, Profile: *profile, Version: "bench"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "collectbench:", err)
		os.Exit(1)
	}
	s := res.Manifest.Stats
	fmt.Printf("files=%d bytes=%d skipped=%d package=%d sha256=%s seconds=%.2f\n",
		s.Files, s.Bytes, s.Skipped, res.Size, res.SHA256, time.Since(start).Seconds())
}
