package ioc

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/quarry-dfir/quarry"
)

// benchLists returns 100,000 indicators in the mix a real feed has: mostly hashes, then
// addresses, domains, some networks, URLs and file names.
func benchLists(r *rand.Rand) []List {
	hexOf := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return hex.EncodeToString(b)
	}
	var inds []Indicator
	add := func(t Type, v string) { inds = append(inds, Indicator{Type: t, Value: v, Description: "feed"}) }
	for range 40_000 {
		add(SHA256, hexOf(32))
	}
	for range 15_000 {
		add(MD5, hexOf(16))
	}
	for range 10_000 {
		add(SHA1, hexOf(20))
	}
	for range 14_000 {
		add(IP, netip.AddrFrom4([4]byte{byte(r.IntN(223) + 1), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}).String())
	}
	for range 1_000 {
		var a [16]byte
		for i := range a {
			a[i] = byte(r.Uint32())
		}
		a[0] = 0x2a
		add(IP, netip.AddrFrom16(a).String())
	}
	for range 2_000 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(r.IntN(223) + 1), byte(r.Uint32()), byte(r.Uint32()), 0}), 16+r.IntN(13))
		add(CIDR, p.Masked().String())
	}
	for i := range 15_000 {
		add(Domain, fmt.Sprintf("%s-%d.%s", hexOf(4), i, []string{"com", "net", "ru", "xyz", "top", "info"}[i%6]))
	}
	for i := range 2_000 {
		add(URL, fmt.Sprintf("http://%s-%d.example/%s/load.php", hexOf(3), i, hexOf(4)))
	}
	for i := range 900 {
		add(Filename, fmt.Sprintf("tool_%s_%d.exe", hexOf(3), i))
	}
	for i := range 100 {
		add(Filename, fmt.Sprintf("drop%d_*.dll", i))
	}
	return []List{{Name: "feed", Indicators: inds[:60_000]}, {Name: "report", Indicators: inds[60_000:]}}
}

