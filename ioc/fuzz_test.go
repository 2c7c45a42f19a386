package ioc

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/quarry-dfir/quarry"
)

// addSeeds adds every testdata file whose name matches glob.
func addSeeds(f *testing.F, glob string) {
	names, err := filepath.Glob(filepath.Join("testdata", glob))
	if err != nil || len(names) == 0 {
		f.Fatalf("no seeds %s: %v", glob, err)
	}
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// checkResult checks what must hold for any import: every indicator is valid and normalised,
// limits hold, problems are in line order, and the only errors are EINVALID ones.
func checkResult(t *testing.T, res *Result, err error, opt Options, data []byte) {
	t.Helper()
	if res == nil {
		t.Fatal("nil result")
	}
	if err != nil && quarry.ErrorCode(err) != quarry.EINVALID {
		t.Fatalf("error %v is not EINVALID", err)
	}
	if len(res.Indicators) > opt.MaxIndicators {
		t.Fatalf("%d indicators over the limit %d", len(res.Indicators), opt.MaxIndicators)
	}
	if len(res.Problems) > opt.MaxProblems {
		t.Fatalf("%d problems over the limit %d", len(res.Problems), opt.MaxProblems)
	}
	seen := map[Indicator]bool{}
	for _, ind := range res.Indicators {
		if verr := ind.Validate(); verr != nil {
			t.Fatalf("indicator %+v: %v", ind, verr)
		}
		if !utf8.ValidString(ind.Description) || strings.ContainsAny(ind.Description, "\r\n") {
			t.Fatalf("description %q", ind.Description)
		}
		k := Indicator{Type: ind.Type, Value: ind.Value}
		if seen[k] {
			t.Fatalf("duplicate indicator %+v", k)
		}
		seen[k] = true
	}
	lines := bytes.Count(data, []byte{'\n'}) + 1
	last := 0
	for _, p := range res.Problems {
		if p.Line < last || p.Line < 1 || p.Line > lines {
			t.Fatalf("problem %v out of order or outside the %d lines", p, lines)
		}
		last = p.Line
		if len(p.Value) > 130 || !utf8.ValidString(p.Value) {
			t.Fatalf("problem value %q", p.Value)
		}
	}
}

func FuzzParseText(f *testing.F) {
	addSeeds(f, "*.txt")
	f.Add([]byte("sha256:\"x\t\n\"a b.exe\"\t#\n hxxp[:]//[.]\n*.*\n::ffff:1.2.3.4/120\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		opt := Options{MaxLine: 256, MaxIndicators: 50, MaxProblems: 20, MaxBytes: 1 << 16}
		res, err := ParseText(bytes.NewReader(data), opt)
		if err != nil && !errors.Is(err, ErrLimit) {
			t.Fatalf("ParseText error %v", err)
		}
		checkResult(t, res, err, opt, data)
		// What ParseText keeps reads back as itself when written as a list.
		if err == nil {
			var b bytes.Buffer
			if err := FormatText(&b, res.Indicators); err != nil {
				t.Fatal(err)
			}
			again, err := ParseText(&b, Options{})
			if err != nil || len(again.Indicators) != len(res.Indicators) {
				t.Fatalf("round trip: %d indicators, %v; want %d (problems %v)", len(again.Indicators), err, len(res.Indicators), again.Problems)
			}
			for i := range again.Indicators {
				if again.Indicators[i] != res.Indicators[i] {
					t.Fatalf("round trip: %+v, want %+v", again.Indicators[i], res.Indicators[i])
				}
			}
		}
	})
}

func FuzzParseMISP(f *testing.F) {
	addSeeds(f, "*.json")
	f.Add([]byte(`[{"type":"domain|ip","value":"a.b|1.2.3.4","to_ids":"1"},{"Attribute":[[[{}]]]},{"info":{"x":[]}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		opt := Options{MaxIndicators: 50, MaxProblems: 20, MaxBytes: 1 << 16}
		res, err := ParseMISP(bytes.NewReader(data), opt)
		checkResult(t, res, err, opt, data)
	})
}

// fuzzMatcher holds an indicator of each kind, to drive every look-up.
var fuzzMatcher = NewMatcher(List{Name: "fuzz", Indicators: []Indicator{
	{Type: SHA256, Value: eicarSHA256}, {Type: MD5, Value: eicarMD5}, {Type: IP, Value: "10.0.0.1"},
	{Type: IP, Value: "2001:db8::1"}, {Type: CIDR, Value: "192.168.0.0/16"}, {Type: CIDR, Value: "fd00::/8"},
	{Type: Domain, Value: "evil.com"}, {Type: URL, Value: "http://evil.com/a"}, {Type: Filename, Value: "a.exe"},
	{Type: Filename, Value: "x*.js"}, {Type: Filename, Value: "*.hta"}, {Type: Filename, Value: "*ab*"},
}})

func FuzzScanTokens(f *testing.F) {
	for _, s := range []string{
		"SHA1=" + eicarSHA1 + ",MD5=" + eicarMD5 + ",SHA256=" + eicarSHA256,
		`"C:\Program Files\A B\x1.js" --url=http://sub.evil.com/a?b=c#d 10.0.0.1:443 [2001:db8::1]:80`,
		"type:  5 edge.cdn.net;::ffff:192.168.1.1;fe80::1%eth0;", "bob@Mail.EVIL.com. ...", "://", "h://", "1.2.3.4.5",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		scanTokens(s, wantAll, func(tok token) {
			if !strings.Contains(s, tok.text) {
				t.Fatalf("token %q is not in the input", tok.text)
			}
			switch tok.kind {
			case tokHash:
				if n := len(tok.text); !isHex(tok.text) || n != 32 && n != 40 && n != 64 && n != 128 {
					t.Fatalf("hash token %q", tok.text)
				}
			case tokIP:
				a, err := netip.ParseAddr(tok.text)
				if err != nil || a.Unmap().WithZone("") != tok.addr || tok.addr.Zone() != "" || tok.addr.Is4In6() {
					t.Fatalf("address token %q → %v (%v)", tok.text, tok.addr, err)
				}
			case tokDomain:
				if _, err := normDomain(tok.text); err != nil {
					t.Fatalf("domain token %q: %v", tok.text, err)
				}
			case tokName:
				if tok.text == "" || len(tok.text) > 255 {
					t.Fatalf("name token %q", tok.text)
				}
			case tokURL:
				if !strings.Contains(tok.text, "://") {
					t.Fatalf("URL token %q", tok.text)
				}
			}
		})
		hits := fuzzMatcher.MatchString("f", s)
		for _, h := range hits {
			if h.List != "fuzz" || h.Field != "f" {
				t.Fatalf("hit %+v", h)
			}
		}
		// Anything the matcher finds as a whole value it also finds inside text.
		if ev := fuzzMatcher.Match(&quarry.Event{Fields: map[string]any{"f": s, "l": []any{s}}}); len(ev) != len(hits) {
			t.Fatalf("Match found %d, MatchString %d", len(ev), len(hits))
		}
	})
}
