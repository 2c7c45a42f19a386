package quarry

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"
)

// Acquisition states (design.md). The happy path runs queued → waiting_for_slot → launching →
// collecting → uploading → received → processing → completed; offline_pending, failed,
// cancelled and expired are the side exits.
const (
	AcquisitionQueued         = "queued"
	AcquisitionWaitingForSlot = "waiting_for_slot"
	AcquisitionLaunching      = "launching" // the Live Response action is running
	AcquisitionCollecting     = "collecting"
	AcquisitionUploading      = "uploading"
	AcquisitionReceived       = "received" // the package arrived and its hash matched
	AcquisitionProcessing     = "processing"
	AcquisitionCompleted      = "completed"
	AcquisitionOfflinePending = "offline_pending"
	AcquisitionFailed         = "failed" // Error says why, in words
	AcquisitionCancelled      = "cancelled"
	AcquisitionExpired        = "expired"
)

// Acquisition sources: through an XDR connection, or a collector an analyst ran by hand.
const (
	SourceXDR    = "xdr"
	SourceManual = "manual"
)

// acquisitionTransitions lists, for each state, the states it may move to. The terminal states
// (completed, failed, cancelled, expired) end the collection: only processing leaves completed
// or failed again, when an analyst reprocesses the package that was received. Collector-driven moves may skip ahead
// (a collector started by hand reports "uploading" without the server having seen
// "collecting"), so the forward states of the collection are reachable from every earlier one.
// The scheduler moves to launching just before it starts the Live Response action (the collector
// may enrol before the call returns) and back to waiting_for_slot when the platform refuses it.
var acquisitionTransitions = map[string][]string{
	AcquisitionQueued:         {AcquisitionWaitingForSlot, AcquisitionLaunching, AcquisitionOfflinePending, AcquisitionCollecting, AcquisitionFailed, AcquisitionCancelled, AcquisitionExpired},
	AcquisitionWaitingForSlot: {AcquisitionLaunching, AcquisitionOfflinePending, AcquisitionFailed, AcquisitionCancelled, AcquisitionExpired},
	AcquisitionOfflinePending: {AcquisitionWaitingForSlot, AcquisitionLaunching, AcquisitionFailed, AcquisitionCancelled, AcquisitionExpired},
	AcquisitionLaunching:      {AcquisitionWaitingForSlot, AcquisitionCollecting, AcquisitionUploading, AcquisitionReceived, AcquisitionOfflinePending, AcquisitionFailed, AcquisitionCancelled, AcquisitionExpired},
	AcquisitionCollecting:     {AcquisitionUploading, AcquisitionReceived, AcquisitionFailed, AcquisitionCancelled, AcquisitionExpired},
	AcquisitionUploading:      {AcquisitionReceived, AcquisitionFailed, AcquisitionCancelled, AcquisitionExpired},
	AcquisitionReceived:       {AcquisitionProcessing, AcquisitionFailed},
	AcquisitionProcessing:     {AcquisitionCompleted, AcquisitionFailed},
	AcquisitionCompleted:      {AcquisitionProcessing},
	AcquisitionFailed:         {AcquisitionProcessing},
	AcquisitionCancelled:      nil,
	AcquisitionExpired:        nil,
}

// ValidAcquisitionState reports whether s is one of the acquisition states.
func ValidAcquisitionState(s string) bool {
	_, ok := acquisitionTransitions[s]
	return ok
}

