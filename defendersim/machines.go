package defendersim

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/quarry-dfir/quarry/defendersim/odata"
	"github.com/quarry-dfir/quarry/simhost"
)

// Machine is a device as the API returns it (§3.2).
type Machine struct {
	ID                     string      `json:"id"`
	MergedIntoMachineID    *string     `json:"mergedIntoMachineId"`
	IsPotentialDuplication bool        `json:"isPotentialDuplication"`
	IsExcluded             bool        `json:"isExcluded"`
	ExclusionReason        *string     `json:"exclusionReason"`
	ComputerDNSName        string      `json:"computerDnsName"`
	FirstSeen              string      `json:"firstSeen"`
	LastSeen               string      `json:"lastSeen"`
	OSPlatform             string      `json:"osPlatform"`
	OSVersion              *string     `json:"osVersion"`
	OSProcessor            string      `json:"osProcessor"`
	Version                string      `json:"version"`
	LastIPAddress          string      `json:"lastIpAddress"`
	LastExternalIPAddress  string      `json:"lastExternalIpAddress"`
	AgentVersion           string      `json:"agentVersion"`
	OSBuild                *int64      `json:"osBuild"`
	HealthStatus           string      `json:"healthStatus"`
	DeviceValue            *string     `json:"deviceValue"`
	RbacGroupID            int         `json:"rbacGroupId"`
	RbacGroupName          *string     `json:"rbacGroupName"`
	RiskScore              *string     `json:"riskScore"`
	ExposureLevel          *string     `json:"exposureLevel"`
	IsAadJoined            bool        `json:"isAadJoined"`
	AadDeviceID            *string     `json:"aadDeviceId"`
	MachineTags            []string    `json:"machineTags"`
	DefenderAvStatus       string      `json:"defenderAvStatus"`
	OnboardingStatus       string      `json:"onboardingStatus"`
	OSArchitecture         string      `json:"osArchitecture"`
	ManagedBy              string      `json:"managedBy"`
	ManagedByStatus        string      `json:"managedByStatus"`
	IPAddresses            []IPAddress `json:"ipAddresses"`
	VMMetadata             *VMMetadata `json:"vmMetadata"`
}

// IPAddress is one network interface of a machine.
type IPAddress struct {
	IPAddress         string  `json:"ipAddress"`
	MACAddress        *string `json:"macAddress"`
	Type              string  `json:"type"`
	OperationalStatus string  `json:"operationalStatus"`
}

// VMMetadata describes a cloud VM.
type VMMetadata struct {
	VMID           string `json:"vmId"`
	CloudProvider  string `json:"cloudProvider"`
	ResourceID     string `json:"resourceId"`
	SubscriptionID string `json:"subscriptionId"`
}

// mdeTime is the API's timestamp format: UTC with seven fractional digits.
func mdeTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.0000000Z") }

// wireTime is t at the precision the API shows, so a filter on a time a client read back compares
// equal to it.
func wireTime(t time.Time) time.Time { return t.UTC().Truncate(100 * time.Nanosecond) }

func mdeTimePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := mdeTime(*t)
	return &s
}

func ptr[T any](v T) *T { return &v }

// device is a simulated device: its static API view plus what drives its behaviour.
type device struct {
	m         Machine // static fields; health and lastSeen are computed per request
	host      simhost.Host
	online    bool          // base state
	flap      time.Duration // > 0: toggles online/offline every flap of simulated time
	lastLag   time.Duration // how long before "now" its last full report was
	offSince  time.Time     // when a steadily offline device was last seen
	override  *bool         // SetMachineOnline; guarded by Sim.mu
	rootMu    sync.Mutex    // serialises the lazy file-system generation
	rootReady bool
}

type osProfile struct {
	weight                         int
	platform, version, hostVersion string
	family                         string // simhost OS
	build                          int64
	server                         bool
}

var osProfiles = []osProfile{
	{30, "Windows10", "22H2", "Windows 10 22H2", "windows", 19045, false},
	{28, "Windows11", "23H2", "Windows 11 23H2", "windows", 22631, false},
	{4, "Windows11", "24H2", "Windows 11 24H2", "windows", 26100, false},
	{9, "WindowsServer2019", "1809", "Windows Server 2019", "windows", 17763, true},
	{10, "WindowsServer2022", "21H2", "Windows Server 2022", "windows", 20348, true},
	{9, "Linux", "22.04", "Ubuntu 22.04", "linux", 0, true},
	{6, "Linux", "9.3", "RHEL 9.3", "linux", 0, true},
	{4, "macOS", "14.5", "macOS 14", "macos", 0, false},
}

