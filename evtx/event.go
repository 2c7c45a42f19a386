// Package evtx reads and writes Windows XML event log files (.evtx).
//
// The reader decodes the file header, chunks, records and the binary XML
// (templates, substitutions, every value type) into Events, streaming with
// bounded memory; the writer (package evtx/evtxwriter) produces files that
// Windows tools and libevtx read. Nothing here imports server code: the
// collector, the processing pipeline, the Defender emulator and `quarry parse`
// all use it.
package evtx

import "time"

// Event is one event record: the System fields every Windows event has and
// its data, in document order. It is what the writer takes and what the
// reader's event API gives.
type Event struct {
	RecordID uint64    // EventRecordID
	Time     time.Time // TimeCreated/@SystemTime, UTC

	Provider        string // Provider/@Name
	ProviderGUID    string // Provider/@Guid, upper case, no braces
	EventSourceName string // Provider/@EventSourceName (classic providers)

	EventID       uint16
	Qualifiers    uint16 // EventID/@Qualifiers, meaningful when HasQualifiers
	HasQualifiers bool
	Version       uint8
	Level         uint8
	Task          uint16
	Opcode        uint8
	Keywords      uint64

	ActivityID        string // Correlation/@ActivityID, empty when absent
	RelatedActivityID string // Correlation/@RelatedActivityID

	ProcessID uint32 // Execution/@ProcessID
	ThreadID  uint32 // Execution/@ThreadID

	Channel  string
	Computer string
	UserID   string // Security/@UserID (a SID string), empty when absent

	// DataKind says where Data came from: "EventData" or "UserData"
	// (empty when the event has neither).
	DataKind string
	// UserDataName is the name of the single element under UserData
	// (for example "LogFileCleared"), empty for EventData.
	UserDataName string
	// Data is the event data as an ordered list of named values. Unnamed
	// EventData <Data> elements get the name "" and keep their position.
	Data []Field
}

// Field is one named value of the event data. Value holds the decoded Go
// value: string, the fixed-width integer and float types, bool, []byte,
// time.Time, a GUID or SID as string, or a slice of one of them for array
// types. Nested binary XML is rendered to its XML text.
//
// An array substitution in a <Data> element is usually given as Windows
// renders it: one Field per item, all with the element's name. Where the
// reader does not expand an array (the rules and the output budget are in
// expandArrays), the Field holds a slice, so a consumer must accept both.
type Field struct {
	Name  string
	Value any
}
