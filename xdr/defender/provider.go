// Package defender is the xdr provider for Microsoft Defender for Endpoint: it maps the xdr.Provider
// and xdr.Client contracts onto the Defender API client of package
// github.com/quarry-dfir/quarry/defender, and registers itself as "defender".
package defender

import (
	"context"
	"slices"
	"time"

	mde "github.com/quarry-dfir/quarry/defender"
	"github.com/quarry-dfir/quarry/xdr"
)

func init() { xdr.Register(&Provider{}) }

// ProviderID is the provider's stable ID, stored with connections.
const ProviderID = "defender"

// Provider is Microsoft Defender for Endpoint.
type Provider struct{}

// ID returns "defender".
func (*Provider) ID() string { return ProviderID }

// Name returns the product name shown in the UI.
func (*Provider) Name() string { return "Microsoft Defender for Endpoint" }

// Capabilities are the documented Live Response limits (mde-api.md §5.3 and §10).
func (*Provider) Capabilities() xdr.Capabilities {
	return xdr.Capabilities{
		RunScript:             true,
		ScriptOS:              []string{"windows", "linux", "macos"},
		Alerts:                true,
		MaxConcurrentSessions: 25,
		LaunchesPerMinute:     10,
		ScriptTimeout:         10 * time.Minute,
		OfflineQueue:          3 * 24 * time.Hour,
		MaxScriptBytes:        mde.MaxLibraryFileSize,
	}
}

// permissionOrder is the order of the product page's permission table, which the UI follows.
var permissionOrder = []string{
	"Library.Manage", "Machine.LiveResponse", "Machine.Read.All", "Machine.ReadWrite.All",
	"Alert.Read.All", "Alert.ReadWrite.All",
}

// Permissions lists the application permissions of the WindowsDefenderATP API a connection needs,
// with what Quarry uses each for. The purposes come from the API client, which also decides what
// counts as missing, so the two cannot drift apart.
func (*Provider) Permissions() []xdr.Permission {
	out := make([]xdr.Permission, 0, len(mde.RequiredPermissions))
	for _, p := range mde.RequiredPermissions {
		out = append(out, xdr.Permission{Name: p.Name, Purpose: p.Purpose})
	}
	slices.SortStableFunc(out, func(a, b xdr.Permission) int {
		return rank(a.Name) - rank(b.Name)
	})
	return out
}

func rank(name string) int {
	if i := slices.Index(permissionOrder, name); i >= 0 {
		return i
	}
	return len(permissionOrder)
}

// Clouds lists the Defender deployments, then "custom" for an emulator or a private endpoint whose
// URLs the user types in.
func (*Provider) Clouds() []xdr.Cloud {
	out := make([]xdr.Cloud, 0, len(mde.Clouds)+1)
	for _, c := range mde.Clouds {
		out = append(out, xdr.Cloud{ID: c.ID, Name: c.Name, APIURL: c.APIURL, AuthorityURL: c.AuthorityURL})
	}
	return append(out, xdr.Cloud{ID: mde.CloudCustom, Name: "Custom (emulator or private endpoint)"})
}

// Open checks cfg and returns a client with the documented rate limits. It makes no network call.
func (*Provider) Open(cfg xdr.Config) (xdr.Client, error) {
	return Open(cfg, mde.Limits{TimeScale: cfg.TimeScale})
}

var _ xdr.Provider = (*Provider)(nil)
var _ xdr.Client = (*Client)(nil)

// CommentAlert adds comment to Defender alert alertID (PATCH /api/alerts/{id}, Alert.ReadWrite.All).
func (c *Client) CommentAlert(ctx context.Context, alertID, comment string) error {
	if _, err := c.api.UpdateAlert(ctx, alertID, mde.AlertUpdate{Comment: comment}); err != nil {
		return translate("comment on alert "+alertID, err)
	}
	return nil
}

var _ xdr.AlertCommenter = (*Client)(nil)
