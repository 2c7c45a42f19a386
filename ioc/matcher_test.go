package ioc

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
)

const (
	eicarSHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
	eicarMD5    = "44d88612fea8a8f36de82e1278abb02f"
	eicarSHA1   = "3395856ce81f2b7382dee72602f798b642f14140"
	someImphash = "829da329ce140d873b4a8bde2cbfaa7e"
)

// testMatcher holds one list of every kind and a second list sharing one indicator.
func testMatcher(t testing.TB) *Matcher {
	t.Helper()
	ind := func(typ Type, v, d string) Indicator {
		i, err := NewIndicator(typ, v, d)
		if err != nil {
			t.Fatalf("NewIndicator(%s, %q): %v", typ, v, err)
		}
		return i
	}
	report := List{ID: 7, Name: "IR-14", Level: "critical", Indicators: []Indicator{
		ind(SHA256, eicarSHA256, "dropper"),
		ind(MD5, eicarMD5, ""),
		ind(Imphash, someImphash, "beacon loader"),
		ind(IP, "185.220.101.47", "Tor exit"),
		ind(IP, "2a0b:4140:4c31::2", "v6 C2"),
		ind(IP, "198.51.100.77", "team server"),
		ind(CIDR, "45.153.160.0/24", "hosting"),
		ind(CIDR, "2001:db8::/32", "v6 range"),
		ind(Domain, "example.com", "parked lure"),
		ind(Domain, "quiet-harbor.net", "C2 domain"),
		ind(URL, "https://stage.quiet-harbor.net/gate.php", "gate"),
		ind(Filename, "mimikatz.exe", "dumper"),
		ind(Filename, "invoice_*.js", "lure script"),
		ind(Filename, "*.hta", "HTML application"),
		ind(Filename, "quarterly report.pdf.exe", "double extension"),
		ind(Filename, "*rclone*", "exfil tool"),
	}}
	blocklist := List{Name: "blocklist", Indicators: []Indicator{ind(IP, "185.220.101.47", "")}}
	m := NewMatcher(report, blocklist)
	if p := m.Problems(); len(p) != 0 {
		t.Fatalf("NewMatcher problems: %v", p)
	}
	return m
}

type hitKey struct {
	list, value, field, matched string
}

func keys(hits []Hit) []hitKey {
	var out []hitKey
	for _, h := range hits {
		out = append(out, hitKey{h.List, h.Indicator.Value, h.Field, h.Value})
	}
	return out
}