var (
	departments = []string{"fin", "hr", "eng", "sales", "ops", "it", "legal", "mkt"}
	deptTags    = map[string]string{"fin": "finance", "hr": "hr", "eng": "engineering", "sales": "sales", "ops": "operations", "it": "it", "legal": "legal", "mkt": "marketing"}
	winServers  = []string{"dc", "sql", "file", "app", "rds", "exch", "print", "ca"}
	linuxRoles  = []string{"web", "db", "k8s-node", "build", "proxy", "mail", "jump"}
	macUsers    = []string{"adavis", "bkim", "cmoreau", "dlopez", "eng-mbp", "fnguyen"}
	rbacGroups  = map[int]string{101: "Workstations", 102: "Servers-Tier1", 103: "Linux-Servers", 104: "Finance-Laptops", 105: "macOS-Devices"}
)

const domain = "contoso.local"

// generateDevices builds n devices. Device i depends only on (seed, i), so a larger fleet keeps the
// devices of a smaller one. One device in ten is offline and one in twenty flaps.
func generateDevices(seed int64, n int, start time.Time) []*device {
	total := 0
	for _, p := range osProfiles {
		total += p.weight
	}
	out := make([]*device, 0, n)
	for i := range n {
		g := newGen(seed, uint64(i)+1)
		roll := g.intn(total)
		var p osProfile
		for _, c := range osProfiles {
			if roll < c.weight {
				p = c
				break
			}
			roll -= c.weight
		}
		out = append(out, newDevice(g, i, p, seed, start))
	}
	return out
}

func newDevice(g *gen, i int, p osProfile, seed int64, start time.Time) *device {
	num := i + 1
	var name, ip, dept string
	var group int
	var tags []string
	switch {
	case p.family == "windows" && !p.server:
		dept = pick(g, departments)
		kind := pick(g, []string{"ws", "lt"})
		name = fmt.Sprintf("%s-%s-%03d.%s", kind, dept, num, domain)
		ip = fmt.Sprintf("10.20.%d.%d", 1+g.intn(60), 10+g.intn(240))
		group = 101
		if dept == "fin" {
			group = 104
		}
		tags = append(tags, deptTags[dept])
		if g.chance(0.1) {
			tags = append(tags, "vip")
		}
	case p.family == "windows":
		role := pick(g, winServers)
		name = fmt.Sprintf("srv-%s-%02d.%s", role, num, domain)
		ip = fmt.Sprintf("10.10.%d.%d", 1+g.intn(8), 10+g.intn(240))
		group = 102
		tags = append(tags, "server", pick(g, []string{"prod", "prod", "staging"}))
		if role == "dc" || role == "ca" {
			tags = append(tags, "tier0")
		}
	case p.family == "linux":
		role := pick(g, linuxRoles)
		name = fmt.Sprintf("%s-%02d", role, num)
		ip = fmt.Sprintf("10.30.%d.%d", 1+g.intn(8), 10+g.intn(240))
		group = 103
		tags = append(tags, "linux", pick(g, []string{"prod", "prod", "dev"}))
		if role == "web" || role == "proxy" {
			tags = append(tags, "dmz")
		}
	default:
		name = fmt.Sprintf("mbp-%s-%02d", pick(g, macUsers), num)
		ip = fmt.Sprintf("10.40.%d.%d", 1+g.intn(4), 10+g.intn(240))
		group = 105
	}
	if g.chance(0.1) {
		group = 0
	}
	groupName := "UnassignedGroup"
	if group != 0 {
		groupName = rbacGroups[group]
	}
	if tags == nil || g.chance(0.15) {
		tags = []string{}
	}
	compromised := i%8 == 5
	risk := pick(g, []string{"None", "Informational", "Low", "Low", "Medium"})
	if compromised {
		risk = pick(g, []string{"High", "High", "Medium"})
	}
	value := "Normal"
	if p.server && g.chance(0.4) {
		value = "High"
	} else if g.chance(0.05) {
		value = "Low"
	}
	id := g.hex(40)
	mac := strings.ToUpper(g.hex(12))
	m := Machine{
		ID:                    id,
		ComputerDNSName:       name,
		FirstSeen:             mdeTime(start.Add(-time.Duration(30+g.intn(500)) * 24 * time.Hour).Add(-time.Duration(g.intn(86400)) * time.Second)),
		OSPlatform:            p.platform,
		OSProcessor:           "x64",
		Version:               p.version,
		LastIPAddress:         ip,
		LastExternalIPAddress: fmt.Sprintf("203.0.113.%d", 1+g.intn(250)),
		HealthStatus:          "Active",
		DeviceValue:           ptr(value),
		RbacGroupID:           group,
		RbacGroupName:         ptr(groupName),
		RiskScore:             ptr(risk),
		ExposureLevel:         ptr(pick(g, []string{"Low", "Medium", "Medium", "High"})),
		MachineTags:           tags,
		DefenderAvStatus:      pick(g, []string{"Updated", "Updated", "Updated", "NotUpdated"}),
		OnboardingStatus:      "Onboarded",
		OSArchitecture:        "64-bit",
		ManagedBy:             "MicrosoftDefender",
		ManagedByStatus:       "Unknown",
		IPAddresses: []IPAddress{
			{IPAddress: ip, MACAddress: ptr(mac), Type: "Ethernet", OperationalStatus: "Up"},
			{IPAddress: "127.0.0.1", Type: "SoftwareLoopback", OperationalStatus: "Up"},
		},
	}
	switch p.family {
	case "windows":
		m.OSBuild = ptr(p.build)
		m.AgentVersion = fmt.Sprintf("10.8760.%d.%d", p.build, 1000+g.intn(3000))
		if !p.server {
			m.IsAadJoined = true
			m.AadDeviceID = ptr(g.guid())
			m.ManagedBy, m.ManagedByStatus = "Intune", "Success"
		}
	case "linux":
		m.AgentVersion = fmt.Sprintf("101.24%03d.%04d", 10+g.intn(90), g.intn(30))
		m.IPAddresses[0].Type = "Other"
	case "macos":
		m.OSProcessor, m.OSArchitecture = "ARM64", "64-bit"
		m.AgentVersion = fmt.Sprintf("101.24%03d.%04d", 10+g.intn(90), g.intn(30))
	}
	if p.server && g.chance(0.3) {
		m.VMMetadata = &VMMetadata{VMID: g.guid(), CloudProvider: "Azure", SubscriptionID: g.guid()}
		m.VMMetadata.ResourceID = fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-prod/providers/Microsoft.Compute/virtualMachines/%s",
			m.VMMetadata.SubscriptionID, strings.SplitN(name, ".", 2)[0])
	}
	d := &device{
		m:       m,
		online:  i%10 != 7,
		lastLag: time.Duration(5+g.intn(600)) * time.Minute,
		host: simhost.Host{
			Name: name, OS: p.family, OSVersion: p.hostVersion, IP: ip,
			Seed: seed*1_000_003 + int64(i), Compromised: compromised,
		},
	}
	d.offSince = start.Add(-time.Duration(1+g.intn(20)) * 24 * time.Hour)
	if i%20 == 3 {
		d.flap = time.Duration(5+g.intn(16)) * time.Minute
	}
	return d
}

