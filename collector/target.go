package collector

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/quarry-dfir/quarry/fsaccess"
)

//go:embed targets/*.yaml
var embeddedTargets embed.FS

// Target is one thing worth collecting, defined in YAML under targets/.
type Target struct {
	Name        string   `yaml:"name"`        // dotted, e.g. "windows.eventlogs"
	Description string   `yaml:"description"` // what it is and why it matters
	References  []string `yaml:"references"`
	OS          []string `yaml:"os"`      // "windows", "linux", "darwin"
	Groups      []string `yaml:"groups"`  // named groups the target belongs to (--groups)
	Profile     string   `yaml:"profile"` // lowest profile that collects it: "triage" (default, also light) or "full"
	Paths       []string `yaml:"paths"`   // globs in the target OS's syntax: * ? [..] within a name, ** any depth
	Uses        []string `yaml:"uses"`    // other targets collected with this one
	MaxSize     string   `yaml:"max_size"`
	// RawNTFS marks paths the OS cannot open at all (the $MFT, the USN journal's $J stream): only a raw NTFS
	// accessor reads them.
	RawNTFS bool `yaml:"raw_ntfs"`
	// List records names and metadata only, never content (for example /tmp).
	List bool `yaml:"list"`
	// ReportMissing lists literal paths that do not exist as skipped (not_found): for files every host
	// of the OS has, whose absence is itself a finding.
	ReportMissing bool `yaml:"report_missing"`

	maxSize int64
	file    string
}

func (t *Target) catchAll() bool {
	for _, p := range t.Paths {
		if strings.Contains(p, "**") {
			return true
		}
	}
	return false
}

// MaxSizeBytes is the parsed per-file cap of the target, 0 when it has none.
func (t *Target) MaxSizeBytes() int64 { return t.maxSize }

type targetFile struct {
	Targets []*Target `yaml:"targets"`
}

// Targets is a validated set of target definitions, by name.
type Targets struct {
	byName map[string]*Target
	groups map[string][]string // group → target names
}

