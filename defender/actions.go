package defender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// MachineAction is the asynchronous job behind Live Response, isolation, scans and investigation
// packages (mde-api.md §4.2).
type MachineAction struct {
	// ODataContext is kept so a single-entity answer round-trips; callers can ignore it.
	ODataContext            string           `json:"@odata.context,omitempty"`
	ID                      string           `json:"id"`
	Type                    string           `json:"type"`
	Title                   string           `json:"title"`
	Requestor               string           `json:"requestor"`
	RequestorComment        string           `json:"requestorComment"`
	Status                  ActionStatus     `json:"status"`
	MachineID               string           `json:"machineId"`
	ComputerDNSName         string           `json:"computerDnsName"`
	CreationDateTimeUTC     Time             `json:"creationDateTimeUtc"`
	LastUpdateDateTimeUTC   Time             `json:"lastUpdateDateTimeUtc"`
	CancellationRequestor   string           `json:"cancellationRequestor"`
	CancellationComment     string           `json:"cancellationComment"`
	CancellationDateTimeUTC Time             `json:"cancellationDateTimeUtc"`
	ErrorHResult            int64            `json:"errorHResult"`
	Scope                   string           `json:"scope"`
	ExternalID              string           `json:"externalId"`
	RequestSource           string           `json:"requestSource"`
	RelatedFileInfo         *RelatedFileInfo `json:"relatedFileInfo"`
	Commands                []ActionCommand  `json:"commands"`
	TroubleshootInfo        string           `json:"troubleshootInfo"`
}

// RelatedFileInfo names the file an action is about (stop-and-quarantine).
type RelatedFileInfo struct {
	FileIdentifier     string `json:"fileIdentifier"`
	FileIdentifierType string `json:"fileIdentifierType"`
}

// ActionCommand is the progress of one Live Response command inside an action.
type ActionCommand struct {
	Index         int    `json:"index"`
	StartTime     Time   `json:"startTime"`
	EndTime       Time   `json:"endTime"`
	CommandStatus string `json:"commandStatus"`
	// Errors are kept raw: their element type is not documented (strings observed, objects tolerated).
	Errors  []json.RawMessage `json:"errors"`
	Command Command           `json:"command"`
}

// ErrorText returns the command's errors as text, strings unquoted and anything else as its JSON.
func (ac ActionCommand) ErrorText() []string {
	var out []string
	for _, raw := range ac.Errors {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			out = append(out, s)
		} else {
			out = append(out, string(raw))
		}
	}
	return out
}

// Command statuses (commandStatus).
const (
	CommandCreated   = "Created"
	CommandCompleted = "Completed"
	CommandFailed    = "Failed"
)

// ActionStatus is a machine action's status.
type ActionStatus string

// Action statuses; note the service's double-L "Cancelled".
const (
	ActionPending    ActionStatus = "Pending"
	ActionInProgress ActionStatus = "InProgress"
	ActionSucceeded  ActionStatus = "Succeeded"
	ActionFailed     ActionStatus = "Failed"
	ActionTimeOut    ActionStatus = "TimeOut"
	ActionCancelled  ActionStatus = "Cancelled"
)

// Final reports whether the status can no longer change.
func (s ActionStatus) Final() bool {
	switch s {
	case ActionSucceeded, ActionFailed, ActionTimeOut, ActionCancelled:
		return true
	}
	return false
}

// Action types (type).
const (
	ActionTypeLiveResponse                = "LiveResponse"
	ActionTypeCollectInvestigationPackage = "CollectInvestigationPackage"
)

// IsLiveResponse reports whether the action is a Live Response request; some answers spell the type
// "Live Response" (mde-api.md §4.2).
func (a *MachineAction) IsLiveResponse() bool {
	return strings.EqualFold(strings.ReplaceAll(a.Type, " ", ""), ActionTypeLiveResponse)
}

// Started reports whether the device picked the action up: a status past Pending or a command with a
// start time.
func (a *MachineAction) Started() bool {
	if a.Status == ActionInProgress || a.Status == ActionSucceeded || a.Status == ActionFailed {
		return true
	}
	for _, c := range a.Commands {
		if !c.StartTime.IsZero() || c.CommandStatus == CommandCompleted || c.CommandStatus == CommandFailed {
			return true
		}
	}
	return false
}

