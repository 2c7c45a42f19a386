package defender

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// CheckResult is what a connection check tells the user: whether Quarry can work with the tenant, the
// permissions the token carries, those it lacks, and one message in plain words.
type CheckResult struct {
	OK      bool         `json:"ok"`
	Granted []string     `json:"granted"`
	Missing []Permission `json:"missing"`
	Message string       `json:"message"`
}

// CheckConnection signs in, reads the granted roles from the token and makes one cheap API call (one
// machine) to prove the API accepts the token. It reports problems in the result, not as an error:
// the only error is ctx ending.
func (c *Client) CheckConnection(ctx context.Context) (CheckResult, error) {
	res := CheckResult{Granted: []string{}, Missing: []Permission{}}
	roles, err := c.GrantedRoles(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		res.Message = "Sign-in failed: " + SignInErrorMessage(err)
		return res, nil
	}
	res.Granted = append(res.Granted, roles...)
	if m := MissingPermissionsFor(roles); len(m) > 0 {
		res.Missing = m
	}
	_, err = c.ListMachines(ctx, MachineQuery{Page: Page{Top: 1}})
	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case err == nil && len(res.Missing) == 0:
		res.OK = true
		res.Message = "Connected: the app registration has every permission Quarry needs."
	case err == nil || errors.Is(err, ErrForbidden) && len(res.Missing) > 0:
		names := make([]string, len(res.Missing))
		for i, p := range res.Missing {
			names[i] = p.Name
		}
		res.Message = fmt.Sprintf("Signed in, but the app registration lacks %s. Add them as application permissions of "+
			"the WindowsDefenderATP API and grant admin consent.", strings.Join(names, ", "))
	case errors.Is(err, ErrUnauthorized), errors.Is(err, ErrForbidden):
		res.Message = "Signed in, but the Defender API refused the token (" + err.Error() + "). Check the cloud and the scope."
	default:
		res.Message = "Signed in, but the Defender API could not be reached: " + err.Error()
	}
	return res, nil
}