var namePattern = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_]+)+$`)
var groupPattern = regexp.MustCompile(`^[a-z0-9_]+$`)

// DefaultTargets loads the embedded target definitions.
func DefaultTargets() (*Targets, error) { return LoadTargets(embeddedTargets, "targets") }

// LoadTargets reads and validates every *.yaml file in dir of fsys.
func LoadTargets(fsys fs.FS, dir string) (*Targets, error) {
	names, err := fs.Glob(fsys, path.Join(dir, "*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("collector: targets: %w", err)
	}
	ts := &Targets{byName: map[string]*Target{}, groups: map[string][]string{}}
	var errs []error
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("collector: targets: %w", err)
		}
		var tf targetFile
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&tf); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if len(tf.Targets) == 0 {
			errs = append(errs, fmt.Errorf("%s: no targets", name))
		}
		for _, t := range tf.Targets {
			if t == nil {
				errs = append(errs, fmt.Errorf("%s: empty target", name))
				continue
			}
			t.file = name
			if err := t.validate(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				continue
			}
			if prev, dup := ts.byName[t.Name]; dup {
				errs = append(errs, fmt.Errorf("%s: target %s already defined in %s", name, t.Name, prev.file))
				continue
			}
			ts.byName[t.Name] = t
			for _, g := range t.Groups {
				ts.groups[g] = append(ts.groups[g], t.Name)
			}
		}
	}
	errs = append(errs, ts.checkUses()...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("collector: targets: %w", errors.Join(errs...))
	}
	return ts, nil
}

func (t *Target) validate() error {
	if !namePattern.MatchString(t.Name) {
		return fmt.Errorf("target name %q: want lowercase dotted name like windows.eventlogs", t.Name)
	}
	if strings.TrimSpace(t.Description) == "" {
		return fmt.Errorf("target %s: no description", t.Name)
	}
	if len(t.OS) == 0 {
		return fmt.Errorf("target %s: no os", t.Name)
	}
	for _, o := range t.OS {
		if o != "windows" && o != "linux" && o != "darwin" {
			return fmt.Errorf("target %s: unknown os %q", t.Name, o)
		}
	}
	if len(t.Groups) == 0 {
		return fmt.Errorf("target %s: no groups", t.Name)
	}
	for _, g := range t.Groups {
		if !groupPattern.MatchString(g) {
			return fmt.Errorf("target %s: group %q: want lowercase word", t.Name, g)
		}
	}
	switch t.Profile {
	case "":
		t.Profile = "triage"
	case "triage", "full":
	default:
		return fmt.Errorf("target %s: profile %q: want triage or full", t.Name, t.Profile)
	}
	if t.List {
		for _, p := range t.Paths {
			if hasMeta(strings.TrimSuffix(strings.TrimSuffix(p, "**"), "*")) {
				return fmt.Errorf("target %s: list path %q: only a trailing ** or * may be a wildcard", t.Name, p)
			}
		}
	}
	if len(t.Paths) == 0 && len(t.Uses) == 0 {
		return fmt.Errorf("target %s: neither paths nor uses", t.Name)
	}
	for _, p := range t.Paths {
		for _, o := range t.OS {
			if err := validGlob(o, p); err != nil {
				return fmt.Errorf("target %s: path %q: %w", t.Name, p, err)
			}
		}
	}
	for _, r := range t.References {
		if !strings.HasPrefix(r, "https://") {
			return fmt.Errorf("target %s: reference %q: want an https URL", t.Name, r)
		}
	}
	if t.MaxSize != "" {
		n, err := ParseSize(t.MaxSize)
		if err != nil || n <= 0 {
			return fmt.Errorf("target %s: max_size %q: want a size like 512MB", t.Name, t.MaxSize)
		}
		t.maxSize = n
	}
	return nil
}

func validGlob(goos, p string) error {
	for _, n := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' && goos == "windows" }) {
		if n == ".." || n == "." {
			return errors.New(`"." and ".." not allowed`)
		}
	}
	root, names := fsaccess.Components(goos, p)
	if root == "" {
		return errors.New("not absolute")
	}
	if goos == "windows" && len(root) < 3 {
		return errors.New("no drive letter")
	}
	for _, n := range names {
		if n == "**" {
			continue
		}
		if strings.Contains(n, "**") {
			return errors.New(`"**" must be a whole name`)
		}
		if _, err := path.Match(n, ""); err != nil {
			return err
		}
	}
	return nil
}

// checkUses reports references to unknown targets and cycles.
func (ts *Targets) checkUses() []error {
	var errs []error
	for _, t := range ts.byName {
		for _, u := range t.Uses {
			if ts.byName[u] == nil {
				errs = append(errs, fmt.Errorf("target %s uses unknown target %s", t.Name, u))
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) bool
	visit = func(n string) bool {
		switch state[n] {
		case 1:
			return false
		case 2:
			return true
		}
		state[n] = 1
		for _, u := range ts.byName[n].Uses {
			if !visit(u) {
				return false
			}
		}
		state[n] = 2
		return true
	}
	for _, n := range ts.Names() {
		if !visit(n) {
			errs = append(errs, fmt.Errorf("target %s: uses form a cycle", n))
			break
		}
	}
	return errs
}

// Names lists every target name, sorted.
func (ts *Targets) Names() []string {
	out := make([]string, 0, len(ts.byName))
	for n := range ts.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Groups lists every group name, sorted.
func (ts *Targets) Groups() []string {
	out := make([]string, 0, len(ts.groups))
	for g := range ts.groups {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

// Get returns a target by name, or nil.
func (ts *Targets) Get(name string) *Target { return ts.byName[name] }

// Select returns the targets to collect for goos and profile, limited to groups (group or target names;
// empty means all) and closed over Uses, sorted by name.
func (ts *Targets) Select(goos, profile string, groups []string) ([]*Target, error) {
	if _, ok := profiles[profile]; !ok {
		return nil, fmt.Errorf("collector: unknown profile %q", profile)
	}
	var start []string
	if len(groups) == 0 {
		start = ts.Names()
	}
	for _, g := range groups {
		switch {
		case ts.groups[g] != nil:
			start = append(start, ts.groups[g]...)
		case ts.byName[g] != nil:
			start = append(start, g)
		default:
			return nil, fmt.Errorf("collector: unknown group or target %q", g)
		}
	}
	named := map[string]bool{}
	for _, g := range groups {
		named[g] = ts.byName[g] != nil
	}
	seen := map[string]bool{}
	var out []*Target
	var add func(name string, used bool)
	add = func(name string, used bool) {
		t := ts.byName[name]
		if seen[name] || !slices.Contains(t.OS, goos) {
			return
		}
		// Full-only targets need the full profile, unless named on their own or used by another target.
		if !used && !named[name] && t.Profile == "full" && profile != "full" {
			return
		}
		seen[name] = true
		out = append(out, t)
		for _, u := range t.Uses {
			add(u, true)
		}
	}
	for _, n := range start {
		add(n, false)
	}
	// Specific targets go first, so a file both they and a catch-all like /var/log/** match is labelled
	// with the specific target.
	sort.Slice(out, func(i, j int) bool {
		ci, cj := out[i].catchAll(), out[j].catchAll()
		if ci != cj {
			return cj
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// ParseSize parses sizes like "512", "10KB", "10MB", "4GB" (binary multiples).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"TB", 1 << 40}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("collector: bad size %q", s)
	}
	return n * mult, nil
}