// ActionError returns nil for a successful or unfinished action and otherwise an error naming why it
// ended: ErrActionFailed (with the command errors), ErrActionCancelled, ErrActionTimedOut, or
// ErrDeviceOffline together with ErrActionTimedOut when the device never picked it up.
func ActionError(a *MachineAction) error {
	switch a.Status {
	case ActionFailed:
		var msgs []string
		for _, c := range a.Commands {
			if c.CommandStatus == CommandFailed {
				msgs = append(msgs, fmt.Sprintf("command %d (%s): %s", c.Index, c.Command.Type, strings.Join(c.ErrorText(), "; ")))
			}
		}
		if len(msgs) == 0 {
			return fmt.Errorf("%w: action %s", ErrActionFailed, a.ID)
		}
		return fmt.Errorf("%w: action %s: %s", ErrActionFailed, a.ID, strings.Join(msgs, ", "))
	case ActionCancelled:
		return fmt.Errorf("%w: action %s", ErrActionCancelled, a.ID)
	case ActionTimeOut:
		if !a.Started() {
			return fmt.Errorf("%w: %w: action %s was never picked up by the device", ErrDeviceOffline, ErrActionTimedOut, a.ID)
		}
		return fmt.Errorf("%w: action %s", ErrActionTimedOut, a.ID)
	}
	return nil
}

// ActionQuery selects machine actions. Empty fields do not filter. Filter is added as is.
type ActionQuery struct {
	MachineID    string
	Status       ActionStatus
	Type         string
	CreatedAfter time.Time
	Filter       string
	Page
}

func (q ActionQuery) filter() string {
	var cl []string
	if q.MachineID != "" {
		cl = append(cl, "machineId eq "+quote(q.MachineID))
	}
	if q.Type != "" {
		cl = append(cl, "type eq "+quote(q.Type))
	}
	if q.Status != "" {
		cl = append(cl, "status eq "+quote(string(q.Status)))
	}
	if !q.CreatedAfter.IsZero() {
		cl = append(cl, "creationDateTimeUtc ge "+filterTime(q.CreatedAfter))
	}
	return and(append(cl, q.Filter)...)
}

// ListMachineActions returns the actions matching q (newest first, as the service orders them).
func (c *Client) ListMachineActions(ctx context.Context, q ActionQuery) ([]MachineAction, error) {
	r := request{fam: famListActions, method: http.MethodGet, path: "/api/machineactions", query: url.Values{}}
	if f := q.filter(); f != "" {
		r.query.Set("$filter", f)
	}
	return list(ctx, c, r, q.Page, func(a MachineAction) string { return a.ID })
}

// GetMachineAction returns one action. Unknown ids give ErrNotFound.
func (c *Client) GetMachineAction(ctx context.Context, id string) (*MachineAction, error) {
	return getOne[MachineAction](ctx, c, famGetAction, "/api/machineactions", id)
}

// CancelMachineAction cancels an action that is not final yet and returns it as updated. Cancelling is
// idempotent in effect, so a lost answer is retried; if the retry is refused because the first attempt
// already cancelled the action, the cancelled action is returned.
func (c *Client) CancelMachineAction(ctx context.Context, id, comment string) (*MachineAction, error) {
	if id == "" {
		return nil, errors.New("defender: cancel machine action: empty id")
	}
	if comment == "" {
		comment = "cancelled by Quarry"
	}
	var a MachineAction
	r := request{fam: famCancelAction, method: http.MethodPost, path: "/api/machineactions/" + url.PathEscape(id) + "/cancel",
		body: commentBody(comment), contentType: "application/json", retry: retrySafe}
	err := c.call(ctx, r, &a)
	if err == nil {
		return &a, nil
	}
	if errors.Is(err, ErrBadRequest) {
		if cur, gerr := c.GetMachineAction(ctx, id); gerr == nil && cur.Status == ActionCancelled {
			return cur, nil
		}
	}
	return nil, err
}

// WaitOptions shape WaitForAction.
type WaitOptions struct {
	// Interval between polls (default 10s, before Limits.TimeScale). Polls also count against the
	// get-machine-action limit, which the client enforces.
	Interval time.Duration
	// PendingTimeout, when set, gives up with ErrDeviceOffline on an action still Pending this long
	// after the wait began (before Limits.TimeScale). The request stays queued in the service (up to 3
	// days) and can be polled again or cancelled.
	PendingTimeout time.Duration
}

// WaitForAction polls an action until it is final and returns it with ActionError's verdict.
func (c *Client) WaitForAction(ctx context.Context, id string, opts WaitOptions) (*MachineAction, error) {
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	start := c.now()
	for {
		a, err := c.GetMachineAction(ctx, id)
		if err != nil {
			return nil, err
		}
		if a.Status.Final() {
			return a, ActionError(a)
		}
		if opts.PendingTimeout > 0 && a.Status == ActionPending && !a.Started() &&
			c.now().Sub(start) >= c.limits.scaled(opts.PendingTimeout) {
			return a, fmt.Errorf("%w: action %s still pending after %s", ErrDeviceOffline, id, opts.PendingTimeout)
		}
		if err := c.sleep(ctx, c.limits.scaled(opts.Interval)); err != nil {
			return a, fmt.Errorf("defender: wait for action %s: %w", id, err)
		}
	}
}

// commentBody is the {"Comment": ...} body of the action endpoints (PascalCase, as the service requires).
func commentBody(comment string) []byte {
	b, _ := json.Marshal(struct {
		Comment string `json:"Comment"`
	}{comment})
	return b
}
