package defender

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	mde "github.com/quarry-dfir/quarry/defender"
	"github.com/quarry-dfir/quarry/xdr"
)

// Client is a connection to one Defender for Endpoint tenant. It is safe for concurrent use.
type Client struct {
	api *mde.Client
}

// API returns the underlying Defender API client, for the calls xdr does not cover.
func (c *Client) API() *mde.Client { return c.api }

// ListHosts returns every machine of the tenant. The API client pages with $top=10000, so 10,000
// machines take one call and each further 10,000 one more.
func (c *Client) ListHosts(ctx context.Context) ([]xdr.Host, error) {
	ms, err := c.api.ListMachines(ctx, mde.MachineQuery{})
	if err != nil {
		return nil, translate("list machines", err)
	}
	now := time.Now()
	out := make([]xdr.Host, len(ms))
	for i := range ms {
		out[i] = hostOf(&ms[i], now)
	}
	return out, nil
}

// GetHost returns one machine by its Defender id; ErrNotFound when the tenant has no such machine.
func (c *Client) GetHost(ctx context.Context, id string) (*xdr.Host, error) {
	if id == "" {
		return nil, &xdr.Error{Kind: xdr.ErrNotFound, Message: "empty host id"}
	}
	m, err := c.api.GetMachine(ctx, id)
	if err != nil {
		return nil, translate("get machine "+id, err)
	}
	h := hostOf(m, time.Now())
	return &h, nil
}

// PutScript uploads s to the Live Response library, replacing a file of the same name. The entry is
// always marked as taking parameters, because Defender passes RunScript's Args only to such entries.
func (c *Client) PutScript(ctx context.Context, s xdr.Script) error {
	_, err := c.api.UploadLibraryFile(ctx, mde.LibraryUpload{
		FileName:              s.Name,
		Content:               s.Content,
		Description:           s.Description,
		ParametersDescription: s.ParametersDescription,
		HasParameters:         true,
		OverrideIfExists:      true,
	})
	return translate("upload library file "+s.Name, err)
}

// DeleteScript removes a file from the Live Response library; ErrNotFound when it is not there.
func (c *Client) DeleteScript(ctx context.Context, name string) error {
	return translate("delete library file "+name, c.api.DeleteLibraryFile(ctx, name))
}

// RunScript starts one RunScript command on a machine. ErrBusy when the machine already has a Live
// Response request pending or running, ErrThrottled over the tenant's limits, ErrOutcomeUnknown when
// the request may have landed but the client could not find out.
func (c *Client) RunScript(ctx context.Context, hostID string, run xdr.ScriptRun) (*xdr.Action, error) {
	a, err := c.api.RunLiveResponse(ctx, hostID, mde.LiveResponseRequest{
		Commands: []mde.Command{mde.RunScriptCommand(run.Script, run.Args)},
		Comment:  run.Comment,
	})
	if err != nil {
		return nil, translate("run script "+run.Script+" on machine "+hostID, err)
	}
	return actionOf(a), nil
}

// GetAction returns the state of a machine action.
func (c *Client) GetAction(ctx context.Context, id string) (*xdr.Action, error) {
	a, err := c.api.GetMachineAction(ctx, id)
	if err != nil {
		return nil, translate("get machine action "+id, err)
	}
	return actionOf(a), nil
}

// activeFilter selects actions that are not final, in one call instead of one per status.
const activeFilter = "status eq 'Pending' or status eq 'InProgress'"

// FindActiveAction returns the machine's newest Live Response action that is Pending or InProgress,
// or ErrNotFound. Other action types (isolation, scans) do not hold the machine's Live Response
// slot, so they are not reported.
func (c *Client) FindActiveAction(ctx context.Context, hostID string) (*xdr.Action, error) {
	if hostID == "" {
		return nil, &xdr.Error{Kind: xdr.ErrNotFound, Message: "empty host id"}
	}
	as, err := c.api.ListMachineActions(ctx, mde.ActionQuery{MachineID: hostID, Filter: activeFilter})
	if err != nil {
		return nil, translate("list machine actions of "+hostID, err)
	}
	var best *mde.MachineAction
	for i := range as {
		a := &as[i]
		if !a.IsLiveResponse() || a.Status.Final() {
			continue
		}
		if best == nil || a.CreationDateTimeUTC.After(best.CreationDateTimeUTC.Time) {
			best = a
		}
	}
	if best == nil {
		return nil, &xdr.Error{Kind: xdr.ErrNotFound, Message: "no Live Response action is pending or running on machine " + hostID}
	}
	return actionOf(best), nil
}

// CancelAction cancels a machine action; Defender requires a comment, so an empty one gets a default.
func (c *Client) CancelAction(ctx context.Context, id, comment string) error {
	_, err := c.api.CancelMachineAction(ctx, id, comment)
	return translate("cancel machine action "+id, err)
}