func TestMatch(t *testing.T) {
	m := testMatcher(t)
	tests := []struct {
		name   string
		fields map[string]any
		ev     quarry.Event
		want   []hitKey
	}{
		{"SysmonProcessCreate", map[string]any{
			"EventID": int64(1), "Image": `C:\Users\bob\AppData\Local\Temp\mimikatz.exe`,
			"CommandLine": `mimikatz.exe "privilege::debug" "sekurlsa::logonpasswords" exit`,
			"Hashes":      "SHA1=" + strings.ToUpper(eicarSHA1) + ",MD5=" + strings.ToUpper(eicarMD5) + ",SHA256=" + strings.ToUpper(eicarSHA256) + ",IMPHASH=" + strings.ToUpper(someImphash),
		}, quarry.Event{}, []hitKey{
			{"IR-14", eicarSHA256, "Hashes", strings.ToUpper(eicarSHA256)},
			{"IR-14", eicarMD5, "Hashes", strings.ToUpper(eicarMD5)},
			{"IR-14", someImphash, "Hashes", strings.ToUpper(someImphash)},
			{"IR-14", "mimikatz.exe", "CommandLine", "mimikatz.exe"},
		}},
		{"SysmonNetwork", map[string]any{
			"DestinationIp": "185.220.101.47", "DestinationPort": int64(443), "SourceIp": "10.1.2.3",
			"DestinationHostname": "node1.C2.Quiet-Harbor.net",
		}, quarry.Event{}, []hitKey{
			{"IR-14", "185.220.101.47", "DestinationIp", "185.220.101.47"},
			{"IR-14", "quiet-harbor.net", "DestinationHostname", "node1.c2.quiet-harbor.net"},
			{"blocklist", "185.220.101.47", "DestinationIp", "185.220.101.47"},
		}},
		{"SysmonDNS", map[string]any{
			"QueryName": "example.com", "QueryResults": "type:  5 edge.cdn.net;::ffff:45.153.160.99;2001:db8:ffff::1;",
		}, quarry.Event{}, []hitKey{
			{"IR-14", "45.153.160.0/24", "QueryResults", "45.153.160.99"},
			{"IR-14", "2001:db8::/32", "QueryResults", "2001:db8:ffff::1"},
			{"IR-14", "example.com", "QueryName", "example.com"},
		}},
		{"LogonMappedAddress", map[string]any{"EventID": int64(4625), "IpAddress": "::ffff:198.51.100.77", "IpPort": "50123"},
			quarry.Event{}, []hitKey{{"IR-14", "198.51.100.77", "IpAddress", "198.51.100.77"}}},
		{"AuthLogIPv6", map[string]any{"src_ip": "2a0b:4140:4c31:0:0:0:0:2", "src_port": int64(22)},
			quarry.Event{}, []hitKey{{"IR-14", "2a0b:4140:4c31::2", "src_ip", "2a0b:4140:4c31::2"}}},
		{"IPWithPort", map[string]any{"remote_addr": "[2a0b:4140:4c31::2]:443", "peer": "198.51.100.77:8080"},
			quarry.Event{}, []hitKey{
				{"IR-14", "2a0b:4140:4c31::2", "remote_addr", "2a0b:4140:4c31::2"},
				{"IR-14", "198.51.100.77", "peer", "198.51.100.77"},
			}},
		{"NestedAndLists", map[string]any{
			"process": map[string]any{"parent": map[string]any{"exe": "/tmp/.x/MIMIKATZ.EXE"}},
			"ips":     []any{"10.0.0.1", "45.153.160.255"},
			"names":   []string{"a", "report.hta"},
		}, quarry.Event{}, []hitKey{
			{"IR-14", "45.153.160.0/24", "ips[1]", "45.153.160.255"},
			{"IR-14", "mimikatz.exe", "process.parent.exe", "MIMIKATZ.EXE"},
			{"IR-14", "*.hta", "names[1]", "report.hta"},
		}},
		{"NumbersAreNoAddresses", map[string]any{
			"addr": int64(3114656047), "uaddr": uint64(3114656047), "f": float64(185.220101), "ok": true,
			"when": time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), "n": "3114656047", "nil": nil,
		}, quarry.Event{}, nil},
		{"CIDREdges", map[string]any{"a": "45.153.160.0", "b": "45.153.159.255", "c": "45.153.161.0", "d": "2001:db9::1", "e": "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"},
			quarry.Event{}, []hitKey{{"IR-14", "45.153.160.0/24", "a", "45.153.160.0"}}},
		{"Lookalikes", map[string]any{
			"a": "evilexample.com", "b": "example.com.evil.net", "c": "example.co", "d": "my-example.com", "e": "exampleXcom",
			"f": "quiet-harbor.network", "g": "user@notquiet-harbor.net",
		}, quarry.Event{}, nil},
		{"SubdomainInURLAndEmail", map[string]any{"b": "mail from bob@Mail.Example.COM.", "a": "GET http://www.example.com:8080/x"},
			quarry.Event{}, []hitKey{{"IR-14", "example.com", "a", "www.example.com"}}},
		{"URLs", map[string]any{
			"a": "download from HTTPS://stage.quiet-harbor.net:443/gate.php?id=7#x, then run",
			"b": "https://stage.quiet-harbor.net/gate.phpx",
		}, quarry.Event{}, []hitKey{
			{"IR-14", "quiet-harbor.net", "a", "stage.quiet-harbor.net"},
			{"IR-14", "https://stage.quiet-harbor.net/gate.php", "a", "HTTPS://stage.quiet-harbor.net:443/gate.php?id=7#x"},
		}},
		{"FileNames", map[string]any{
			"TargetFilename": `C:\Users\bob\Downloads\Invoice_2291.JS`,
			"Image":          `C:\Users\bob\Downloads\Quarterly Report.pdf.exe`,
			"x":              `"C:\Program Files\Tools\rclone-v1.66.exe" copy c: remote:`,
			"y":              "invoice.js notinvoice_1.js",
		}, quarry.Event{}, []hitKey{
			{"IR-14", "invoice_*.js", "TargetFilename", "Invoice_2291.JS"},
			{"IR-14", "quarterly report.pdf.exe", "Image", "Quarterly Report.pdf.exe"},
			{"IR-14", "*rclone*", "x", "rclone-v1.66.exe"},
		}},
		{"HashNeedsWholeToken", map[string]any{"a": eicarSHA256 + "0", "b": "x" + eicarMD5, "c": eicarMD5[:31]}, quarry.Event{}, nil},
		{"HostUserMessage", nil, quarry.Event{Host: "ws01.corp.example.com", User: "bob", Message: "sshd: Failed password from 185.220.101.47"},
			[]hitKey{
				{"IR-14", "185.220.101.47", "message", "185.220.101.47"},
				{"IR-14", "example.com", "host", "ws01.corp.example.com"},
				{"blocklist", "185.220.101.47", "message", "185.220.101.47"},
			}},
		{"OneHitPerIndicatorFirstField", map[string]any{"z": "185.220.101.47", "b": "185.220.101.47", "m": "185.220.101.47"}, quarry.Event{},
			[]hitKey{{"IR-14", "185.220.101.47", "b", "185.220.101.47"}, {"blocklist", "185.220.101.47", "b", "185.220.101.47"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := tc.ev
			ev.Fields = tc.fields
			// Map order varies between runs: the result must not.
			first := m.Match(&ev)
			for range 5 {
				if again := m.Match(&ev); !reflect.DeepEqual(again, first) {
					t.Fatalf("Match differs between calls:\n%v\n%v", first, again)
				}
			}
			if got := keys(first); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Match() = %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestMatchHitDetails(t *testing.T) {
	m := testMatcher(t)
	hits := m.Match(&quarry.Event{Fields: map[string]any{"DestinationIp": "185.220.101.47"}})
	want := []Hit{
		{ListID: 7, List: "IR-14", Level: "critical", Indicator: Indicator{IP, "185.220.101.47", "Tor exit"}, Field: "DestinationIp", Value: "185.220.101.47"},
		{List: "blocklist", Level: "high", Indicator: Indicator{IP, "185.220.101.47", ""}, Field: "DestinationIp", Value: "185.220.101.47"},
	}
	if !reflect.DeepEqual(hits, want) {
		t.Fatalf("Match() = %+v\nwant %+v", hits, want)
	}
	if m.Len() != 17 {
		t.Errorf("Len() = %d, want 17", m.Len())
	}
}

func TestMatchFile(t *testing.T) {
	m := testMatcher(t)
	tests := []struct {
		path, sha string
		want      []hitKey
	}{
		{"C/Users/bob/AppData/Local/Temp/payload.bin", strings.ToUpper(eicarSHA256), []hitKey{{"IR-14", eicarSHA256, "sha256", strings.ToUpper(eicarSHA256)}}},
		{`C:\Users\bob\Downloads\MIMIKATZ.exe`, "00", []hitKey{{"IR-14", "mimikatz.exe", "path", "MIMIKATZ.exe"}}},
		{"home/bob/Quarterly Report.pdf.exe", "", []hitKey{{"IR-14", "quarterly report.pdf.exe", "path", "Quarterly Report.pdf.exe"}}},
		{"C/Windows/System32/cmd.exe", eicarSHA256[:63], nil},
		{"", "", nil},
	}
	for _, tc := range tests {
		if got := keys(m.MatchFile(tc.path, tc.sha)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("MatchFile(%q, %q) = %v, want %v", tc.path, tc.sha, got, tc.want)
		}
	}
}

func TestMatchString(t *testing.T) {
	m := testMatcher(t)
	got := keys(m.MatchString("hostname", "DC01.Example.com"))
	want := []hitKey{{"IR-14", "example.com", "hostname", "dc01.example.com"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("MatchString = %v, want %v", got, want)
	}
}

func TestNewMatcherProblems(t *testing.T) {
	m := NewMatcher(List{Name: "hand-made", Indicators: []Indicator{
		{Type: Domain, Value: "Evil.COM"}, // not normalised: NewMatcher does it
		{Type: MD5, Value: "nope"},
		{Type: "ja3", Value: "x"},
	}})
	if m.Len() != 1 {
		t.Errorf("Len() = %d, want 1", m.Len())
	}
	p := m.Problems()
	if len(p) != 2 || p[0].Line != 2 || p[1].Line != 3 || !strings.Contains(p[0].Reason, `list "hand-made"`) {
		t.Errorf("Problems() = %v, want lines 2 and 3 of hand-made", p)
	}
	if hits := m.MatchString("q", "www.evil.com"); len(hits) != 1 || hits[0].Indicator.Value != "evil.com" {
		t.Errorf("MatchString with a normalised hand-made indicator = %v", hits)
	}
	empty := NewMatcher()
	if hits := empty.Match(&quarry.Event{Message: "evil.com"}); hits != nil {
		t.Errorf("empty matcher Match = %v", hits)
	}
	if hits := empty.MatchFile("a.exe", eicarSHA256); hits != nil {
		t.Errorf("empty matcher MatchFile = %v", hits)
	}
}

func TestDetections(t *testing.T) {
	long := "https://evil.example/" + strings.Repeat("a", 300)
	hits := []Hit{
		{List: "IR-14", Level: "critical", Indicator: Indicator{IP, "185.220.101.47", "Tor exit"}},
		{List: "blocklist", Indicator: Indicator{URL, long, ""}},
		{List: "blocklist", Indicator: Indicator{URL, long + "b", ""}},
	}
	got := Detections(hits)
	if len(got) != 3 {
		t.Fatalf("Detections = %v", got)
	}
	want0 := quarry.Detection{RuleID: "ioc:IR-14:ip:185.220.101.47", Title: "IOC ip 185.220.101.47: Tor exit (list IR-14)",
		Level: "critical", Tags: []string{"ioc.ip"}, Kind: "ioc"}
	if !reflect.DeepEqual(got[0], want0) {
		t.Errorf("Detections[0] = %+v, want %+v", got[0], want0)
	}
	for i, d := range got[1:] {
		if len(d.RuleID) > MaxRuleID || !strings.HasPrefix(d.RuleID, "ioc:blocklist:url:https://evil.example/aaa") || d.Level != DefaultLevel {
			t.Errorf("Detections[%d] = %+v: want a RuleID of at most %d bytes and level %s", i+1, d, MaxRuleID, DefaultLevel)
		}
		if len(d.Title) > 250 {
			t.Errorf("Detections[%d].Title is %d bytes long", i+1, len(d.Title))
		}
	}
	if got[1].RuleID == got[2].RuleID {
		t.Errorf("two long indicators share the RuleID %q", got[1].RuleID)
	}
	if Detections(nil) != nil {
		t.Error("Detections(nil) is not nil")
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*.hta", "a.hta", true},
		{"*.hta", ".hta", true},
		{"*.hta", "a.htaa", false},
		{"invoice_*.js", "invoice_.js", true},
		{"invoice_*.js", "invoice_1.2.js", true},
		{"invoice_*.js", "invoice_1.jsx", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a?c", "aéc", true}, // ? is one character, not one byte
		{"*a*a*a*a*b", strings.Repeat("a", 200), false},
		{"[x].exe", "[x].exe", true}, // brackets are literal
		{"*", "", true},
		{"?", "", false},
	}
	for _, tc := range tests {
		if got := globMatch(tc.pattern, tc.name); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestMatchConcurrent(t *testing.T) {
	m := testMatcher(t)
	ev := &quarry.Event{Fields: map[string]any{"DestinationIp": "185.220.101.47", "QueryName": "a.example.com", "Image": `C:\x\mimikatz.exe`}}
	want := m.Match(ev)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for range 200 {
				if got := m.Match(ev); !reflect.DeepEqual(got, want) {
					errs <- fmt.Sprintf("goroutine %d: %v", g, got)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestMatchNetworks(t *testing.T) {
	m := NewMatcher(List{Name: "nets", Indicators: []Indicator{
		{Type: CIDR, Value: "10.0.0.0/8"}, {Type: CIDR, Value: "172.16.0.0/12"}, {Type: CIDR, Value: "192.0.2.6/31"},
		{Type: CIDR, Value: "2001:db8:1::/48"}, {Type: IP, Value: "192.0.2.9"},
	}})
	tests := []struct {
		addr string
		want []string
	}{
		{"10.0.0.0", []string{"10.0.0.0/8"}},
		{"10.255.255.255", []string{"10.0.0.0/8"}},
		{"11.0.0.0", nil},
		{"9.255.255.255", nil},
		{"172.16.0.1", []string{"172.16.0.0/12"}},
		{"172.31.255.254", []string{"172.16.0.0/12"}},
		{"172.32.0.1", nil},
		{"172.15.255.255", nil},
		{"192.0.2.6", []string{"192.0.2.6/31"}},
		{"192.0.2.7", []string{"192.0.2.6/31"}},
		{"192.0.2.8", nil},
		{"192.0.2.9", []string{"192.0.2.9"}},
		{"::ffff:10.1.2.3", []string{"10.0.0.0/8"}},
		{"2001:db8:1:ffff::1", []string{"2001:db8:1::/48"}},
		{"2001:db8:2::1", nil},
		{"fe80::1%eth0", nil},
	}
	for _, tc := range tests {
		var got []string
		for _, h := range m.MatchString("a", tc.addr) {
			got = append(got, h.Indicator.Value)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("MatchString(%q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

// TestMatchInContext puts each indicator into the punctuation event text wraps values in, and
// expects it found everywhere.
func TestMatchInContext(t *testing.T) {
	m := testMatcher(t)
	values := map[string]string{ // text in the event → indicator value
		strings.ToUpper(eicarSHA256): eicarSHA256,
		eicarMD5:                     eicarMD5,
		"185.220.101.47":             "185.220.101.47",
		"2a0b:4140:4c31::2":          "2a0b:4140:4c31::2",
		"45.153.160.7":               "45.153.160.0/24",
		"x.Example.com":              "example.com",
		"mimikatz.exe":               "mimikatz.exe",
		"Invoice_7.js":               "invoice_*.js",
	}
	contexts := []string{"%s", " %s ", "x=%s,", `"%s"`, "'%s'", "(%s)", "<%s>", "{%s}", "%s;", "at %s.", "%s|y", "a\t%s\n",
		`C:\dir\%s`, "/tmp/%s", "k:%s", "%s:443", "%s#frag", "%s&", "%s!"}
	for text, want := range values {
		for _, c := range contexts {
			if strings.Contains(text, ":") && (c == "k:%s" || c == "%s:443") {
				continue // an IPv6 address next to a colon is ambiguous: written [addr]:port
			}
			s := fmt.Sprintf(c, text)
			found := false
			for _, h := range m.MatchString("f", s) {
				found = found || h.Indicator.Value == want
			}
			if !found {
				t.Errorf("MatchString(%q) does not find %s", s, want)
			}
		}
	}
	// A sample stored under its hash.
	if hits := m.MatchString("f", `C:\ProgramData\`+eicarSHA256+".bin"); len(hits) != 1 || hits[0].Indicator.Value != eicarSHA256 {
		t.Errorf("hash-named file: %v", hits)
	}
}
