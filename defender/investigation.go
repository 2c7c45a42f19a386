package defender

import (
	"context"
	"errors"
	"net/http"
	"net/url"
)

// CollectInvestigationPackage asks the device for Defender's own investigation package and returns the
// Pending action (permission Machine.CollectForensics). Like runliveresponse, the call is not repeated
// after an unknown outcome: the error then matches ErrOutcomeUnknown.
func (c *Client) CollectInvestigationPackage(ctx context.Context, machineID, comment string) (*MachineAction, error) {
	if machineID == "" {
		return nil, errors.New("defender: collect investigation package: empty machine id")
	}
	if comment == "" {
		comment = "collected by Quarry"
	}
	var a MachineAction
	r := request{fam: famCollectPackage, method: http.MethodPost,
		path: "/api/machines/" + url.PathEscape(machineID) + "/collectInvestigationPackage",
		body: commentBody(comment), contentType: "application/json", retry: retryNever}
	if err := c.call(ctx, r, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// GetPackageURI returns the short-lived download URL of a finished investigation package. The service
// allows only 2 calls a minute; use the URL at once. ErrNotFound while the collection is not complete.
func (c *Client) GetPackageURI(ctx context.Context, actionID string) (string, error) {
	if actionID == "" {
		return "", errors.New("defender: package uri: empty action id")
	}
	r := request{fam: famPackageURI, method: http.MethodGet, path: "/api/machineactions/" + url.PathEscape(actionID) + "/GetPackageUri"}
	return c.link(ctx, r)
}
