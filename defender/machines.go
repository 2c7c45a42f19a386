package defender

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// Machine is a device onboarded to Defender for Endpoint (mde-api.md §3.2). Strings the service may send
// as null decode to "".
type Machine struct {
	ID                     string      `json:"id"`
	MergedIntoMachineID    string      `json:"mergedIntoMachineId"`
	IsPotentialDuplication bool        `json:"isPotentialDuplication"`
	IsExcluded             bool        `json:"isExcluded"`
	ExclusionReason        string      `json:"exclusionReason"`
	ComputerDNSName        string      `json:"computerDnsName"`
	FirstSeen              Time        `json:"firstSeen"`
	LastSeen               Time        `json:"lastSeen"`
	OSPlatform             string      `json:"osPlatform"`
	OSVersion              string      `json:"osVersion"`
	OSProcessor            string      `json:"osProcessor"`
	Version                string      `json:"version"`
	LastIPAddress          string      `json:"lastIpAddress"`
	LastExternalIPAddress  string      `json:"lastExternalIpAddress"`
	AgentVersion           string      `json:"agentVersion"`
	OSBuild                *int64      `json:"osBuild"`
	HealthStatus           string      `json:"healthStatus"`
	DeviceValue            string      `json:"deviceValue"`
	RBACGroupID            int64       `json:"rbacGroupId"`
	RBACGroupName          string      `json:"rbacGroupName"`
	RiskScore              string      `json:"riskScore"`
	ExposureLevel          string      `json:"exposureLevel"`
	IsAADJoined            bool        `json:"isAadJoined"`
	AADDeviceID            string      `json:"aadDeviceId"`
	MachineTags            []string    `json:"machineTags"`
	DefenderAVStatus       string      `json:"defenderAvStatus"`
	OnboardingStatus       string      `json:"onboardingStatus"`
	OSArchitecture         string      `json:"osArchitecture"`
	ManagedBy              string      `json:"managedBy"`
	ManagedByStatus        string      `json:"managedByStatus"`
	IPAddresses            []IPAddress `json:"ipAddresses"`
	VMMetadata             *VMMetadata `json:"vmMetadata"`
}

// IPAddress is one network interface address of a machine.
type IPAddress struct {
	IPAddress         string `json:"ipAddress"`
	MACAddress        string `json:"macAddress"`
	Type              string `json:"type"`
	OperationalStatus string `json:"operationalStatus"`
}

// VMMetadata describes the cloud VM behind a machine, when it is one.
type VMMetadata struct {
	VMID           string `json:"vmId"`
	CloudProvider  string `json:"cloudProvider"`
	ResourceID     string `json:"resourceId"`
	SubscriptionID string `json:"subscriptionId"`
}

// Machine health values (healthStatus).
const (
	HealthActive   = "Active"
	HealthInactive = "Inactive"
)

// MachineQuery selects machines. Filter is an OData $filter over the documented properties, e.g.
// "healthStatus eq 'Active' and osPlatform eq 'Windows11'" (mde-api.md §3.1).
type MachineQuery struct {
	Filter string
	Page
}

// ListMachines returns the machines matching q; with q.Top == 0 all of them, page by page.
func (c *Client) ListMachines(ctx context.Context, q MachineQuery) ([]Machine, error) {
	r := request{fam: famListMachines, method: http.MethodGet, path: "/api/machines", query: url.Values{}}
	if q.Filter != "" {
		r.query.Set("$filter", q.Filter)
	}
	return list(ctx, c, r, q.Page, func(m Machine) string { return m.ID })
}

// GetMachine returns one machine by its 40-hex id. Unknown ids give ErrNotFound.
func (c *Client) GetMachine(ctx context.Context, id string) (*Machine, error) {
	return getOne[Machine](ctx, c, famGetMachine, "/api/machines", id)
}

// getOne fetches the entity with the given id below a collection path.
func getOne[T any](ctx context.Context, c *Client, fam family, collectionPath, id string) (*T, error) {
	if id == "" {
		return nil, fmt.Errorf("defender: get %s: empty id", collectionPath)
	}
	var v T
	r := request{fam: fam, method: http.MethodGet, path: collectionPath + "/" + url.PathEscape(id)}
	if err := c.call(ctx, r, &v); err != nil {
		return nil, err
	}
	return &v, nil
}
