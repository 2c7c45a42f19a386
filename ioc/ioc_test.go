package ioc

import (
	"errors"
	"strings"
	"testing"

	"github.com/quarry-dfir/quarry"
)

func TestRefang(t *testing.T) {
	tests := []struct{ in, want string }{
		{"evil[.]com", "evil.com"},
		{"evil(.)com", "evil.com"},
		{"evil{.}com", "evil.com"},
		{"evil[dot]com", "evil.com"},
		{`evil\.com`, "evil.com"},
		{"10[.]0[.]0[.]1", "10.0.0.1"},
		{"hxxp://evil[.]com/a", "http://evil.com/a"},
		{"hXXps://evil.com", "https://evil.com"},
		{"hxxps[:]//evil[.]com", "https://evil.com"},
		{"hxxp[://]evil.com", "http://evil.com"},
		{"h**p://evil.com", "http://evil.com"},
		{"fxp://files.evil.com", "ftp://files.evil.com"},
		{"2001[:]db8::1", "2001:db8::1"},
		{"plain.example.com", "plain.example.com"},
		{"hxxpd.example.com", "hxxpd.example.com"}, // no scheme: left alone
		{"", ""},
	}
	for _, tc := range tests {
		if got := Refang(tc.in); got != tc.want {
			t.Errorf("Refang(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name    string
		typ     Type
		in      string
		want    string
		wantErr string
	}{
		{"MD5Upper", MD5, "44D88612FEA8A8F36DE82E1278ABB02F", "44d88612fea8a8f36de82e1278abb02f", ""},
		{"SHA256SysmonForm", SHA256, "SHA256=275A021BBFB6489E54D471899F7DB9D1663FC695EC2FE2A2C4538AABF651FD0F", "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f", ""},
		{"SHA1WrongLength", SHA1, "3395856ce81f2b7382dee72602f798b642f1414", "", "40 hex digits"},
		{"MD5NotHex", MD5, "zz d88612fea8a8f36de82e1278abb02f", "", "32 hex digits"},
		{"IPv4", IP, " 192.168.001.1 ", "", "not an IP"}, // leading zeros are ambiguous (octal?)
		{"IPv4Defanged", IP, "192[.]168[.]1[.]1", "192.168.1.1", ""},
		{"IPv6Canonical", IP, "2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1", ""},
		{"IPv6Bracketed", IP, "[2001:db8::1]", "2001:db8::1", ""},
		{"IPv4Mapped", IP, "::ffff:10.0.0.1", "10.0.0.1", ""},
		{"IPZone", IP, "fe80::1%eth0", "fe80::1", ""},
		{"IPAsSlash32", IP, "10.1.2.3/32", "10.1.2.3", ""},
		{"CIDRMasked", CIDR, "10.1.2.3/8", "10.0.0.0/8", ""},
		{"CIDRv6", CIDR, "2001:DB8::/32", "2001:db8::/32", ""},
		{"CIDRFromAddr", CIDR, "10.1.2.3", "10.1.2.3/32", ""},
		{"CIDRZero", CIDR, "0.0.0.0/0", "", "every address"},
		{"CIDRMapped", CIDR, "::ffff:10.0.0.0/104", "10.0.0.0/8", ""},
		{"DomainCaseDots", Domain, ".Evil.COM.", "evil.com", ""},
		{"DomainWildcard", Domain, "*.evil.com", "evil.com", ""},
		{"DomainUnderscore", Domain, "c2_node.evil.com", "c2_node.evil.com", ""},
		{"DomainTLDOnly", Domain, "com", "", "two labels"},
		{"DomainNumeric", Domain, "10.0.0.1", "", "number"},
		{"DomainEmptyLabel", Domain, "evil..com", "", "label"},
		{"DomainUnicode", Domain, "bücher.de", "", "punycode"},
		{"DomainSpace", Domain, "evil com.net", "", "not allowed"},
		{"FilenamePath", Filename, `C:\Users\Bob\AppData\Local\Temp\EVIL.exe`, "evil.exe", ""},
		{"FilenameGlob", Filename, "Invoice_*.JS", "invoice_*.js", ""},
		{"FilenameTooWild", Filename, "*.*", "", "fewer than two"},
		{"FilenameSpaces", Filename, "Quarterly Report.pdf.exe", "quarterly report.pdf.exe", ""},
		{"URL", URL, "HTTPS://Evil.COM:443/Path/To?Q=1#frag", "https://evil.com/Path/To?Q=1", ""},
		{"URLDefanged", URL, "hxxp://evil[.]com/", "http://evil.com", ""},
		{"URLPort", URL, "http://evil.com:8080/x", "http://evil.com:8080/x", ""},
		{"URLUserinfo", URL, "http://user:pw@evil.com/x", "http://evil.com/x", ""},
		{"URLNoHost", URL, "http:///x", "", "host"},
		{"URLBadScheme", URL, "javascript://alert(1)", "", "host"},
		{"Empty", SHA256, "   ", "", "empty"},
		{"UnknownType", Type("yara"), "x", "", "unknown indicator type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Normalize(tc.typ, tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Normalize(%s, %q) = %q, %v; want error containing %q", tc.typ, tc.in, got, err, tc.wantErr)
				}
				if quarry.ErrorCode(err) != quarry.EINVALID {
					t.Errorf("error code %q, want %q", quarry.ErrorCode(err), quarry.EINVALID)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Normalize(%s, %q) = %q, %v; want %q", tc.typ, tc.in, got, err, tc.want)
			}
			// Normalising is idempotent: a stored value stays as it is.
			if again, err := Normalize(tc.typ, got); err != nil || again != got {
				t.Errorf("Normalize(%s, %q) = %q, %v; not idempotent", tc.typ, got, again, err)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		in       string
		wantType Type
		want     string
	}{
		{"44d88612fea8a8f36de82e1278abb02f", MD5, "44d88612fea8a8f36de82e1278abb02f"},
		{"3395856CE81F2B7382DEE72602F798B642F14140", SHA1, "3395856ce81f2b7382dee72602f798b642f14140"},
		{"275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f", SHA256, "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"},
		{strings.Repeat("ab", 64), SHA512, strings.Repeat("ab", 64)},
		{"8.8.8.8", IP, "8.8.8.8"},
		{"2001:db8::53", IP, "2001:db8::53"},
		{"10.0.0.0/8", CIDR, "10.0.0.0/8"},
		{"10.0.0.7/32", IP, "10.0.0.7"},
		{"evil[.]com", Domain, "evil.com"},
		{"*.evil.com", Domain, "evil.com"},
		{"invoice.zip", Domain, "invoice.zip"}, // .zip is a TLD: ambiguous, read as a domain
		{"mimikatz.EXE", Filename, "mimikatz.exe"},
		{"*.hta", Filename, "*.hta"},
		{"payload?.dll", Filename, "payload?.dll"},
		{`C:\Windows\Temp\x.ps1`, Filename, "x.ps1"},
		{"hxxp://evil[.]com/a.exe", URL, "http://evil.com/a.exe"},
		{"cdn.bad-actor.co.uk", Domain, "cdn.bad-actor.co.uk"},
	}
	for _, tc := range tests {
		typ, got, err := Detect(tc.in)
		if err != nil || typ != tc.wantType || got != tc.want {
			t.Errorf("Detect(%q) = %s %q, %v; want %s %q", tc.in, typ, got, err, tc.wantType, tc.want)
		}
	}
	for _, bad := range []string{"", "notanindicator", "1234567890abcdef", "999.1.1.1", "a b", "*.*", strings.Repeat("a", 3000)} {
		if typ, got, err := Detect(bad); err == nil {
			t.Errorf("Detect(%q) = %s %q, want an error", bad, typ, got)
		}
	}
}

func TestListValidate(t *testing.T) {
	good := List{Name: "APT", Level: "critical", Indicators: []Indicator{{Type: Domain, Value: "evil.com"}}}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	tests := []struct {
		name string
		l    List
		want string
	}{
		{"NoName", List{Name: " "}, "needs a name"},
		{"BadLevel", List{Name: "x", Level: "urgent"}, "level"},
		{"NotNormalised", List{Name: "x", Indicators: []Indicator{{Type: Domain, Value: "Evil.com"}}}, "indicator 1: indicator \"Evil.com\" is not normalised"},
		{"BadType", List{Name: "x", Indicators: []Indicator{{Type: Domain, Value: "evil.com"}, {Type: "ja3", Value: "x"}}}, "indicator 2: unknown indicator type"},
		{"LongDescription", List{Name: "x", Indicators: []Indicator{{Type: Domain, Value: "evil.com", Description: strings.Repeat("d", MaxDescription+1)}}}, "description longer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.l.Validate()
			var qe *quarry.Error
			if !errors.As(err, &qe) || qe.Code != quarry.EINVALID || !strings.Contains(qe.Message, tc.want) {
				t.Fatalf("Validate() = %v, want EINVALID containing %q", err, tc.want)
			}
		})
	}
}

func TestNewIndicatorDescription(t *testing.T) {
	ind, err := NewIndicator("", "evil.com", "  line one\nline\ttwo  ")
	if err != nil || ind.Description != "line one line two" {
		t.Fatalf("NewIndicator description = %q, %v; want %q", ind.Description, err, "line one line two")
	}
	ind, err = NewIndicator(Domain, "evil.com", strings.Repeat("é", 2000))
	if err != nil || len(ind.Description) > MaxDescription || !strings.HasSuffix(ind.Description, "…") {
		t.Fatalf("long description: len %d, %v; want at most %d bytes ending in …", len(ind.Description), err, MaxDescription)
	}
	if err := ind.Validate(); err != nil {
		t.Errorf("Validate() of a NewIndicator result = %v", err)
	}
}
