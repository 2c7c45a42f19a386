package processing

import (
	_ "embed"
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/quarry-dfir/quarry/parse"
)

//go:embed routes.yaml
var routesYAML []byte

// noParser is the parser name of a route that keeps files from being parsed or sniffed.
const noParser = "-"

// route sends files of some targets or host paths to one parser.
type route struct {
	Parser  string   `yaml:"parser"`
	Targets []string `yaml:"targets"`
	Globs   []string `yaml:"globs"`

	targets map[string]bool
	globs   []*regexp.Regexp
}

// Routes is a routing table; the first route that matches wins.
type Routes struct {
	routes []*route
}

// DefaultRoutes returns the embedded routing table (routes.yaml).
func DefaultRoutes() (*Routes, error) { return ParseRoutes(routesYAML) }

// ParseRoutes reads a routing table and checks that every parser exists.
func ParseRoutes(b []byte) (*Routes, error) {
	var doc struct {
		Routes []*route `yaml:"routes"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("processing: routes: %w", err)
	}
	for i, r := range doc.Routes {
		if r.Parser == "" {
			return nil, fmt.Errorf("processing: route %d: no parser", i)
		}
		if _, ok := parse.Lookup(r.Parser); !ok && r.Parser != noParser {
			return nil, fmt.Errorf("processing: route %d: unknown parser %q", i, r.Parser)
		}
		if len(r.Targets) == 0 && len(r.Globs) == 0 {
			return nil, fmt.Errorf("processing: route %d (%s): neither targets nor globs", i, r.Parser)
		}
		r.targets = map[string]bool{}
		for _, t := range r.Targets {
			r.targets[t] = true
		}
		for _, g := range r.Globs {
			re, err := compileGlob(g)
			if err != nil {
				return nil, fmt.Errorf("processing: route %d (%s): glob %q: %w", i, r.Parser, g, err)
			}
			r.globs = append(r.globs, re)
		}
	}
	return &Routes{routes: doc.Routes}, nil
}

// Route returns the parser name for a file collected for target from hostPath ("" when no route
// matches, noParser when a route forbids parsing it).
func (rs *Routes) Route(target, hostPath string) string {
	p := strings.ReplaceAll(hostPath, `\`, "/")
	for _, r := range rs.routes {
		if target != "" && r.targets[target] {
			return r.Parser
		}
		for _, g := range r.globs {
			if g.MatchString(p) {
				return r.Parser
			}
		}
	}
	return ""
}

// targetNames lists every target a route names, for the test that checks them against the
// collector's.
func (rs *Routes) targetNames() []string {
	var out []string
	for _, r := range rs.routes {
		out = append(out, r.Targets...)
	}
	return out
}

// compileGlob turns a glob into an anchored, case-insensitive regular expression.
func compileGlob(g string) (*regexp.Regexp, error) {
	if g == "" {
		return nil, fmt.Errorf("empty glob")
	}
	var b strings.Builder
	b.WriteString("(?i)^")
	for i := 0; i < len(g); i++ {
		switch c := g[i]; c {
		case '*':
			if i+1 < len(g) && g[i+1] == '*' {
				i++
				if i+1 < len(g) && g[i+1] == '/' {
					i++
					b.WriteString("(?:.*/)?") // "**/" also matches no folder at all
				} else {
					b.WriteString(".*")
				}
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}