// onlineLocked reports whether d answers Live Response at now. Caller holds s.mu.
func (s *Sim) onlineLocked(d *device, now time.Time) bool {
	if d.override != nil {
		return *d.override
	}
	if d.flap > 0 {
		k := int64(s.clock.elapsed(now) / d.flap)
		return (k%2 == 0) == d.online
	}
	return d.online
}

func (s *Sim) isOnline(d *device, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.onlineLocked(d, now)
}

// machineLocked renders d at now. Caller holds s.mu.
func (s *Sim) machineLocked(d *device, now time.Time) Machine {
	m := d.m
	m.MachineTags = append([]string{}, d.m.MachineTags...)
	m.IPAddresses = append([]IPAddress(nil), d.m.IPAddresses...)
	if s.onlineLocked(d, now) {
		m.HealthStatus = "Active"
		m.LastSeen = mdeTime(now.Truncate(time.Minute).Add(-d.lastLag))
	} else {
		m.HealthStatus = "Inactive"
		last := d.offSince
		if d.flap > 0 && d.override == nil {
			k := int64(s.clock.elapsed(now) / d.flap)
			last = s.clock.at(time.Duration(k) * d.flap)
		}
		m.LastSeen = mdeTime(last)
	}
	return m
}

// SetMachineOnline forces a device online or offline until the next call.
func (s *Sim) SetMachineOnline(machineID string, online bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.byID[strings.ToLower(machineID)]; d != nil {
		d.override = ptr(online)
	}
}

// Machines returns a snapshot of every device, shaped like the API's machine.
func (s *Sim) Machines() []Machine {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Machine, len(s.devices))
	for i, d := range s.devices {
		out[i] = s.machineLocked(d, now)
	}
	return out
}

// Compromised lists the ids of devices whose file systems carry an attack story.
func (s *Sim) Compromised() []string {
	var ids []string
	for _, d := range s.devices {
		if d.host.Compromised {
			ids = append(ids, d.m.ID)
		}
	}
	return ids
}

// machineSchema is the filterable property list of §3.1.
var machineSchema = odata.Schema{
	"computerDnsName": odata.String, "id": odata.String, "version": odata.String, "deviceValue": odata.String,
	"aadDeviceId": odata.String, "machineTags": odata.StringList, "lastSeen": odata.Time, "exposureLevel": odata.String,
	"onboardingStatus": odata.String, "lastIpAddress": odata.String, "healthStatus": odata.String,
	"osPlatform": odata.String, "riskScore": odata.String, "rbacGroupId": odata.Number,
}

