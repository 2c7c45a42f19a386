package defendersim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry/defendersim/odata"
)

// Action statuses (§4.2). Note the double L of Cancelled.
const (
	statusPending    = "Pending"
	statusInProgress = "InProgress"
	statusSucceeded  = "Succeeded"
	statusFailed     = "Failed"
	statusTimeOut    = "TimeOut"
	statusCancelled  = "Cancelled"
)

func isFinal(status string) bool {
	return status != statusPending && status != statusInProgress
}

// LRCommand is a Live Response command as requested and echoed back in `commands[].command`.
type LRCommand struct {
	Type   string    `json:"type"`
	Params []LRParam `json:"params"`
}

// LRParam is one `{key, value}` parameter of a command.
type LRParam struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

func (c LRCommand) param(key string) (string, bool) {
	for _, p := range c.Params {
		if p.Key == key {
			return p.Value, true
		}
	}
	return "", false
}

// CommandState is one element of an action's `commands` (§4.2).
type CommandState struct {
	Index         int       `json:"index"`
	StartTime     *string   `json:"startTime"`
	EndTime       *string   `json:"endTime"`
	CommandStatus string    `json:"commandStatus"`
	Errors        []string  `json:"errors"`
	Command       LRCommand `json:"command"`
}

// MachineAction is a machine action as the API returns it (§4.2, §11.5).
type MachineAction struct {
	ID                      string         `json:"id"`
	Type                    string         `json:"type"`
	Title                   *string        `json:"title"`
	Requestor               string         `json:"requestor"`
	RequestorComment        string         `json:"requestorComment"`
	Status                  string         `json:"status"`
	MachineID               string         `json:"machineId"`
	ComputerDNSName         string         `json:"computerDnsName"`
	CreationDateTimeUtc     string         `json:"creationDateTimeUtc"`
	LastUpdateDateTimeUtc   string         `json:"lastUpdateDateTimeUtc"`
	CancellationRequestor   *string        `json:"cancellationRequestor"`
	CancellationComment     *string        `json:"cancellationComment"`
	CancellationDateTimeUtc *string        `json:"cancellationDateTimeUtc"`
	ErrorHResult            int            `json:"errorHResult"`
	Scope                   *string        `json:"scope"`
	ExternalID              *string        `json:"externalId"`
	RequestSource           string         `json:"requestSource"`
	RelatedFileInfo         any            `json:"relatedFileInfo"`
	Commands                []CommandState `json:"commands"`
	TroubleshootInfo        *string        `json:"troubleshootInfo"`
}

// action is a machine action and its run state; fields are guarded by Sim.mu.
type action struct {
	ma      MachineAction
	dev     *device
	created time.Time
	updated time.Time
	cmds    []*cmdRun
	done    chan struct{} // closed when the action reaches a final status
	pkgBlob string        // investigation package blob path, once collected
}

type cmdRun struct {
	cmd    LRCommand
	start  *time.Time
	end    *time.Time
	status string
	errors []string
	blob   string // result blob path (RunScript, GetFile)
}

func (a *action) isLR() bool { return a.ma.Type == "LiveResponse" }

// render returns the API view of a. Caller holds s.mu.
func (a *action) render() MachineAction {
	m := a.ma
	m.CreationDateTimeUtc = mdeTime(a.created)
	m.LastUpdateDateTimeUtc = mdeTime(a.updated)
	m.Commands = make([]CommandState, 0, len(a.cmds))
	for i, c := range a.cmds {
		m.Commands = append(m.Commands, CommandState{
			Index: i, StartTime: mdeTimePtr(c.start), EndTime: mdeTimePtr(c.end),
			CommandStatus: c.status, Errors: append([]string{}, c.errors...), Command: c.cmd,
		})
	}
	return m
}

var commandOrder = map[string]int{"PutFile": 0, "RunScript": 1, "GetFile": 2}

