// Package evtxexporttest runs Debian's evtxexport (libevtx-utils), the reference reader, on an EVTX
// file and decodes what it prints, so tests can check written logs against an independent reader.
package evtxexporttest

import (
	"bytes"
	"encoding/xml"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Event is one event as evtxexport prints it in XML: every value is the reader's rendering.
type Event struct {
	System struct {
		Provider struct {
			Name            string `xml:",attr"`
			Guid            string `xml:",attr"`
			EventSourceName string `xml:",attr"`
		}
		EventID struct {
			Qualifiers string `xml:",attr"`
			Value      string `xml:",chardata"`
		}
		Version, Level, Task, Opcode, Keywords string
		TimeCreated                            struct {
			SystemTime string `xml:",attr"`
		}
		EventRecordID string
		Correlation   struct {
			ActivityID        string `xml:",attr"`
			RelatedActivityID string `xml:",attr"`
		}
		Execution struct {
			ProcessID string `xml:",attr"`
			ThreadID  string `xml:",attr"`
		}
		Channel, Computer string
		Security          struct {
			UserID string `xml:",attr"`
		}
	}
	EventData *struct {
		Data []Value
	}
	UserData *struct {
		Inner struct {
			XMLName xml.Name
			Xmlns   string  `xml:"xmlns,attr"`
			Fields  []Value `xml:",any"`
		} `xml:",any"`
	}
}

// Value is a Data element (Name attribute) or a UserData child (element name in XMLName).
type Value struct {
	XMLName xml.Name
	Name    string `xml:"Name,attr"`
	Value   string `xml:",chardata"`
}

// Data returns the event's data as name/value pairs in order, UserData children named by element.
func (e Event) Data() []Value {
	switch {
	case e.EventData != nil:
		return e.EventData.Data
	case e.UserData != nil:
		out := make([]Value, len(e.UserData.Inner.Fields))
		for i, f := range e.UserData.Inner.Fields {
			out[i] = Value{Name: f.XMLName.Local, Value: f.Value}
		}
		return out
	}
	return nil
}

// Get returns the value of the first data field named name.
func (e Event) Get(name string) string {
	for _, v := range e.Data() {
		if v.Name == name {
			return v.Value
		}
	}
	return ""
}

// Run runs evtxexport -f xml on path and returns the events it printed. It fails the test on any error
// message: libevtx reports bad checksums and unreadable records on stderr and carries on. Without
// evtxexport the test is skipped, or fails when CI=true.
func Run(tb testing.TB, path string) []Event {
	tb.Helper()
	bin, err := exec.LookPath("evtxexport")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal("evtxexport missing (apt-get install libevtx-utils)")
		}
		tb.Skip("evtxexport missing (apt-get install libevtx-utils)")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "-f", "xml", path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("evtxexport %s: %v\n%s", path, err, stderr.String())
	}
	if s := strings.ToLower(stderr.String()); strings.Contains(s, "checksum") || strings.Contains(s, "unable to") {
		tb.Fatalf("evtxexport %s complained:\n%s", path, stderr.String())
	}
	// The output is a banner line, then one Event document after another.
	out := stdout.String()
	if i := strings.Index(out, "<Event"); i >= 0 {
		out = out[i:]
	} else {
		out = ""
	}
	var root struct {
		Events []Event `xml:"Event"`
	}
	if err := xml.NewDecoder(strings.NewReader("<root>" + out + "</root>")).Decode(&root); err != nil {
		tb.Fatalf("evtxexport output for %s is not XML: %v", path, err)
	}
	return root.Events
}