// CanTransitionAcquisition reports whether an acquisition in state from may move to state to.
// Staying in the same state is not a transition.
func CanTransitionAcquisition(from, to string) bool {
	for _, s := range acquisitionTransitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// AcquisitionTerminal reports whether state ends the acquisition's collection: nothing but a
// reprocess of its package leaves it, so the host is free for a new acquisition.
func AcquisitionTerminal(state string) bool {
	switch state {
	case AcquisitionCompleted, AcquisitionFailed, AcquisitionCancelled, AcquisitionExpired:
		return true
	}
	return false
}

// Progress is what the collector last reported about its work.
type Progress struct {
	Phase      string `json:"phase"` // the collector's phase: starting, collecting, uploading, done, failed
	FilesDone  int64  `json:"files_done"`
	BytesDone  int64  `json:"bytes_done"`
	BytesTotal int64  `json:"bytes_total"`
}

// Validate checks the counters a collector reports.
func (p *Progress) Validate() error {
	switch p.Phase {
	case "", "starting", "collecting", "uploading", "done", "failed":
	default:
		return FieldError("phase", "Phase must be one of starting, collecting, uploading, done, failed.")
	}
	if p.FilesDone < 0 || p.BytesDone < 0 || p.BytesTotal < 0 {
		return FieldError("bytes_done", "Progress counters cannot be negative.")
	}
	return nil
}

// StateChange is one entry of an acquisition's history.
type StateChange struct {
	State string    `json:"state"`
	At    time.Time `json:"at"`
}

// Acquisition is one collection of one host for one project: its state, the collector's
// progress, and the evidence it produced. Every state change is kept in History.
type Acquisition struct {
	ID              int64         `json:"id"`
	ProjectID       int64         `json:"project_id"`
	ConnectionID    *int64        `json:"connection_id"` // nil for a manual collection
	HostID          string        `json:"host_id"`
	HostName        string        `json:"host_name"`
	Source          string        `json:"source"`
	Profile         string        `json:"profile"`
	State           string        `json:"state"`
	Error           string        `json:"error"`
	Progress        Progress      `json:"progress"`
	EvidenceID      *int64        `json:"evidence_id"`
	LastHeartbeatAt *time.Time    `json:"last_heartbeat_at,omitempty"`
	CreatedBy       int64         `json:"created_by"`
	CreatedAt       time.Time     `json:"created_at"`
	UpdatedAt       time.Time     `json:"updated_at"`
	History         []StateChange `json:"history"`
}

// Validate checks the fields a caller sets when creating an acquisition; it trims names.
func (a *Acquisition) Validate() error {
	a.HostID = strings.TrimSpace(a.HostID)
	a.HostName = strings.TrimSpace(a.HostName)
	a.Profile = strings.TrimSpace(a.Profile)
	if a.ProjectID <= 0 {
		return FieldError("project_id", "An acquisition belongs to a project.")
	}
	switch a.Source {
	case SourceXDR:
		if a.ConnectionID == nil {
			return FieldError("connection_id", "An XDR acquisition needs a connection.")
		}
	case SourceManual:
	default:
		return FieldError("source", "Source must be xdr or manual.")
	}
	if a.HostName == "" || utf8.RuneCountInString(a.HostName) > 255 {
		return FieldError("host_name", "Host name must be 1 to 255 characters.")
	}
	if utf8.RuneCountInString(a.HostID) > 255 {
		return FieldError("host_id", "Host ID must be at most 255 characters.")
	}
	if a.Profile == "" {
		a.Profile = "triage"
	}
	if len(a.Profile) > 100 {
		return FieldError("profile", "Profile must be at most 100 characters.")
	}
	if a.State == "" {
		a.State = AcquisitionQueued
	}
	if !ValidAcquisitionState(a.State) {
		return FieldError("state", "Unknown acquisition state %q.", a.State)
	}
	return nil
}

// AcquisitionFilter selects acquisitions, newest first; zero fields match everything.
type AcquisitionFilter struct {
	ProjectID *int64
	State     *string
	Offset    int
	Limit     int
}

// AcquisitionTransition moves an acquisition to State, optionally recording an error (for
// failed), its evidence (for received) or a heartbeat time.
type AcquisitionTransition struct {
	State      string
	Error      string
	EvidenceID *int64
}

// AcquisitionService stores acquisitions and their history.
//
// FindAcquisitionByID returns ENOTFOUND when there is none. TransitionAcquisition returns
// ECONFLICT when the table of transitions forbids the move (the message names both states);
// moving to the state the acquisition is already in is a no-op. UpdateAcquisitionProgress
// records a heartbeat's progress and time without changing the state.
type AcquisitionService interface {
	CreateAcquisition(ctx context.Context, a *Acquisition) error
	FindAcquisitionByID(ctx context.Context, id int64) (*Acquisition, error)
	FindAcquisitions(ctx context.Context, filter AcquisitionFilter) ([]*Acquisition, int, error)
	TransitionAcquisition(ctx context.Context, id int64, t AcquisitionTransition) (*Acquisition, error)
	UpdateAcquisitionProgress(ctx context.Context, id int64, p Progress, at time.Time) error
}