// ScriptOutput returns the result of the action's first RunScript command. It fails without asking
// for a download link when that command has not completed, because the service has no result then.
func (c *Client) ScriptOutput(ctx context.Context, actionID string) (*xdr.ScriptOutput, error) {
	a, err := c.api.GetMachineAction(ctx, actionID)
	if err != nil {
		return nil, translate("get machine action "+actionID, err)
	}
	var cmd *mde.ActionCommand
	for i := range a.Commands {
		if a.Commands[i].Command.Type == mde.CommandRunScript {
			cmd = &a.Commands[i]
			break
		}
	}
	switch {
	case cmd == nil:
		return nil, &xdr.Error{Kind: xdr.ErrNotFound, Message: "action " + actionID + " ran no script"}
	case cmd.CommandStatus == mde.CommandFailed:
		return nil, fmt.Errorf("defender: script output of action %s: the script failed: %s", actionID, strings.Join(cmd.ErrorText(), "; "))
	case cmd.CommandStatus != mde.CommandCompleted:
		return nil, fmt.Errorf("defender: script output of action %s: the script has not finished (action %s)", actionID, a.Status)
	}
	res, err := c.api.GetScriptResult(ctx, actionID, cmd.Index)
	if err != nil {
		return nil, translate("script output of action "+actionID, err)
	}
	name := res.ScriptName
	if name == "" {
		name = cmd.Command.Param("ScriptName")
	}
	return &xdr.ScriptOutput{Script: name, ExitCode: res.ExitCode, Stdout: res.ScriptOutput, Stderr: res.ScriptErrors}, nil
}

// ListAlerts returns the alerts updated at or after since, evidence included, oldest update first.
// The API filters on whole seconds, so alerts from earlier in since's second are dropped here.
func (c *Client) ListAlerts(ctx context.Context, since time.Time) ([]xdr.Alert, error) {
	as, err := c.api.ListAlerts(ctx, mde.AlertQuery{UpdatedSince: since, ExpandEvidence: true})
	if err != nil {
		return nil, translate("list alerts", err)
	}
	out := make([]xdr.Alert, 0, len(as))
	for i := range as {
		if as[i].LastUpdateTime.Before(since) {
			continue
		}
		out = append(out, alertOf(&as[i]))
	}
	return out, nil
}

// Check signs in, compares the token's permissions with those Quarry needs, reads one machine and
// lists the Live Response library, recording each step. It goes on after missing permissions so the
// user sees everything that is wrong at once; only a failed sign-in stops it.
//
// The steps use the same pieces as mde.Client.CheckConnection (GrantedRoles, MissingPermissionsFor,
// SignInErrorMessage) but report them one by one and add the library, which CheckConnection does
// not reach.
func (c *Client) Check(ctx context.Context) xdr.CheckResult {
	res := xdr.CheckResult{Granted: []string{}, Missing: []string{}}
	step := func(name string, ok bool, msg string) {
		res.Steps = append(res.Steps, xdr.CheckStep{Name: name, OK: ok, Message: msg})
	}
	roles, err := c.api.GrantedRoles(ctx)
	if err != nil {
		res.Message = "Sign-in failed: " + mde.SignInErrorMessage(err)
		if ctx.Err() != nil {
			res.Message = "The check was interrupted before it finished."
		}
		step("sign-in", false, res.Message)
		return res
	}
	res.SignedIn = true
	step("sign-in", true, "Signed in to Entra ID.")

	res.Granted = append(res.Granted, roles...)
	for _, p := range mde.MissingPermissionsFor(roles) {
		res.Missing = append(res.Missing, p.Name)
	}
	var problems []string
	if len(res.Missing) > 0 {
		msg := fmt.Sprintf("The app registration lacks %s. Add them as application permissions of the WindowsDefenderATP API "+
			"and grant admin consent.", strings.Join(res.Missing, ", "))
		step("permissions", false, msg)
		problems = append(problems, msg)
	} else {
		step("permissions", true, "Every permission Quarry needs is granted.")
	}

	if _, err := c.api.ListMachines(ctx, mde.MachineQuery{Page: mde.Page{Top: 1}}); err != nil {
		msg := "Reading a machine failed: " + stepMessage(err)
		step("hosts", false, msg)
		problems = append(problems, msg)
	} else {
		step("hosts", true, "Read the machine list.")
	}

	if _, err := c.api.ListLibrary(ctx); err != nil {
		msg := "Listing the Live Response library failed: " + stepMessage(err)
		step("library", false, msg)
		problems = append(problems, msg)
	} else {
		step("library", true, "Listed the Live Response library.")
	}

	switch {
	case ctx.Err() != nil:
		res.Message = "The check was interrupted before it finished."
	case len(problems) == 0:
		res.OK = true
		res.Message = "Connected: the app registration has every permission Quarry needs."
	default:
		res.Message = "Signed in, but: " + strings.Join(problems, " ")
	}
	return res
}

// stepMessage explains a failed check step in words a user can act on.
func stepMessage(err error) string {
	var xe *xdr.Error
	terr := translate("check", err)
	if !errors.As(terr, &xe) {
		return "unexpected answer from the Defender API (" + terr.Error() + ")."
	}
	switch xe.Kind {
	case xdr.ErrLiveResponseOff:
		return xe.Message + "."
	case xdr.ErrForbidden:
		if len(xe.Missing) > 0 {
			return "the API requires " + strings.Join(xe.Missing, " or ") + "."
		}
		return "the API refused the permission (" + xe.Message + ")."
	case xdr.ErrUnauthorized:
		return "the API refused the token. Check the cloud matches the tenant's."
	case xdr.ErrThrottled:
		return "the API's rate limit was reached; try again in a minute."
	case xdr.ErrUnavailable:
		return "the Defender API is unavailable or cannot be reached."
	}
	return xe.Error() + "."
}
