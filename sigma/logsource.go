package sigma

import (
	_ "embed"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed logsources.yaml
var logsourcesYAML []byte

// target is one place a logsource's events are (logsources.yaml).
type target struct {
	Source   string              `yaml:"source"`
	Channels []string            `yaml:"channels"`
	EventIDs []int64             `yaml:"event_ids"`
	Fields   map[string]string   `yaml:"fields"`
	Where    map[string][]string `yaml:"where"`
}

type logsourceEntry struct {
	Product  string   `yaml:"product"`
	Category string   `yaml:"category"`
	Service  string   `yaml:"service"`
	Targets  []target `yaml:"targets"`
}

type logsourceMap struct {
	Aliases    map[string]map[string]string `yaml:"aliases"`
	Logsources []logsourceEntry             `yaml:"logsources"`

	byKey map[Logsource][]target
}

// loadLogsources reads the embedded mapping; a defect in it is a programming error that the
// package's tests catch.
func loadLogsources(data []byte) (*logsourceMap, error) {
	var m logsourceMap
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("logsources.yaml: %w", err)
	}
	m.byKey = map[Logsource][]target{}
	for i, e := range m.Logsources {
		k := Logsource{Product: strings.ToLower(e.Product), Category: strings.ToLower(e.Category), Service: strings.ToLower(e.Service)}
		if _, dup := m.byKey[k]; dup {
			return nil, fmt.Errorf("logsources.yaml: entry %d: %s mapped twice", i, k)
		}
		if len(e.Targets) == 0 {
			return nil, fmt.Errorf("logsources.yaml: entry %d: %s has no targets", i, k)
		}
		for _, t := range e.Targets {
			if t.Source == "" {
				return nil, fmt.Errorf("logsources.yaml: entry %d: %s: a target without source", i, k)
			}
		}
		m.byKey[k] = e.Targets
	}
	return &m, nil
}

var defaultLogsources = func() *logsourceMap {
	m, err := loadLogsources(logsourcesYAML)
	if err != nil {
		panic(err)
	}
	return m
}()

func (m *logsourceMap) targets(ls Logsource) ([]target, bool) {
	t, ok := m.byKey[ls]
	return t, ok
}

// fieldName is the event field a rule's field names on target t.
func (m *logsourceMap) fieldName(t *target, name string) string {
	if n, ok := t.Fields[name]; ok {
		return n
	}
	for k, n := range t.Fields {
		if strings.EqualFold(k, name) {
			return n
		}
	}
	if n, ok := m.Aliases[t.Source][name]; ok {
		return n
	}
	return name
}