// parseCommands validates the `Commands` array of a runliveresponse body (§5.1).
func (s *Sim) parseCommands(raw json.RawMessage) ([]LRCommand, error) {
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, badRequest("InvalidRequestBody", "'Commands' must be an array of command objects")
	}
	if len(items) == 0 {
		return nil, badRequest("InvalidInput", "'Commands' must contain at least one command")
	}
	var out []LRCommand
	last := 0
	for i, item := range items {
		where := fmt.Sprintf(" in Commands[%d]", i)
		if err := checkKeys(item, []string{"type", "params"}, []string{"type"}, where); err != nil {
			return nil, err
		}
		var cmd LRCommand
		if err := json.Unmarshal(item["type"], &cmd.Type); err != nil {
			return nil, badRequest("InvalidRequestBody", "'type'%s must be a string", where)
		}
		canon := ""
		for name := range commandOrder {
			if strings.EqualFold(name, cmd.Type) {
				canon = name
			}
		}
		if canon == "" {
			return nil, badRequest("InvalidInput", "Unsupported command type '%s'%s; expected PutFile, RunScript or GetFile", cmd.Type, where)
		}
		cmd.Type = canon
		var params []map[string]json.RawMessage
		if p, ok := item["params"]; ok && string(p) != "null" {
			if err := json.Unmarshal(p, &params); err != nil {
				return nil, badRequest("InvalidRequestBody", "'params'%s must be an array of {key, value} objects", where)
			}
		}
		for j, p := range params {
			pw := fmt.Sprintf(" in Commands[%d].params[%d]", i, j)
			if err := checkKeys(p, []string{"key", "value"}, []string{"key", "value"}, pw); err != nil {
				return nil, err
			}
			var kv LRParam
			if json.Unmarshal(p["key"], &kv.Key) != nil || json.Unmarshal(p["value"], &kv.Value) != nil {
				return nil, badRequest("InvalidRequestBody", "'key' and 'value'%s must be strings", pw)
			}
			cmd.Params = append(cmd.Params, kv)
		}
		if cmd.Params == nil {
			cmd.Params = []LRParam{}
		}
		required, optional := map[string]string{"PutFile": "FileName", "RunScript": "ScriptName", "GetFile": "Path"}[canon], "Args"
		if v, ok := cmd.param(required); !ok || strings.TrimSpace(v) == "" {
			return nil, badRequest("MissingRequiredParameter", "%s needs the parameter '%s'%s", canon, required, where)
		}
		for _, p := range cmd.Params {
			if p.Key != required && !(canon == "RunScript" && p.Key == optional) {
				return nil, badRequest("InvalidInput", "Unknown parameter '%s' for %s%s", p.Key, canon, where)
			}
		}
		if !s.limits.AnyCommandOrder && commandOrder[canon] < last {
			return nil, badRequest("InvalidInput", "Commands must be ordered PutFile, RunScript, GetFile; %s cannot follow a later command type", canon)
		}
		last = commandOrder[canon]
		out = append(out, cmd)
	}
	return out, nil
}

