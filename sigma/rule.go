package sigma

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Rule is one Sigma rule as read from YAML, before it is compiled for a RuleSet.
type Rule struct {
	ID          string
	Title       string
	Status      string
	Level       string // lower case: informational, low, medium, high, critical
	Description string
	Tags        []string
	Logsource   Logsource
	Path        string // where it was loaded from (set by ReadFS and ReadDirs)

	// The detection: its search identifiers in file order and its condition strings (a list
	// condition is several, any of which matches).
	searches   []search
	conditions []string
}

// Logsource says which events a rule is about.
type Logsource struct {
	Product  string
	Category string
	Service  string
}

func (l Logsource) String() string {
	var parts []string
	for _, p := range [][2]string{{"product", l.Product}, {"category", l.Category}, {"service", l.Service}} {
		if p[1] != "" {
			parts = append(parts, p[0]+"="+p[1])
		}
	}
	if len(parts) == 0 {
		return "(empty logsource)"
	}
	return strings.Join(parts, " ")
}

// search is one search identifier of a detection: a list of alternatives, any of which matches.
type search struct {
	Name string
	alts []alt
}

// alt is one alternative of a search: every field condition must hold (a Sigma map). A keyword
// list is one alt per keyword, each with a single condition on Field "".
type alt struct {
	conds []fieldCond
}

// fieldCond is one key of a detection map: a field (or "" for keywords), its modifiers and values
// (a list is any of them, or all with the all modifier).
type fieldCond struct {
	Field  string
	mods   []string
	values []ruleValue
}

// ruleValue is one YAML scalar of a detection.
type ruleValue struct {
	S    string // the scalar as written
	Null bool   // YAML null (~, null or nothing)
	Kind valueKind
}

// valueKind is the YAML type of a ruleValue.
type valueKind uint8

// The kinds of ruleValue.
const (
	kindString valueKind = iota
	kindInt
	kindFloat
	kindBool
	kindNull
)

// maxRuleSize bounds one rule file: the largest SigmaHQ rules are tens of kilobytes.
const maxRuleSize = 1 << 20

// ErrUnsupported is wrapped by errors for rules that are valid Sigma but that this evaluator cannot
// run (aggregations, correlations, placeholders, regular expressions RE2 cannot compile…).
var ErrUnsupported = errors.New("unsupported")

type unsupportedError struct{ reason string }

func (e *unsupportedError) Error() string { return "unsupported: " + e.reason }
func (e *unsupportedError) Unwrap() error { return ErrUnsupported }

func unsupported(format string, args ...any) error {
	return &unsupportedError{reason: fmt.Sprintf(format, args...)}
}

// Reason returns the short reason of an unsupported error ("" for other errors), for statistics.
func Reason(err error) string {
	var u *unsupportedError
	if errors.As(err, &u) {
		return u.reason
	}
	return ""
}

type yamlRule struct {
	ID          string    `yaml:"id"`
	Title       string    `yaml:"title"`
	Status      string    `yaml:"status"`
	Level       string    `yaml:"level"`
	Description string    `yaml:"description"`
	Tags        []string  `yaml:"tags"`
	Logsource   yaml.Node `yaml:"logsource"`
	Detection   yaml.Node `yaml:"detection"`
	Correlation yaml.Node `yaml:"correlation"`
	Action      string    `yaml:"action"`
}

// ParseRule reads one Sigma rule. A file with several YAML documents (Sigma 1 rule collections) is
// unsupported; so are correlation rules. Errors wrap ErrUnsupported when the rule is valid Sigma
// that this evaluator cannot run.
func ParseRule(data []byte) (r *Rule, err error) {
	if len(data) > maxRuleSize {
		return nil, fmt.Errorf("rule is %d bytes, more than the %d a rule may have", len(data), maxRuleSize)
	}
	defer func() {
		// yaml.v3 has panicked on hostile documents before; a bad rule must not take the loader down.
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("yaml: %v", p)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var yr yamlRule
	if err := dec.Decode(&yr); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file")
		}
		return nil, fmt.Errorf("yaml: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, unsupported("several YAML documents in one file (a Sigma 1 rule collection)")
	}
	if yr.Action != "" {
		return nil, unsupported("rule collection action %q", yr.Action)
	}
	if !yr.Correlation.IsZero() {
		return nil, unsupported("correlation rule (needs state across events)")
	}
	r = &Rule{ID: yr.ID, Title: yr.Title, Status: yr.Status, Level: strings.ToLower(strings.TrimSpace(yr.Level)),
		Description: yr.Description, Tags: yr.Tags}
	if r.Title == "" {
		return nil, errors.New("rule has no title")
	}
	if err := parseLogsource(&yr.Logsource, &r.Logsource); err != nil {
		return r, err
	}
	if err := parseDetection(&yr.Detection, r); err != nil {
		return r, err
	}
	return r, nil
}

