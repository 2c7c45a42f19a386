// Command evtxgen writes a large EVTX file of realistic Security events (a busy server's logons,
// logoffs, privileges and process creations) for the EVTX benchmark, bench/evtx.sh.
//
//	go run ./bench/evtxgen -out /tmp/security.evtx -mb 200
//
// It prints one line: records, bytes, and the generation rate in events/s and MB/s.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/quarry-dfir/quarry/evtx/evtxgen"
	"github.com/quarry-dfir/quarry/evtx/evtxwriter"
)

func main() {
	out := flag.String("out", "", "file to write (required)")
	mb := flag.Int("mb", 200, "stop at the first chunk boundary past this many MiB")
	seed := flag.Int64("seed", 1, "seed of the events")
	flag.Parse()
	if *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*out, int64(*mb)<<20, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "evtxgen:", err)
		os.Exit(1)
	}
}

func run(path string, size, seed int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	m := evtxgen.Machine{Computer: "SRV-APP-07.corp.example.com", Short: "SRV-APP-07", Domain: "CORP",
		SID: "S-1-5-21-2837461901-1290348576-3749102846", LsassPID: 812, SvcPID: 796}
	var users []evtxgen.Account
	for i, n := range []string{"alice.martin", "bruno.khan", "svc_backup", "svc_sql", "chen.schulz", "dana.novak", "helpdesk"} {
		users = append(users, evtxgen.Account{Name: n, Domain: "CORP", SID: fmt.Sprintf("%s-%d", m.SID, 1104+i)})
	}
	start := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	noise := evtxgen.NewNoise(m, users, []string{"alice.martin", "helpdesk"}, seed, start, evtxgen.ChannelSecurity)
	noise.SetRate(0, 2*time.Second)

	w, err := evtxwriter.New(f)
	if err != nil {
		return err
	}
	t0 := time.Now()
	for w.Size() < size {
		if err := w.Write(noise.Next()); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	el := time.Since(t0).Seconds()
	fmt.Printf("records %d bytes %d seconds %.2f events/s %.0f MB/s %.1f\n", w.Records(), w.Size(), el,
		float64(w.Records())/el, float64(w.Size())/1e6/el)
	return f.Close()
}
