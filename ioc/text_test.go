package ioc

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/quarry-dfir/quarry"
)

func mustOpen(tb testing.TB, name string) *os.File {
	tb.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

func TestParseTextReport(t *testing.T) {
	res, err := ParseText(mustOpen(t, "report.txt"), Options{})
	if err != nil {
		t.Fatalf("ParseText(report.txt) error %v", err)
	}
	want := []Indicator{
		{MD5, "44d88612fea8a8f36de82e1278abb02f", "EICAR test file (MD5)"},
		{SHA1, "3395856ce81f2b7382dee72602f798b642f14140", "EICAR SHA-1"},
		{SHA256, "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f", "EICAR SHA-256"},
		{SHA256, "ed01ebfbc9eb5bbea545af4d01bf5f1071661840480439c6e5babe8e080e41aa", "Sysmon-seen dropper"},
		{IP, "185.220.101.47", "Tor exit used for RDP brute force"},
		{IP, "2a0b:4140:4c31::2", "IPv6 C2"},
		{CIDR, "45.153.160.0/24", "bulletproof hosting range"},
		{CIDR, "10.13.37.5/32", ""},
		{Domain, "evil-updates.com", "phishing landing domain"},
		{URL, "https://cdn.evil-updates.com/payload/stage2.ps1?id=77", "stage 2 download"},
		{Domain, "badcdn.net", ""},
		{Filename, "invoice.zip", "the lure archive (ZIP is also a TLD, hence the prefix)"},
		{Filename, "mimikatz.exe", "credential dumper"},
		{Filename, "quarterly report.pdf.exe", "double extension lure"},
		{Filename, "invoice_*.js", ""},
	}
	if !reflect.DeepEqual(res.Indicators, want) {
		t.Errorf("ParseText(report.txt) indicators:")
		for i := range max(len(want), len(res.Indicators)) {
			var g, w Indicator
			if i < len(res.Indicators) {
				g = res.Indicators[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w {
				t.Errorf("  %d: got %+v, want %+v", i, g, w)
			}
		}
	}
	wantProblems := []struct {
		line   int
		value  string
		reason string
	}{
		{23, "1234567890abcdef", "16 hex digits is no hash length"},
		{24, "999.1.1.1", "not a hash, IP address"},
		{25, "notanindicator", "not a hash, IP address"},
		{26, "abcd", "sha256 hashes are 64 hex digits"},
	}
	if len(res.Problems) != len(wantProblems) {
		t.Fatalf("ParseText(report.txt) problems = %v, want %d", res.Problems, len(wantProblems))
	}
	for i, w := range wantProblems {
		p := res.Problems[i]
		if p.Line != w.line || p.Value != w.value || !strings.Contains(p.Reason, w.reason) {
			t.Errorf("problem %d = %v, want line %d %q %q", i, p, w.line, w.value, w.reason)
		}
	}
}

func TestParseTextLines(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		opt      Options
		want     []Indicator
		problems []int // lines
		skipped  map[string]int
	}{
		{"Blank", "\n\n   \n", Options{}, []Indicator{}, nil, nil},
		{"Comments", "# x\n// y\n; z\nevil.com\n", Options{}, []Indicator{{Domain, "evil.com", ""}}, nil, nil},
		{"CRLFAndBOM", "\xEF\xBB\xBFevil.com\r\n8.8.8.8\r\n", Options{}, []Indicator{{Domain, "evil.com", ""}, {IP, "8.8.8.8", ""}}, nil, nil},
		{"NoFinalNewline", "evil.com", Options{}, []Indicator{{Domain, "evil.com", ""}}, nil, nil},
		{"CommaDescription", "evil.com,C2 domain, used in 2025", Options{}, []Indicator{{Domain, "evil.com", "C2 domain, used in 2025"}}, nil, nil},
		{"HashDescription", "evil.com   # C2", Options{}, []Indicator{{Domain, "evil.com", "C2"}}, nil, nil},
		{"TabKeepsSpaces", "my tool.exe\tgrabber\n", Options{}, []Indicator{{Filename, "my tool.exe", "grabber"}}, nil, nil},
		{"Quoted", `"a b.exe" x`, Options{}, []Indicator{{Filename, "a b.exe", "x"}}, nil, nil},
		{"UnterminatedQuote", `"a b.exe x`, Options{}, []Indicator{}, []int{1}, nil},
		{"TypePrefix", "hostname:Evil.com\nip-dst:[2001:db8::1]\nfile:evil.com\n", Options{},
			[]Indicator{{Domain, "evil.com", ""}, {IP, "2001:db8::1", ""}, {Filename, "evil.com", ""}}, nil, nil},
		{"URLIsNoPrefix", "url:http://evil.com/x\nhttp://evil.com/y\n", Options{},
			[]Indicator{{URL, "http://evil.com/x", ""}, {URL, "http://evil.com/y", ""}}, nil, nil},
		{"DefaultType", "invoice.zip\nsetup\n", Options{DefaultType: Filename},
			[]Indicator{{Filename, "invoice.zip", ""}, {Filename, "setup", ""}}, nil, nil},
		{"DefaultTypeMismatch", "evil.com\n", Options{DefaultType: MD5}, []Indicator{}, []int{1}, nil},
		{"Duplicates", "evil.com\nEVIL.COM first\nevil[.]com\n", Options{}, []Indicator{{Domain, "evil.com", ""}}, nil, map[string]int{"duplicate": 2}},
		{"BadUTF8", "evil.com\n\xff\xfe\n8.8.8.8\n", Options{}, []Indicator{{Domain, "evil.com", ""}, {IP, "8.8.8.8", ""}}, []int{2}, nil},
		{"LongLine", "evil.com\n" + strings.Repeat("a", 5000) + "\n8.8.8.8\n", Options{}, []Indicator{{Domain, "evil.com", ""}, {IP, "8.8.8.8", ""}}, []int{2}, nil},
		{"LongLineAtEOF", "evil.com\n" + strings.Repeat("a", 5000), Options{}, []Indicator{{Domain, "evil.com", ""}}, []int{2}, nil},
		{"LineAtLimit", strings.Repeat("a", 60) + ".com\n", Options{MaxLine: 64}, []Indicator{{Domain, strings.Repeat("a", 60) + ".com", ""}}, nil, nil},
		{"LineOverLimit", strings.Repeat("a", 61) + ".com\n", Options{MaxLine: 64}, []Indicator{}, []int{1}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := ParseText(strings.NewReader(tc.in), tc.opt)
			if err != nil {
				t.Fatalf("ParseText error %v", err)
			}
			if !reflect.DeepEqual(res.Indicators, tc.want) {
				t.Errorf("ParseText indicators = %+v, want %+v", res.Indicators, tc.want)
			}
			var lines []int
			for _, p := range res.Problems {
				lines = append(lines, p.Line)
			}
			if !reflect.DeepEqual(lines, tc.problems) {
				t.Errorf("ParseText problem lines = %v (%v), want %v", lines, res.Problems, tc.problems)
			}
			if !reflect.DeepEqual(res.Skipped, tc.skipped) {
				t.Errorf("ParseText skipped = %v, want %v", res.Skipped, tc.skipped)
			}
		})
	}
}

func TestParseTextLimits(t *testing.T) {
	t.Run("MaxBytes", func(t *testing.T) {
		in := strings.Repeat("evil.com\n", 1000)
		res, err := ParseText(strings.NewReader(in), Options{MaxBytes: 100})
		if !errors.Is(err, ErrLimit) || quarry.ErrorCode(err) != quarry.EINVALID {
			t.Fatalf("ParseText over MaxBytes error = %v, want EINVALID wrapping ErrLimit", err)
		}
		if res == nil {
			t.Fatal("ParseText over MaxBytes returned no partial result")
		}
	})
	t.Run("ExactlyMaxBytes", func(t *testing.T) {
		in := "evil.com\n8.8.8.8\n"
		res, err := ParseText(strings.NewReader(in), Options{MaxBytes: int64(len(in))})
		if err != nil || len(res.Indicators) != 2 {
			t.Fatalf("ParseText at MaxBytes = %v, %v; want 2 indicators", res.Indicators, err)
		}
	})
	t.Run("MaxIndicators", func(t *testing.T) {
		res, err := ParseText(strings.NewReader("a.com\nb.com\nc.com\n"), Options{MaxIndicators: 2})
		if !errors.Is(err, ErrLimit) || len(res.Indicators) != 2 {
			t.Fatalf("ParseText over MaxIndicators = %d, %v; want 2 and ErrLimit", len(res.Indicators), err)
		}
	})
	t.Run("MaxProblems", func(t *testing.T) {
		res, err := ParseText(strings.NewReader(strings.Repeat("bad\n", 10)), Options{MaxProblems: 3})
		if err != nil || len(res.Problems) != 3 || res.MoreProblems != 7 {
			t.Fatalf("ParseText problems = %d + %d more, %v; want 3 + 7", len(res.Problems), res.MoreProblems, err)
		}
	})
	t.Run("BadDefaultType", func(t *testing.T) {
		if _, err := ParseText(strings.NewReader("x"), Options{DefaultType: "yara"}); quarry.ErrorCode(err) != quarry.EINVALID {
			t.Fatalf("ParseText with an unknown default type = %v, want EINVALID", err)
		}
	})
	t.Run("ReadError", func(t *testing.T) {
		boom := errors.New("disk gone")
		_, err := ParseText(&failReader{data: "evil.com\n", err: boom}, Options{})
		if !errors.Is(err, boom) {
			t.Fatalf("ParseText read error = %v, want %v", err, boom)
		}
	})
}

// failReader returns data, then err.
type failReader struct {
	data string
	err  error
}

func (r *failReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestParseTextCRLFBadUTF8File(t *testing.T) {
	res, err := ParseText(mustOpen(t, "crlf_bad_utf8.txt"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Indicator{{Domain, "evil.com", ""}, {IP, "8.8.8.8", ""}}
	if !reflect.DeepEqual(res.Indicators, want) || len(res.Problems) != 1 || res.Problems[0].Line != 2 {
		t.Fatalf("ParseText = %+v, problems %v; want %+v and a problem on line 2", res.Indicators, res.Problems, want)
	}
}