func (s *Sim) runLiveResponse(c *call) error {
	body, err := decodeBody(c, []string{"Commands", "Comment"}, []string{"Commands"})
	if err != nil {
		return err
	}
	var comment string
	if raw, ok := body["Comment"]; ok && json.Unmarshal(raw, &comment) != nil {
		return badRequest("InvalidRequestBody", "'Comment' must be a string")
	}
	cmds, err := s.parseCommands(body["Commands"])
	if err != nil {
		return err
	}
	d := s.findDevice(c.vars[0])
	if d == nil {
		return notFound("Machine %s was not found", c.vars[0])
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.activeLocked(d, "LiveResponse") != nil {
		s.stats.RejectedActiveRequest++
		return badRequest("ActiveRequestAlreadyExists", "Action is already in progress")
	}
	if s.sessions >= s.limits.MaxSessions {
		s.stats.RejectedConcurrency++
		e := errf(http.StatusTooManyRequests, "TooManyRequests", "The maximum number of concurrent live response sessions (%d) has been reached", s.limits.MaxSessions)
		e.retryAfter = s.clock.real(30 * time.Second)
		return e
	}
	a := s.newActionLocked(c, d, "LiveResponse", comment, nil)
	for _, cmd := range cmds {
		a.cmds = append(a.cmds, &cmdRun{cmd: cmd, status: "Created"})
	}
	s.sessions++
	s.stats.SessionsStarted++
	s.stats.MaxConcurrentSessions = max(s.stats.MaxConcurrentSessions, s.sessions)
	s.goBackground(func() { s.drive(a) })
	writeJSON(c.w, http.StatusCreated, entity(c, "MachineActions/$entity", a.render()))
	return nil
}

// activeLocked returns the device's non-final action of type typ.
func (s *Sim) activeLocked(d *device, typ string) *action {
	for _, a := range s.actions {
		if a.dev == d && a.ma.Type == typ && !isFinal(a.ma.Status) {
			return a
		}
	}
	return nil
}

func (s *Sim) newActionLocked(c *call, d *device, typ, comment string, scope *string) *action {
	a := &action{
		ma: MachineAction{
			ID: newGUID(), Type: typ, Requestor: c.requestor(), RequestorComment: comment, Status: statusPending,
			MachineID: d.m.ID, ComputerDNSName: d.m.ComputerDNSName, RequestSource: "PublicApi", Scope: scope,
		},
		dev: d, created: c.now, updated: c.now, cmds: []*cmdRun{}, done: make(chan struct{}),
	}
	s.actions[a.ma.ID] = a
	return a
}

// simpleAction handles the non-LR actions of §8: one active request of a type per device.
func (s *Sim) simpleAction(typ string) func(*call) error {
	return func(c *call) error {
		allowed := []string{"Comment"}
		var scopeKey string
		switch typ {
		case "Isolate":
			scopeKey = "IsolationType"
		case "RunAntiVirusScan":
			scopeKey = "ScanType"
		}
		required := []string{"Comment"}
		if scopeKey != "" {
			allowed = append(allowed, scopeKey)
		}
		if typ == "RunAntiVirusScan" {
			required = append(required, scopeKey)
		}
		body, err := decodeBody(c, allowed, required)
		if err != nil {
			return err
		}
		var comment string
		if json.Unmarshal(body["Comment"], &comment) != nil {
			return badRequest("InvalidRequestBody", "'Comment' must be a string")
		}
		var scope *string
		if raw, ok := body[scopeKey]; ok && scopeKey != "" {
			var v string
			if json.Unmarshal(raw, &v) != nil {
				return badRequest("InvalidRequestBody", "'%s' must be a string", scopeKey)
			}
			valid := map[string][]string{"IsolationType": {"Full", "Selective", "UnManagedDevice"}, "ScanType": {"Quick", "Full"}}[scopeKey]
			if !slices.Contains(valid, v) {
				return badRequest("InvalidInput", "Invalid %s '%s'; expected one of %s", scopeKey, v, strings.Join(valid, ", "))
			}
			scope = &v
		} else if typ == "Isolate" {
			scope = ptr("Full")
		}
		d := s.findDevice(c.vars[0])
		if d == nil {
			return notFound("Machine %s was not found", c.vars[0])
		}
		if (typ == "Isolate" || typ == "Unisolate") && d.host.OS == "macos" {
			// macOS devices cannot be isolated through the API (#11102).
			return badRequest("OsPlatformNotSupported", "%s is not supported on %s devices", typ, d.m.OSPlatform)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.activeLocked(d, typ) != nil {
			s.stats.RejectedActiveRequest++
			return badRequest("ActiveRequestAlreadyExists", "Action is already in progress")
		}
		a := s.newActionLocked(c, d, typ, comment, scope)
		s.goBackground(func() { s.drive(a) })
		writeJSON(c.w, http.StatusCreated, entity(c, "MachineActions/$entity", a.render()))
		return nil
	}
}

// drive moves an action through its lifecycle (§5.6): Pending until the device is online (or the
// offline queue expires: TimeOut), then InProgress, then a final status.
func (s *Sim) drive(a *action) {
	if !s.waitForDevice(a) || !s.pause(a, s.clock.real(s.limits.PickupDelay)) {
		return
	}
	if !s.setStatus(a, statusInProgress) {
		return
	}
	switch a.ma.Type {
	case "LiveResponse":
		s.runCommands(a)
	case "CollectInvestigationPackage":
		if !s.pause(a, s.clock.real(s.limits.PackageDuration)) {
			return
		}
		blob, err := s.collectPackage(a)
		if err != nil {
			s.log.Error("defendersim: investigation package", "action", a.ma.ID, "err", err)
			s.finish(a, statusFailed, nil)
			return
		}
		s.finish(a, statusSucceeded, func() { a.pkgBlob = blob })
	default:
		if s.pause(a, s.clock.real(10*time.Second)) {
			s.finish(a, statusSucceeded, nil)
		}
	}
}

func (s *Sim) waitForDevice(a *action) bool {
	deadline := a.created.Add(s.clock.real(s.limits.OfflineQueue))
	poll := min(max(s.clock.real(10*time.Second), 2*time.Millisecond), 250*time.Millisecond)
	for {
		now := time.Now()
		if s.isOnline(a.dev, now) {
			return true
		}
		if !now.Before(deadline) {
			s.finish(a, statusTimeOut, nil)
			return false
		}
		if !s.pause(a, min(poll, deadline.Sub(now))) {
			return false
		}
	}
}

// pause waits d; false when the action was cancelled or the emulator is closing.
func (s *Sim) pause(a *action, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-a.done:
		return false
	case <-s.ctx.Done():
		return false
	}
}

func (s *Sim) setStatus(a *action, status string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if isFinal(a.ma.Status) {
		return false
	}
	a.ma.Status = status
	a.updated = time.Now()
	s.log.Debug("defendersim: action", "id", a.ma.ID, "type", a.ma.Type, "machine", a.dev.m.ComputerDNSName, "status", status)
	return true
}

// finish moves a to a final status unless it already has one; mutate runs under the lock.
func (s *Sim) finish(a *action, status string, mutate func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finishLocked(a, status, mutate)
}

func (s *Sim) finishLocked(a *action, status string, mutate func()) bool {
	if isFinal(a.ma.Status) {
		return false
	}
	if mutate != nil {
		mutate()
	}
	a.ma.Status = status
	a.updated = time.Now()
	s.log.Debug("defendersim: action", "id", a.ma.ID, "type", a.ma.Type, "machine", a.dev.m.ComputerDNSName, "status", status)
	close(a.done)
	if a.isLR() {
		s.sessions--
	}
	return true
}

// runCommands executes the LR commands in order; after a failure the rest are skipped and stay
// Created (§5.1).
func (s *Sim) runCommands(a *action) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() {
		select {
		case <-a.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	for _, c := range a.cmds {
		now := time.Now()
		s.mu.Lock()
		if isFinal(a.ma.Status) {
			s.mu.Unlock()
			return
		}
		c.start = &now
		a.updated = now
		s.mu.Unlock()

		blob, errs := s.execCommand(ctx, a, c.cmd)
		end := time.Now()
		s.mu.Lock()
		if isFinal(a.ma.Status) || ctx.Err() != nil {
			s.mu.Unlock()
			return
		}
		c.end = &end
		a.updated = end
		if len(errs) > 0 {
			c.status, c.errors = "Failed", errs
			s.finishLocked(a, statusFailed, nil)
			s.mu.Unlock()
			return
		}
		c.status, c.blob = "Completed", blob
		s.mu.Unlock()
	}
	s.finish(a, statusSucceeded, nil)
}

var actionSchema = odata.Schema{
	"id": odata.String, "status": odata.String, "machineId": odata.String, "type": odata.String,
	"requestor": odata.String, "creationDateTimeUtc": odata.Time,
}

func actionField(a *action) odata.Getter {
	return func(prop string) any {
		switch prop {
		case "id":
			return a.ma.ID
		case "status":
			return a.ma.Status
		case "machineId":
			return a.ma.MachineID
		case "type":
			return a.ma.Type
		case "requestor":
			return a.ma.Requestor
		case "creationDateTimeUtc":
			return wireTime(a.created)
		}
		return nil
	}
}

// listActions lists machine actions newest first (§2.3 ordering).
func (s *Sim) listActions(c *call) error {
	q, err := s.parseQuery(c, actionSchema)
	if err != nil {
		return err
	}
	s.mu.Lock()
	var matched []*action
	for _, a := range s.actions {
		if q.filter.Match(actionField(a)) {
			matched = append(matched, a)
		}
	}
	slices.SortFunc(matched, func(x, y *action) int {
		if c := y.created.Compare(x.created); c != 0 {
			return c
		}
		return strings.Compare(x.ma.ID, y.ma.ID)
	})
	items := make([]MachineAction, len(matched))
	for i, a := range matched {
		items[i] = a.render()
	}
	s.mu.Unlock()
	page, next := paginate(c, q, items)
	writeJSON(c.w, 200, collection(c, "MachineActions", page, next))
	return nil
}

func (s *Sim) getAction(c *call) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.actions[strings.ToLower(c.vars[0])]
	if a == nil {
		return notFound("Machine action %s was not found", c.vars[0])
	}
	writeJSON(c.w, 200, entity(c, "MachineActions/$entity", a.render()))
	return nil
}

func (s *Sim) cancelAction(c *call) error {
	body, err := decodeBody(c, []string{"Comment"}, []string{"Comment"})
	if err != nil {
		return err
	}
	var comment string
	if json.Unmarshal(body["Comment"], &comment) != nil {
		return badRequest("InvalidRequestBody", "'Comment' must be a string")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.actions[strings.ToLower(c.vars[0])]
	if a == nil {
		return notFound("Machine action %s was not found", c.vars[0])
	}
	if isFinal(a.ma.Status) {
		return badRequest("BadRequest", "Machine action %s is already %s and cannot be cancelled", a.ma.ID, a.ma.Status)
	}
	s.finishLocked(a, statusCancelled, func() {
		a.ma.CancellationRequestor = ptr(c.requestor())
		a.ma.CancellationComment = ptr(comment)
		a.ma.CancellationDateTimeUtc = ptr(mdeTime(c.now))
	})
	writeJSON(c.w, 200, entity(c, "MachineActions/$entity", a.render()))
	return nil
}

func (s *Sim) resultLink(c *call) error {
	arg := strings.ReplaceAll(c.vars[1], " ", "")
	key, val, ok := strings.Cut(arg, "=")
	idx, err := strconv.Atoi(val)
	if !ok || !strings.EqualFold(key, "index") || err != nil {
		return badRequest("BadRequest", "Expected GetLiveResponseResultDownloadLink(index=N), got (%s)", c.vars[1])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.actions[strings.ToLower(c.vars[0])]
	if a == nil {
		return notFound("Machine action %s was not found", c.vars[0])
	}
	if !a.isLR() {
		return badRequest("InvalidInput", "Machine action %s is not a live response action", a.ma.ID)
	}
	if idx < 0 || idx >= len(a.cmds) {
		return badRequest("InvalidInput", "Command index %d is out of range; the action has %d commands", idx, len(a.cmds))
	}
	cmd := a.cmds[idx]
	if cmd.cmd.Type == "PutFile" {
		return badRequest("InvalidInput", "Command %d is a PutFile command, which has no result", idx)
	}
	if cmd.status != "Completed" || cmd.blob == "" {
		return notFound("The result of command %d is not available (command status %s)", idx, cmd.status)
	}
	link := s.signBlob(cmd.blob, c.now.Add(s.clock.real(s.limits.ResultLinkTTL)))
	writeJSON(c.w, 200, map[string]any{"@odata.context": c.context("Edm.String"), "value": link})
	return nil
}

func (s *Sim) packageURI(c *call) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.actions[strings.ToLower(c.vars[0])]
	if a == nil || a.ma.Type != "CollectInvestigationPackage" {
		return notFound("Investigation package action %s was not found", c.vars[0])
	}
	if a.ma.Status != statusSucceeded || a.pkgBlob == "" {
		return notFound("The investigation package of action %s is not available (status %s)", a.ma.ID, a.ma.Status)
	}
	link := s.signBlob(a.pkgBlob, c.now.Add(s.clock.real(s.limits.PackageLinkTTL)))
	writeJSON(c.w, 200, map[string]any{"@odata.context": c.context("Edm.String"), "value": link})
	return nil
}
