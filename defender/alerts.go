package defender

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"time"
)

// Alert is a Defender for Endpoint alert (mde-api.md §7.2).
type Alert struct {
	ID                 string         `json:"id"`
	IncidentID         *int64         `json:"incidentId"`
	InvestigationID    *int64         `json:"investigationId"`
	AssignedTo         string         `json:"assignedTo"`
	Severity           string         `json:"severity"`
	Status             string         `json:"status"`
	Classification     string         `json:"classification"`
	Determination      string         `json:"determination"`
	InvestigationState string         `json:"investigationState"`
	DetectionSource    string         `json:"detectionSource"`
	DetectorID         string         `json:"detectorId,omitempty"`
	Category           string         `json:"category"`
	ThreatFamilyName   string         `json:"threatFamilyName"`
	Title              string         `json:"title"`
	Description        string         `json:"description"`
	AlertCreationTime  Time           `json:"alertCreationTime"`
	FirstEventTime     Time           `json:"firstEventTime"`
	LastEventTime      Time           `json:"lastEventTime"`
	LastUpdateTime     Time           `json:"lastUpdateTime"`
	ResolvedTime       Time           `json:"resolvedTime"`
	MachineID          string         `json:"machineId"`
	ComputerDNSName    string         `json:"computerDnsName"`
	RBACGroupName      string         `json:"rbacGroupName"`
	AADTenantID        string         `json:"aadTenantId"`
	ThreatName         string         `json:"threatName"`
	MitreTechniques    []string       `json:"mitreTechniques"`
	RelatedUser        *RelatedUser   `json:"relatedUser"`
	Comments           []AlertComment `json:"comments"`
	Evidence           []Evidence     `json:"evidence"`
}

// RelatedUser is the user an alert is about.
type RelatedUser struct {
	UserName   string `json:"userName"`
	DomainName string `json:"domainName"`
}

// AlertComment is one comment on an alert.
type AlertComment struct {
	Comment     string `json:"comment"`
	CreatedBy   string `json:"createdBy"`
	CreatedTime Time   `json:"createdTime"`
}

// Evidence is one entity an alert points at; which fields are set depends on EntityType.
type Evidence struct {
	EntityType                string `json:"entityType"`
	EvidenceCreationTime      Time   `json:"evidenceCreationTime"`
	SHA1                      string `json:"sha1"`
	SHA256                    string `json:"sha256"`
	FileName                  string `json:"fileName"`
	FilePath                  string `json:"filePath"`
	ProcessID                 *int64 `json:"processId"`
	ProcessCommandLine        string `json:"processCommandLine"`
	ProcessCreationTime       Time   `json:"processCreationTime"`
	ParentProcessID           *int64 `json:"parentProcessId"`
	ParentProcessCreationTime Time   `json:"parentProcessCreationTime"`
	ParentProcessFileName     string `json:"parentProcessFileName"`
	ParentProcessFilePath     string `json:"parentProcessFilePath"`
	IPAddress                 string `json:"ipAddress"`
	URL                       string `json:"url"`
	RegistryKey               string `json:"registryKey"`
	RegistryHive              string `json:"registryHive"`
	RegistryValueType         string `json:"registryValueType"`
	RegistryValue             string `json:"registryValue"`
	AccountName               string `json:"accountName"`
	DomainName                string `json:"domainName"`
	UserSID                   string `json:"userSid"`
	AADUserID                 string `json:"aadUserId"`
	UserPrincipalName         string `json:"userPrincipalName"`
	DetectionStatus           string `json:"detectionStatus"`
}

// AlertQuery selects alerts. UpdatedSince is the incremental-polling high-water mark: alerts whose
// lastUpdateTime is at or after it are returned (ge, so ties at the boundary are not lost; callers
// de-duplicate by ID and LastUpdateTime). Filter is added as is.
type AlertQuery struct {
	UpdatedSince   time.Time
	CreatedSince   time.Time
	Filter         string
	ExpandEvidence bool
	Page
}

// ListAlerts returns the alerts matching q, oldest update first, so a caller can advance its
// high-water mark as it processes them. With q.Top == 0 it pages through all of them.
func (c *Client) ListAlerts(ctx context.Context, q AlertQuery) ([]Alert, error) {
	r := request{fam: famListAlerts, method: http.MethodGet, path: "/api/alerts", query: url.Values{}}
	var cl []string
	if !q.UpdatedSince.IsZero() {
		cl = append(cl, "lastUpdateTime ge "+filterTime(q.UpdatedSince))
	}
	if !q.CreatedSince.IsZero() {
		cl = append(cl, "alertCreationTime ge "+filterTime(q.CreatedSince))
	}
	if f := and(append(cl, q.Filter)...); f != "" {
		r.query.Set("$filter", f)
	}
	if q.ExpandEvidence {
		r.query.Set("$expand", "evidence")
	}
	alerts, err := list(ctx, c, r, q.Page, func(a Alert) string { return a.ID })
	if err != nil {
		return nil, err
	}
	sort.SliceStable(alerts, func(i, j int) bool { return alerts[i].LastUpdateTime.Before(alerts[j].LastUpdateTime.Time) })
	return alerts, nil
}

// HighWater returns the latest LastUpdateTime among alerts, or prev if none is later: the UpdatedSince
// of the next incremental poll. The filter is inclusive, so the next poll returns the boundary alerts
// again; callers de-duplicate by ID and LastUpdateTime.
func HighWater(alerts []Alert, prev time.Time) time.Time {
	for _, a := range alerts {
		if a.LastUpdateTime.After(prev) {
			prev = a.LastUpdateTime.Time
		}
	}
	return prev
}

// GetAlert returns one alert with its evidence. Unknown ids give ErrNotFound.
func (c *Client) GetAlert(ctx context.Context, id string) (*Alert, error) {
	return getOne[Alert](ctx, c, famGetAlert, "/api/alerts", id)
}

// AlertUpdate is the PATCH body; empty fields are left unchanged (mde-api.md §7.3).
type AlertUpdate struct {
	Status         string `json:"status,omitempty"`
	AssignedTo     string `json:"assignedTo,omitempty"`
	Classification string `json:"classification,omitempty"`
	Determination  string `json:"determination,omitempty"`
	// Comment is appended to the alert's comments.
	Comment string `json:"comment,omitempty"`
}

// UpdateAlert changes an alert and returns it as the service now has it. Without a comment the update
// only sets values and is retried after a lost answer; with one it is not, because a repeat would add
// the comment twice.
func (c *Client) UpdateAlert(ctx context.Context, id string, u AlertUpdate) (*Alert, error) {
	if id == "" {
		return nil, errors.New("defender: update alert: empty id")
	}
	if u == (AlertUpdate{}) {
		return nil, errors.New("defender: update alert: nothing to change")
	}
	body, err := json.Marshal(u)
	if err != nil {
		return nil, err
	}
	r := request{fam: famUpdateAlert, method: http.MethodPatch, path: "/api/alerts/" + url.PathEscape(id),
		body: body, contentType: "application/json", retry: retrySafe}
	if u.Comment != "" {
		r.retry = retryNever
	}
	var a Alert
	if err := c.call(ctx, r, &a); err != nil {
		return nil, err
	}
	return &a, nil
}