func machineField(m *Machine) odata.Getter {
	str := nullable[string]
	return func(prop string) any {
		switch prop {
		case "computerDnsName":
			return m.ComputerDNSName
		case "id":
			return m.ID
		case "version":
			return m.Version
		case "deviceValue":
			return str(m.DeviceValue)
		case "aadDeviceId":
			return str(m.AadDeviceID)
		case "machineTags":
			return m.MachineTags
		case "lastSeen":
			t, _ := time.Parse(time.RFC3339Nano, m.LastSeen)
			return t
		case "exposureLevel":
			return str(m.ExposureLevel)
		case "onboardingStatus":
			return m.OnboardingStatus
		case "lastIpAddress":
			return m.LastIPAddress
		case "healthStatus":
			return m.HealthStatus
		case "osPlatform":
			return m.OSPlatform
		case "riskScore":
			return str(m.RiskScore)
		case "rbacGroupId":
			return float64(m.RbacGroupID)
		}
		return nil
	}
}

func (s *Sim) listMachines(c *call) error {
	q, err := s.parseQuery(c, machineSchema)
	if err != nil {
		return err
	}
	s.mu.Lock()
	var items []Machine
	for _, d := range s.devices {
		m := s.machineLocked(d, c.now)
		if q.filter.Match(machineField(&m)) {
			items = append(items, m)
		}
	}
	s.mu.Unlock()
	page, next := paginate(c, q, items)
	writeJSON(c.w, 200, collection(c, "Machines", page, next))
	return nil
}

// findDevice resolves a machine id (or, as the get-machine page says, a computer name).
func (s *Sim) findDevice(idOrName string) *device {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.findDeviceLocked(idOrName)
}

func (s *Sim) findDeviceLocked(idOrName string) *device {
	if d := s.byID[strings.ToLower(idOrName)]; d != nil {
		return d
	}
	for _, d := range s.devices {
		if strings.EqualFold(d.m.ComputerDNSName, idOrName) {
			return d
		}
	}
	return nil
}

func (s *Sim) getMachine(c *call) error {
	d := s.findDevice(c.vars[0])
	if d == nil {
		return notFound("Machine %s was not found", c.vars[0])
	}
	s.mu.Lock()
	m := s.machineLocked(d, c.now)
	s.mu.Unlock()
	writeJSON(c.w, 200, entity(c, "Machines/$entity", m))
	return nil
}

// entity renders one entity with `@odata.context` as its first member, as the service does.
func entity(c *call, set string, v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil || len(b) < 2 || b[0] != '{' {
		return b
	}
	ctx, _ := json.Marshal(c.context(set))
	out := append([]byte(`{"@odata.context":`), ctx...)
	if len(b) > 2 {
		out = append(out, ',')
	}
	return append(out, b[1:]...)
}

// deviceDirs returns the device's file-system root and working folder. With generate, the file
// system is generated on first use (simhost.Generate is idempotent and cheap once done);
// without, root is returned as it stands, possibly absent.
func (s *Sim) deviceDirs(d *device, generate bool) (root, work string, err error) {
	base := filepath.Join(s.dataDir, "devices", d.m.ID)
	root, work = filepath.Join(base, "root"), filepath.Join(base, "work")
	if !generate {
		return root, work, nil
	}
	d.rootMu.Lock()
	defer d.rootMu.Unlock()
	if d.rootReady {
		return root, work, nil
	}
	h := d.host
	h.Anchor = s.opts.Anchor
	if _, err := simhost.Generate(root, h); err != nil {
		return "", "", fmt.Errorf("generate file system of %s: %w", d.m.ComputerDNSName, err)
	}
	d.rootReady = true
	return root, work, nil
}

// DeviceRoot returns a device's file-system root, generating it if no command has yet, so end-to-end
// tests can compare what a collector sent with its source.
func (s *Sim) DeviceRoot(machineID string) (string, error) {
	d := s.findDevice(machineID)
	if d == nil {
		return "", fmt.Errorf("defendersim: machine %s not found", machineID)
	}
	root, _, err := s.deviceDirs(d, true)
	if err != nil {
		return "", fmt.Errorf("defendersim: %w", err)
	}
	return root, nil
}

// Story returns the attack story planted on a device (zero for a clean one) and whether the device
// exists, so end-to-end tests can assert the detections it should raise.
func (s *Sim) Story(machineID string) (simhost.Story, bool) {
	d := s.findDevice(machineID)
	if d == nil {
		return simhost.Story{}, false
	}
	h := d.host
	h.Anchor = s.opts.Anchor
	return simhost.StoryFor(h), true
}
