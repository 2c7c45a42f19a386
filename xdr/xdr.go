// Package xdr defines how Quarry talks to an XDR platform (Microsoft Defender for Endpoint today,
// CrowdStrike and SentinelOne later): the Provider interface, the types it exchanges, the errors
// callers branch on, and the registry that providers join at start-up. It imports no provider.
package xdr

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// Provider is one XDR platform. Providers register themselves in init (see Register); callers
// look them up by ID and never import a provider package directly.
type Provider interface {
	// ID is the stable name stored with connections, e.g. "defender".
	ID() string
	// Name is what the UI shows, e.g. "Microsoft Defender for Endpoint".
	Name() string
	// Capabilities says what the platform can do and within which limits.
	Capabilities() Capabilities
	// Permissions lists what the platform's app registration must grant, and why.
	Permissions() []Permission
	// Clouds lists the deployments a connection can point at (commercial, government, …).
	Clouds() []Cloud
	// Open returns a client for one connection. It does no network I/O; errors are about the
	// configuration (EINVALID-worthy), named by field.
	Open(cfg Config) (Client, error)
}

// Client talks to one tenant of a platform with one set of credentials.
//
// Methods return errors that match the sentinels below with errors.Is (ErrThrottled,
// ErrBusy, …); anything else is a failure the caller reports as it is.
type Client interface {
	// Check verifies the connection end to end (token, permissions, a read of one host, the
	// script library) and explains in plain words what is wrong. It returns an error only when
	// ctx ends; a failed check is a result, not an error.
	Check(ctx context.Context) CheckResult
	// ListHosts returns the whole inventory in as few platform calls as the platform allows.
	ListHosts(ctx context.Context) ([]Host, error)
	// GetHost returns one host; ErrNotFound when the platform does not know it.
	GetHost(ctx context.Context, id string) (*Host, error)

	// PutScript stores a script in the platform's script library, replacing one of the same name.
	PutScript(ctx context.Context, s Script) error
	// DeleteScript removes a library script; ErrNotFound when it is not there.
	DeleteScript(ctx context.Context, name string) error
	// RunScript starts a library script on a host. ErrBusy when the host already has an active
	// session, ErrThrottled when the platform's limits refuse it for now.
	RunScript(ctx context.Context, hostID string, run ScriptRun) (*Action, error)
	// GetAction returns the current state of an action started by RunScript.
	GetAction(ctx context.Context, id string) (*Action, error)
	// FindActiveAction returns the host's action that is pending or running, or ErrNotFound.
	FindActiveAction(ctx context.Context, hostID string) (*Action, error)
	// CancelAction asks the platform to stop an action; the comment is recorded there.
	CancelAction(ctx context.Context, id, comment string) error
	// ScriptOutput returns what a finished RunScript action printed, and its exit code.
	ScriptOutput(ctx context.Context, actionID string) (*ScriptOutput, error)

	// ListAlerts returns alerts updated at or after since, oldest update first.
	ListAlerts(ctx context.Context, since time.Time) ([]Alert, error)
}

// AlertCommenter is an optional ability of a Client (found by type assertion): adding a comment
// to one of the platform's alerts, e.g. a link to the acquisition a detection rule started. It
// returns ErrNotFound for an unknown alert. A comment is never retried after a lost answer, so
// that it is not added twice.
type AlertCommenter interface {
	CommentAlert(ctx context.Context, alertID, comment string) error
}

// Config is a connection's settings as a provider needs them, the secret already unsealed.
type Config struct {
	TenantID     string
	ClientID     string
	ClientSecret string
	Cloud        string // an ID from Provider.Clouds, or "custom" with the URLs below
	APIURL       string // custom API base URL (an emulator, a private endpoint)
	AuthorityURL string // custom sign-in authority
	CACertPEM    []byte // extra CA to trust for a custom endpoint
	HTTPClient   *http.Client
	Logger       *slog.Logger
	// TimeScale speeds up the provider's own rate windows, backoff and polling by this factor,
	// to match an emulator run with the same scale. 0 or 1 is real time; only tests and
	// benchmarks set it.
	TimeScale float64
}