func parseLogsource(n *yaml.Node, ls *Logsource) error {
	if n.IsZero() {
		return errors.New("rule has no logsource")
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: logsource is not a map", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			continue
		}
		val := strings.ToLower(strings.TrimSpace(v.Value))
		switch k.Value {
		case "product":
			ls.Product = val
		case "category":
			ls.Category = val
		case "service":
			ls.Service = val
		}
	}
	return nil
}

func parseDetection(n *yaml.Node, r *Rule) error {
	if n.IsZero() {
		return errors.New("rule has no detection")
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: detection is not a map", n.Line)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "condition":
			switch v.Kind {
			case yaml.ScalarNode:
				r.conditions = append(r.conditions, v.Value)
			case yaml.SequenceNode:
				for _, c := range v.Content {
					if c.Kind != yaml.ScalarNode {
						return fmt.Errorf("line %d: condition list holds a non-string", c.Line)
					}
					r.conditions = append(r.conditions, c.Value)
				}
			default:
				return fmt.Errorf("line %d: condition is neither a string nor a list", v.Line)
			}
			continue
		case "timeframe":
			// Only meaningful with an aggregation, which the condition check reports.
			continue
		}
		if seen[k.Value] {
			return fmt.Errorf("line %d: search %q defined twice", k.Line, k.Value)
		}
		seen[k.Value] = true
		s, err := parseSearch(k.Value, v)
		if err != nil {
			return fmt.Errorf("search %q: %w", k.Value, err)
		}
		r.searches = append(r.searches, s)
	}
	if len(r.conditions) == 0 {
		return errors.New("detection has no condition")
	}
	return nil
}

func parseSearch(name string, v *yaml.Node) (search, error) {
	s := search{Name: name}
	switch v.Kind {
	case yaml.MappingNode:
		a, err := parseMap(v)
		if err != nil {
			return s, err
		}
		s.alts = append(s.alts, a)
	case yaml.SequenceNode:
		for _, item := range v.Content {
			switch item.Kind {
			case yaml.MappingNode:
				a, err := parseMap(item)
				if err != nil {
					return s, err
				}
				s.alts = append(s.alts, a)
			case yaml.ScalarNode:
				val, err := scalar(item)
				if err != nil {
					return s, err
				}
				s.alts = append(s.alts, alt{conds: []fieldCond{{values: []ruleValue{val}}}})
			default:
				return s, fmt.Errorf("line %d: a list item is neither a map nor a value", item.Line)
			}
		}
		if len(s.alts) == 0 {
			return s, fmt.Errorf("line %d: empty list", v.Line)
		}
	case yaml.ScalarNode:
		val, err := scalar(v)
		if err != nil {
			return s, err
		}
		s.alts = append(s.alts, alt{conds: []fieldCond{{values: []ruleValue{val}}}})
	default:
		return s, fmt.Errorf("line %d: not a map, list or value", v.Line)
	}
	return s, nil
}

func parseMap(m *yaml.Node) (alt, error) {
	var a alt
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		parts := strings.Split(k.Value, "|")
		fc := fieldCond{Field: parts[0]}
		for _, p := range parts[1:] {
			fc.mods = append(fc.mods, strings.ToLower(strings.TrimSpace(p)))
		}
		switch v.Kind {
		case yaml.ScalarNode:
			val, err := scalar(v)
			if err != nil {
				return a, err
			}
			fc.values = []ruleValue{val}
		case yaml.SequenceNode:
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return a, fmt.Errorf("line %d: field %q: a list item is not a value", item.Line, k.Value)
				}
				val, err := scalar(item)
				if err != nil {
					return a, err
				}
				fc.values = append(fc.values, val)
			}
			if len(fc.values) == 0 {
				// An empty list matches nothing; keep it so the field still counts.
				fc.values = nil
			}
		case yaml.MappingNode:
			return a, unsupported("field %q holds a map (nested detection maps)", k.Value)
		default:
			return a, fmt.Errorf("line %d: field %q: unexpected YAML", v.Line, k.Value)
		}
		a.conds = append(a.conds, fc)
	}
	return a, nil
}

func scalar(n *yaml.Node) (ruleValue, error) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode {
		return ruleValue{}, fmt.Errorf("line %d: not a value", n.Line)
	}
	switch n.Tag {
	case "!!null":
		return ruleValue{Null: true, Kind: kindNull}, nil
	case "!!int":
		// The text as written: 0x1410 compares as text with a string field and as a number with a
		// numeric one.
		if _, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64); err == nil {
			return ruleValue{S: n.Value, Kind: kindInt}, nil
		}
		return ruleValue{S: n.Value, Kind: kindString}, nil
	case "!!float":
		return ruleValue{S: n.Value, Kind: kindFloat}, nil
	case "!!bool":
		return ruleValue{S: strings.ToLower(n.Value), Kind: kindBool}, nil
	}
	return ruleValue{S: n.Value, Kind: kindString}, nil
}
