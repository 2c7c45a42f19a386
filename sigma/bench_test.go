package sigma

import (
	"path/filepath"
	"testing"

	"github.com/quarry-dfir/quarry"
)

// benchEvents are a Sysmon process creation, a network connection, a 4624 logon and a 4104 script
// block, the kinds of events a triage timeline holds most of.
func benchEvents() []*quarry.Event {
	ps := &quarry.Event{Source: "evtx", Message: "PowerShell 4104", Fields: map[string]any{"EventID": int64(4104),
		"Channel": "Microsoft-Windows-PowerShell/Operational", "ScriptBlockText": `Get-ChildItem -Path C:\Logs -Filter *.log | Remove-Item`}}
	logon := &quarry.Event{Source: "evtx", Message: "Security 4624", Fields: map[string]any{"EventID": int64(4624), "Channel": "Security",
		"TargetUserName": "alice", "TargetDomainName": "CORP", "LogonType": int64(3), "IpAddress": "10.1.2.3",
		"WorkstationName": "WS1", "AuthenticationPackageName": "Kerberos", "LogonProcessName": "Kerberos"}}
	net := sysmon1(map[string]any{"Image": `C:\Program Files\Google\Chrome\Application\chrome.exe`, "DestinationIp": "52.1.2.3",
		"DestinationPort": int64(443), "Initiated": "true", "User": `CORP\alice`})
	net.Fields["EventID"] = int64(3)
	return []*quarry.Event{
		sysmon1(map[string]any{"Image": `C:\Windows\System32\svchost.exe`, "CommandLine": `C:\Windows\system32\svchost.exe -k netsvcs -p -s Schedule`,
			"ParentImage": `C:\Windows\System32\services.exe`, "ParentCommandLine": `C:\Windows\system32\services.exe`,
			"OriginalFileName": "svchost.exe", "User": `NT AUTHORITY\SYSTEM`, "IntegrityLevel": "System", "CurrentDirectory": `C:\Windows\system32\`,
			"Hashes": "SHA256=0011223344556677889900AABBCCDDEEFF", "Product": "Microsoft® Windows® Operating System", "Company": "Microsoft Corporation"}),
		sysmon1(map[string]any{"Image": `C:\Program Files\Google\Chrome\Application\chrome.exe`,
			"CommandLine": `"C:\Program Files\Google\Chrome\Application\chrome.exe" --type=renderer --lang=en-US --renderer-client-id=42`,
			"ParentImage": `C:\Program Files\Google\Chrome\Application\chrome.exe`, "User": `CORP\alice`, "IntegrityLevel": "Medium"}),
		net, logon, ps,
	}
}

// BenchmarkMatch runs the corpus's Windows rules on typical events.
func BenchmarkMatch(b *testing.B) {
	rs, _, err := LoadDirs(filepath.Join(corpusDir(b), "rules", "windows"))
	if err != nil {
		b.Fatal(err)
	}
	evs := benchEvents()
	var buf []quarry.Detection
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		buf = rs.AppendMatches(buf[:0], evs[i%len(evs)])
	}
}

func BenchmarkMatchNaive(b *testing.B) {
	rs, _, err := LoadDirs(filepath.Join(corpusDir(b), "rules", "windows"))
	if err != nil {
		b.Fatal(err)
	}
	evs := benchEvents()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		rs.MatchNaive(evs[i%len(evs)])
	}
}
