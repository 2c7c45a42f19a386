package ioc

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/quarry-dfir/quarry"
)

func TestParseMISPFiles(t *testing.T) {
	const info = "OP QUIET HARBOR - loader and C2 infrastructure"
	tests := []struct {
		file     string
		opt      Options
		want     []Indicator
		problems []Problem
		skipped  map[string]int
	}{
		{
			file: "misp_event.json",
			want: []Indicator{
				{SHA256, "ed01ebfbc9eb5bbea545af4d01bf5f1071661840480439c6e5babe8e080e41aa", "loader DLL"},
				{IP, "185.220.101.47", "C2 over HTTPS"},
				{IP, "2a0b:4140:4c31::2", info},
				{Domain, "stage.quiet-harbor.net", "staging"},
				{IP, "45.153.160.12", "staging"},
				{MD5, "44d88612fea8a8f36de82e1278abb02f", "file svchost.exe"},
				{URL, "https://stage.quiet-harbor.net/gate.php", info},
				{SHA256, "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f", info},
				{Domain, "cdn.quiet-harbor.net", "CDN front"},
				{CIDR, "45.153.160.0/24", "hosting range"},
			},
			problems: []Problem{{Line: 45, Value: "3395856ce81f2b7382dee72602f798b642f1414", Reason: "sha1: sha1 hashes are 40 hex digits"}},
			skipped: map[string]int{"to_ids is false": 2, "MISP type regkey not matched": 1, "deleted in MISP": 1,
				"MISP type size-in-bytes not matched": 1},
		},
		{
			file: "misp_event.json",
			opt:  Options{IncludeNonIDS: true},
			want: []Indicator{
				{SHA256, "ed01ebfbc9eb5bbea545af4d01bf5f1071661840480439c6e5babe8e080e41aa", "loader DLL"},
				{IP, "185.220.101.47", "C2 over HTTPS"},
				{IP, "2a0b:4140:4c31::2", info},
				{Domain, "stage.quiet-harbor.net", "staging"},
				{IP, "45.153.160.12", "staging"},
				{MD5, "44d88612fea8a8f36de82e1278abb02f", "file svchost.exe"},
				{IP, "203.0.113.10", "victim NAT address"},
				{URL, "https://stage.quiet-harbor.net/gate.php", info},
				{Filename, "updater.dll", info},
				{SHA256, "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f", info},
				{Domain, "cdn.quiet-harbor.net", "CDN front"},
				{CIDR, "45.153.160.0/24", "hosting range"},
			},
			problems: []Problem{{Line: 45, Value: "3395856ce81f2b7382dee72602f798b642f1414", Reason: "sha1: sha1 hashes are 40 hex digits"}},
			skipped:  map[string]int{"MISP type regkey not matched": 1, "deleted in MISP": 1, "MISP type size-in-bytes not matched": 1},
		},
		{
			file: "misp_response.json",
			want: []Indicator{
				{Domain, "login-micros0ft.com", "credential phishing"},
				{IP, "198.51.100.77", "Cobalt Strike team server"},
				{Imphash, "829da329ce140d873b4a8bde2cbfaa7e", "beacon loader"},
			},
			problems: []Problem{{Line: 10, Value: "not-an-ip", Reason: "ip-dst: not a hash, IP address, network, domain, URL or file name; prefix it with its type (filename:, domain:, …)"}},
			skipped:  map[string]int{"MISP type email-src not matched": 1, "to_ids is false": 1, "duplicate": 1},
		},
		{
			file: "misp_attributes.json",
			want: []Indicator{
				{SHA512, "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e", ""},
				{Domain, "rat.dyn-dns.example", "RAT"},
				{MD5, "0cc175b9c0f1b6a831c399e269772661", "file rat_client.exe"},
			},
		},
		{
			file: "misp_bare_attributes.json",
			want: []Indicator{
				{MD5, "0cc175b9c0f1b6a831c399e269772661", "bare list"},
				{Domain, "evil.example", ""},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			res, err := ParseMISP(mustOpen(t, tc.file), tc.opt)
			if err != nil {
				t.Fatalf("ParseMISP error %v", err)
			}
			if !reflect.DeepEqual(res.Indicators, tc.want) {
				t.Errorf("ParseMISP indicators:")
				for i := range max(len(tc.want), len(res.Indicators)) {
					var g, w Indicator
					if i < len(res.Indicators) {
						g = res.Indicators[i]
					}
					if i < len(tc.want) {
						w = tc.want[i]
					}
					if g != w {
						t.Errorf("  %d: got %+v, want %+v", i, g, w)
					}
				}
			}
			if !reflect.DeepEqual(res.Problems, tc.problems) {
				t.Errorf("ParseMISP problems = %+v, want %+v", res.Problems, tc.problems)
			}
			if !reflect.DeepEqual(res.Skipped, tc.skipped) {
				t.Errorf("ParseMISP skipped = %v, want %v", res.Skipped, tc.skipped)
			}
		})
	}
}

func TestParseMISPErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		opt  Options
		want string // in the error's message
	}{
		{"Empty", "", Options{}, "not valid MISP JSON near line 1"},
		{"Truncated", "{\"Event\": {\n\"Attribute\": [\n{\"type\": \"md5\",", Options{}, "not valid MISP JSON near line 3"},
		{"Garbage", "evil.com\n", Options{}, "not valid MISP JSON"},
		{"TwoDocuments", `{"Event":{"Attribute":[]}} {}`, Options{}, "not valid MISP JSON"},
		{"NoEvent", `{"hello": "world"}`, Options{}, "no MISP event or attribute"},
		{"TooBig", `{"Event":{"Attribute":[` + strings.Repeat(`{"type":"md5","value":"x"},`, 100) + `]}}`, Options{MaxBytes: 200}, "larger than"},
		{"TooMany", `[{"type":"domain","value":"a.com"},{"type":"domain","value":"b.com"}]`, Options{MaxIndicators: 1}, "more than 1 indicators"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := ParseMISP(strings.NewReader(tc.in), tc.opt)
			var qe *quarry.Error
			if !errors.As(err, &qe) || qe.Code != quarry.EINVALID || !strings.Contains(qe.Message, tc.want) {
				t.Fatalf("ParseMISP(%.40q) = %v, want EINVALID containing %q", tc.in, err, tc.want)
			}
			if res == nil {
				t.Fatal("ParseMISP returned a nil result with its error")
			}
		})
	}
}

func TestParseMISPShapes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Indicator
	}{
		{"EventArray", `[{"Event":{"info":"a","Attribute":[{"type":"domain","value":"a.com"}]}},{"Event":{"info":"b","Attribute":[{"type":"domain","value":"b.com"}]}}]`,
			[]Indicator{{Domain, "a.com", "a"}, {Domain, "b.com", "b"}}},
		{"SingleAttribute", `{"type":"ip-src","value":"10.0.0.0/8","comment":"lab"}`, []Indicator{{CIDR, "10.0.0.0/8", "lab"}}},
		{"AttributeWrapped", `{"Attribute":{"type":"url","value":"http://x.example/a"}}`, []Indicator{{URL, "http://x.example/a", ""}}},
		{"NumericFlags", `[{"type":"md5","value":"0cc175b9c0f1b6a831c399e269772661","to_ids":0},{"type":"md5","value":"92eb5ffee6ae2fec3ad71c777531578f","to_ids":1,"deleted":"0"}]`,
			[]Indicator{{MD5, "92eb5ffee6ae2fec3ad71c777531578f", ""}}},
		{"ValueNotString", `[{"type":"domain","value":{"x":1}},{"type":"domain","value":"ok.example"}]`, []Indicator{{Domain, "ok.example", ""}}},
		{"NestedObjectsIgnored", `{"Event":{"Tag":[{"type":"domain","value":"tag.example"}],"Attribute":[]}}`, []Indicator{}},
		{"DeepNesting", `{"Event":{"x":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `,"Attribute":[{"type":"domain","value":"deep.example"}]}}`,
			[]Indicator{{Domain, "deep.example", ""}}},
		{"FilenameSHA256", `[{"type":"filename|sha256","value":"C:\\Temp\\a.exe|275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f","comment":"dropper"}]`,
			[]Indicator{{SHA256, "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f", `file C:\Temp\a.exe: dropper`}}},
		{"IPv6Port", `[{"type":"ip-dst|port","value":"2001:db8::1|443"}]`, []Indicator{{IP, "2001:db8::1", ""}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := ParseMISP(strings.NewReader(tc.in), Options{})
			if err != nil {
				t.Fatalf("ParseMISP error %v", err)
			}
			if !reflect.DeepEqual(res.Indicators, tc.want) {
				t.Errorf("ParseMISP = %+v (problems %v), want %+v", res.Indicators, res.Problems, tc.want)
			}
		})
	}
}
