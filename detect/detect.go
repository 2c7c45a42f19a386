// Package detect gives processing its detectors (issue #9): a project's IOC lists, and maps the
// level of a detection (Sigma's informational…critical, also an IOC list's) to the severity of
// the timeline event it tags.
package detect

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/ioc"
)

// Severities maps a detection level to an event severity; levels it does not name leave the
// severity as it is.
type Severities map[string]string

// DefaultSeverities: critical and high are alarms, medium is suspicious; low and informational
// tag the event without raising it.
func DefaultSeverities() Severities {
	return Severities{"critical": quarry.SeverityAlarm, "high": quarry.SeverityAlarm, "medium": quarry.SeveritySuspicious}
}

// ParseSeverities reads a mapping such as "critical=alarm,high=alarm,medium=suspicious,low=none".
func ParseSeverities(s string) (Severities, error) {
	m := Severities{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		level, sev, ok := strings.Cut(part, "=")
		level, sev = strings.ToLower(strings.TrimSpace(level)), strings.ToLower(strings.TrimSpace(sev))
		known := false
		for _, l := range quarry.Levels {
			known = known || l == level
		}
		if !ok || !known {
			return nil, fmt.Errorf("severity mapping %q: want level=severity with a level of %s", part, strings.Join(quarry.Levels, ", "))
		}
		switch sev {
		case quarry.SeverityAlarm, quarry.SeveritySuspicious:
			m[level] = sev
		case "none", "":
		default:
			return nil, fmt.Errorf("severity mapping %q: severity must be alarm, suspicious or none", part)
		}
	}
	return m, nil
}

func rank(sev string) int {
	switch sev {
	case quarry.SeverityAlarm:
		return 2
	case quarry.SeveritySuspicious:
		return 1
	}
	return 0
}

// Of is the highest severity the detections' levels map to: quarry.SeverityAlarm,
// quarry.SeveritySuspicious or "".
func (m Severities) Of(dets []quarry.Detection) string {
	out := ""
	for _, d := range dets {
		if s := m[strings.ToLower(d.Level)]; rank(s) > rank(out) {
			out = s
		}
	}
	return out
}

// Raise sets ev.Severity to the highest of its own and what its detections' levels map to.
func (m Severities) Raise(ev *quarry.Event) {
	if s := m.Of(ev.Detections); rank(s) > rank(ev.Severity) {
		ev.Severity = s
	}
}

// IOC is the detector of a project's IOC lists.
type IOC struct {
	Matcher    *ioc.Matcher
	Severities Severities
}

// Detect tags ev with the indicators found in it.
func (d *IOC) Detect(ev *quarry.Event) {
	if d.Matcher.Len() == 0 {
		return
	}
	hits := d.Matcher.Match(ev)
	if len(hits) == 0 {
		return
	}
	ev.Detections = append(ev.Detections, ioc.Detections(hits)...)
	d.Severities.Raise(ev)
}

// Retag replaces the IOC detections of a stored event by what the lists find now and sets its
// severity again from all its detections. It reports whether the event changed.
func (d *IOC) Retag(ev *quarry.Event) bool {
	before, sev := ev.Detections, ev.Severity
	kept := make([]quarry.Detection, 0, len(before))
	for _, x := range before {
		if x.Kind != KindIOC {
			kept = append(kept, x)
		}
	}
	ev.Detections, ev.Severity = kept, ""
	d.Detect(ev)
	d.Severities.Raise(ev)
	if len(ev.Detections) == 0 {
		ev.Detections = nil
	}
	return ev.Severity != sev || !slices.EqualFunc(before, ev.Detections, sameDetection)
}

func sameDetection(a, b quarry.Detection) bool {
	return a.RuleID == b.RuleID && a.Title == b.Title && a.Level == b.Level && a.Kind == b.Kind && slices.Equal(a.Tags, b.Tags)
}

// KindIOC is the Kind of the detections of IOC lists.
const KindIOC = "ioc"

// Lists builds the IOC detector of a project's lists; with no list it tags nothing, and
// retagging with it removes what lists tagged before. A line of a stored list that no longer
// parses (the format grew stricter) is skipped and reported.
func Lists(ctx context.Context, lists quarry.IOCService, projectID int64, sev Severities) (*IOC, []string, error) {
	stored, err := lists.FindIOCLists(ctx, projectID, false)
	if err != nil {
		return nil, nil, err
	}
	var parsed []ioc.List
	var problems []string
	for _, l := range stored {
		res, err := ioc.ParseText(strings.NewReader(l.Indicators), ioc.Options{})
		if err != nil {
			return nil, nil, fmt.Errorf("IOC list %q: %w", l.Name, err)
		}
		for _, p := range res.Problems {
			problems = append(problems, fmt.Sprintf("IOC list %q line %d: %s", l.Name, p.Line, p.Reason))
		}
		parsed = append(parsed, ioc.List{ID: l.ID, Name: l.Name, Level: l.Level, Indicators: res.Indicators})
	}
	return &IOC{Matcher: ioc.NewMatcher(parsed...), Severities: sev}, problems, nil
}