// Capabilities describe a platform and the limits that shape how Quarry uses it.
type Capabilities struct {
	RunScript             bool          // can run a script on a host (live response)
	ScriptOS              []string      // OS families RunScript supports: windows, linux, macos
	Alerts                bool          // ListAlerts works
	MaxConcurrentSessions int           // per tenant
	LaunchesPerMinute     int           // RunScript calls per minute per tenant
	ScriptTimeout         time.Duration // a running script is killed after this
	OfflineQueue          time.Duration // how long a request for an offline host waits
	MaxScriptBytes        int64         // largest library file
}

// Permission is one right the app registration needs.
type Permission struct {
	Name    string `json:"name"`
	Purpose string `json:"purpose"`
}

// Cloud is a deployment of the platform.
type Cloud struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	APIURL       string `json:"api_url"`
	AuthorityURL string `json:"authority_url"`
}

// CheckResult is the outcome of Client.Check, written for the person who set the connection up.
type CheckResult struct {
	OK bool `json:"ok"`
	// SignedIn reports whether the credentials themselves were accepted. A check that signed
	// in but found missing permissions describes a connection worth keeping and fixing; one
	// that could not sign in describes wrong credentials.
	SignedIn bool     `json:"signed_in"`
	Granted  []string `json:"granted"`
	Missing  []string `json:"missing"`
	Message  string   `json:"message"`
	// Steps records each stage of the check (sign-in, permissions, hosts, library) and its result.
	Steps []CheckStep `json:"steps,omitempty"`
}

// CheckStep is one stage of a connection check.
type CheckStep struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Message string `json:"message,omitempty"`
}

// Host is a machine the platform manages.
type Host struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	OS        string    `json:"os"` // family: windows, linux, macos, other
	OSVersion string    `json:"os_version"`
	Arch      string    `json:"arch,omitempty"` // amd64, arm64, 386
	Online    bool      `json:"online"`
	LastSeen  time.Time `json:"last_seen"`
	IP        string    `json:"ip"`
	Health    string    `json:"health"` // the platform's words, e.g. Active, Inactive, ImpairedCommunication
	Risk      string    `json:"risk"`   // None, Low, Medium, High, Informational
	Tags      []string  `json:"tags"`
}

// Script is a file for the platform's script library.
type Script struct {
	Name        string
	Content     []byte
	Description string
	// ParametersDescription documents the arguments RunScript passes.
	ParametersDescription string
}

// ScriptRun says which library script to run and with what arguments.
type ScriptRun struct {
	Script  string
	Args    string
	Comment string // recorded on the platform, e.g. "Quarry acquisition 42"
}

// Action states, the same for every provider.
const (
	ActionPending    = "pending"
	ActionInProgress = "in_progress"
	ActionSucceeded  = "succeeded"
	ActionFailed     = "failed"
	ActionTimedOut   = "timed_out"
	ActionCancelled  = "cancelled"
)

// Action is a platform job started by RunScript.
type Action struct {
	ID        string    `json:"id"`
	HostID    string    `json:"host_id"`
	Status    string    `json:"status"`
	Error     string    `json:"error,omitempty"` // the platform's words when it failed
	Requestor string    `json:"requestor,omitempty"`
	Comment   string    `json:"comment,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Done reports whether the action reached a final state.
func (a *Action) Done() bool {
	switch a.Status {
	case ActionSucceeded, ActionFailed, ActionTimedOut, ActionCancelled:
		return true
	}
	return false
}

// ScriptOutput is what a RunScript action printed.
type ScriptOutput struct {
	Script   string `json:"script"`
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
}

// Alert is a detection raised by the platform.
type Alert struct {
	ID          string     `json:"id"`
	HostID      string     `json:"host_id"`
	HostName    string     `json:"host_name"`
	Title       string     `json:"title"`
	Description string     `json:"description"`
	Severity    string     `json:"severity"` // informational, low, medium, high
	Status      string     `json:"status"`
	Category    string     `json:"category"`
	Techniques  []string   `json:"techniques"` // ATT&CK ids, e.g. T1110
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	Evidence    []Evidence `json:"evidence"`
}

// Evidence is one entity an alert names.
type Evidence struct {
	Type   string `json:"type"` // file, process, ip, url, user, registry, …
	Value  string `json:"value"`
	SHA256 string `json:"sha256,omitempty"`
}