// benchEvents returns events shaped like the parsers' output: Sysmon process, network and DNS
// events, Security logons, sshd and syslog lines. A few carry an indicator.
func benchEvents(r *rand.Rand, lists []List) []*quarry.Event {
	hexOf := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return hex.EncodeToString(b)
	}
	ip := func() string {
		return netip.AddrFrom4([4]byte{byte(r.IntN(223) + 1), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}).String()
	}
	var evs []*quarry.Event
	for i := range 1000 {
		var f map[string]any
		msg := ""
		switch i % 6 {
		case 0:
			sha := hexOf(32)
			if i%60 == 0 {
				sha = lists[0].Indicators[i].Value
			}
			f = map[string]any{"EventID": int64(1), "Channel": "Microsoft-Windows-Sysmon/Operational", "Provider": "Microsoft-Windows-Sysmon",
				"Computer": "WS01.corp.local", "EventRecordID": uint64(100000 + i), "UtcTime": "2026-03-02 10:11:12.345",
				"ProcessGuid": "{5770385f-c22a-5e0f-0000-001000000000}", "ProcessId": int64(4242),
				"Image":            `C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`,
				"CommandLine":      `powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\Users\bob\AppData\Local\Temp\run.ps1 -Server ` + ip(),
				"CurrentDirectory": `C:\Users\bob\`, "User": `CORP\bob`, "IntegrityLevel": "Medium",
				"Hashes":      "SHA1=" + hexOf(20) + ",MD5=" + hexOf(16) + ",SHA256=" + sha + ",IMPHASH=" + hexOf(16),
				"ParentImage": `C:\Windows\explorer.exe`, "ParentCommandLine": `C:\Windows\Explorer.EXE`}
			msg = "Microsoft-Windows-Sysmon 1 Image=powershell.exe"
		case 1:
			dst := ip()
			if i%61 == 0 {
				dst = lists[0].Indicators[55_000+i%5_000].Value
			}
			f = map[string]any{"EventID": int64(3), "Image": `C:\Program Files\Google\Chrome\Application\chrome.exe`, "Protocol": "tcp",
				"SourceIp": "10.20.30.40", "SourceHostname": "WS01.corp.local", "SourcePort": int64(50000 + i),
				"DestinationIp": dst, "DestinationHostname": "edge-" + hexOf(3) + ".cdn.example.net", "DestinationPort": int64(443),
				"Initiated": "true", "User": `CORP\bob`}
			msg = "Microsoft-Windows-Sysmon 3 DestinationIp=" + dst
		case 2:
			q := "www." + hexOf(4) + ".com"
			if i%62 == 0 {
				q = "a.b." + lists[1].Indicators[20_000+i%10_000].Value
			}
			f = map[string]any{"EventID": int64(22), "QueryName": q, "QueryStatus": "0",
				"QueryResults": "type:  5 edge.example.net;::ffff:" + ip() + ";" + ip() + ";", "Image": `C:\Windows\System32\svchost.exe`}
			msg = "Microsoft-Windows-Sysmon 22 QueryName=" + q
		case 3:
			f = map[string]any{"EventID": int64(4624), "Channel": "Security", "TargetUserName": "bob", "TargetDomainName": "CORP",
				"LogonType": int64(3), "IpAddress": "::ffff:" + ip(), "IpPort": "51515", "WorkstationName": "WS02",
				"LogonProcessName": "NtLmSsp ", "AuthenticationPackageName": "NTLM", "ProcessName": "-"}
			msg = "Microsoft-Windows-Security-Auditing 4624 TargetUserName=bob"
		case 4:
			src := ip()
			f = map[string]any{"program": "sshd", "pid": int64(1234), "action": "failed_password", "user": "root",
				"src_ip": src, "src_port": int64(40000 + i), "invalid_user": false}
			msg = "Failed password for root from " + src + " port 40022 ssh2"
		case 5:
			f = map[string]any{"program": "CRON", "pid": int64(999), "body": "(root) CMD (cd / && run-parts --report /etc/cron.hourly)",
				"facility": "cron", "severity": "info"}
			msg = "CRON[999]: (root) CMD (cd / && run-parts --report /etc/cron.hourly)"
		}
		evs = append(evs, &quarry.Event{Host: "ws01.corp.local", User: "bob", Message: msg, Fields: f, Source: "evtx"})
	}
	return evs
}

func BenchmarkMatch100k(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	lists := benchLists(r)
	m := NewMatcher(lists...)
	if m.Len() != 100_000 {
		b.Fatalf("Len() = %d", m.Len())
	}
	evs := benchEvents(r, lists)
	hits := 0
	for _, ev := range evs {
		hits += len(m.Match(ev))
	}
	if hits < 10 {
		b.Fatalf("only %d hits in the bench events: the seeded indicators are not found", hits)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m.Match(evs[i%len(evs)])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkMatch100kParallel(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	lists := benchLists(r)
	m := NewMatcher(lists...)
	evs := benchEvents(r, lists)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			m.Match(evs[i%len(evs)])
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkNewMatcher100k(b *testing.B) {
	lists := benchLists(rand.New(rand.NewPCG(1, 2)))
	b.ReportAllocs()
	for b.Loop() {
		NewMatcher(lists...)
	}
}

func BenchmarkParseText100k(b *testing.B) {
	lists := benchLists(rand.New(rand.NewPCG(1, 2)))
	var buf bytes.Buffer
	for _, l := range lists {
		if err := FormatText(&buf, l.Indicators); err != nil {
			b.Fatal(err)
		}
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := ParseText(bytes.NewReader(data), Options{})
		if err != nil || len(res.Indicators)+res.Skipped["duplicate"] != 100_000 {
			b.Fatalf("ParseText = %d indicators, %v", len(res.Indicators), err)
		}
	}
}
