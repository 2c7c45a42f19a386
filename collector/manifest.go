// Package collector is quarry-host's collection engine: embedded YAML targets, profiles and budgets, the
// streaming zip package writer (quarry-package/1) and the hostile-input-safe package reader the server
// uses.
package collector

import "time"

// Format identifies the package layout in manifest.json.
const Format = "quarry-package/1"

// Skip reasons written to the manifest.
const (
	ReasonSizeCap     = "size_cap"
	ReasonTotalCap    = "total_cap"
	ReasonTimeCap     = "time_cap"
	ReasonPermission  = "permission"
	ReasonLocked      = "locked"
	ReasonSpecialFile = "special_file"
	ReasonSymlink     = "symlink"
	ReasonLoop        = "loop"
	ReasonNotFound    = "not_found"
	ReasonName        = "name"
	ReasonError       = "error"
)

// Manifest is manifest.json, the last entry of a package.
type Manifest struct {
	Format        string         `json:"format"`
	Collector     CollectorInfo  `json:"collector"`
	AcquisitionID string         `json:"acquisition_id"`
	Profile       string         `json:"profile"`
	Groups        []string       `json:"groups"`
	Include       []string       `json:"include"`
	Exclude       []string       `json:"exclude"`
	Host          HostInfo       `json:"host"`
	StartedAt     time.Time      `json:"started_at"`
	EndedAt       time.Time      `json:"ended_at"`
	Files         []FileEntry    `json:"files"`
	Skipped       []SkipEntry    `json:"skipped"`
	LiveState     []LiveEntry    `json:"live_state"`
	Listings      []ListingEntry `json:"listings,omitempty"`
	Log           string         `json:"log"`
	Stats         Stats          `json:"stats"`
}

// CollectorInfo names the program that wrote the package.
type CollectorInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
}

// HostInfo holds the facts about the collected host.
type HostInfo struct {
	Hostname         string   `json:"hostname"`
	OS               string   `json:"os"`
	OSVersion        string   `json:"os_version"`
	Kernel           string   `json:"kernel"`
	Arch             string   `json:"arch"`
	BootTime         string   `json:"boot_time"`
	Timezone         string   `json:"timezone"`
	UTCOffsetSeconds int      `json:"utc_offset_seconds"`
	IPs              []string `json:"ips"`
	Root             string   `json:"root"`
	Live             bool     `json:"live"`
}

// FileEntry is one collected file.
type FileEntry struct {
	Path        string `json:"path"`
	ArchivePath string `json:"archive_path"`
	Target      string `json:"target"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	MTime       string `json:"mtime,omitempty"`
	ATime       string `json:"atime,omitempty"`
	CTime       string `json:"ctime,omitempty"`
	BTime       string `json:"btime,omitempty"`
	Mode        string `json:"mode"`
	ReadVia     string `json:"read_via"`
	Compression string `json:"compression"`
	Truncated   bool   `json:"truncated"`
}

// SkipEntry is one file (or target) that was not collected, and why.
type SkipEntry struct {
	Path   string `json:"path"`
	Target string `json:"target"`
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
}

// LiveEntry is one live-state document under live/.
type LiveEntry struct {
	Name        string `json:"name"`
	ArchivePath string `json:"archive_path"`
	SHA256      string `json:"sha256"`
	Error       string `json:"error"`
}

// ListingEntry is a names-and-metadata listing (JSON lines) of a list-only target, under listings/.
type ListingEntry struct {
	Target      string `json:"target"`
	ArchivePath string `json:"archive_path"`
	SHA256      string `json:"sha256"`
	Entries     int    `json:"entries"`
}

// Stats sums up the collection.
type Stats struct {
	Files      int   `json:"files"`
	Bytes      int64 `json:"bytes"`
	Skipped    int   `json:"skipped"`
	DurationMS int64 `json:"duration_ms"`
}
