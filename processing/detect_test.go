package processing_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/detect"
	"github.com/quarry-dfir/quarry/processing"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

// TestIOCListsTagEvents: a project's IOC list, as stored, tags the events of a collected package
// that carry one of its indicators (an address in a log line, a shell command, a live session; a
// collected file's hash) and only those, raising their severity by the list's level.
func TestIOCListsTagEvents(t *testing.T) {
	pkg, _ := collect(t, hostRoot(t))
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	ctx := context.Background()
	iocs := sqldb.NewIOCService(db)
	e := newEnv(t, db, processing.Config{Detectors: func(ctx context.Context, projectID int64) ([]processing.Detector, error) {
		d, problems, err := detect.Lists(ctx, iocs, projectID, detect.DefaultSeverities())
		if err != nil || len(problems) > 0 {
			t.Errorf("detect.Lists = %v, %v, %v", d, problems, err)
			return nil, err
		}
		return []processing.Detector{d}, nil
	}})
	sum := sha256.Sum256([]byte(bashHistory))
	list := &quarry.IOCList{ProjectID: e.pid, Name: "Report 42", Level: "high",
		Indicators: "ip:203.0.113.9\tstager\nsha256:" + hex.EncodeToString(sum[:]) + "\tdropper script\n"}
	if err := iocs.CreateIOCList(ctx, list); err != nil {
		t.Fatal(err)
	}
	ev := e.receive(pkg)
	if err := e.proc.Process(ctx, ev.ID); err != nil {
		t.Fatal(err)
	}
	var tagged []*quarry.Event
	err := e.events.EachEvent(ctx, quarry.EventFilter{ProjectID: e.pid, EvidenceID: ev.ID}, func(x *quarry.Event) error {
		if len(x.Detections) > 0 {
			tagged = append(tagged, x)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var bySource = map[string]int{}
	for _, x := range tagged {
		bySource[x.Source]++
		d := x.Detections[0]
		if d.Kind != "ioc" || d.Level != "high" || x.Severity != quarry.SeverityAlarm || !strings.Contains(d.Title, "Report 42") && !strings.Contains(d.RuleID, "Report 42") {
			t.Errorf("tagged %s event %q: severity %q, detections %+v", x.Source, x.Message, x.Severity, x.Detections)
		}
		text := x.Message + " " + fmt.Sprint(x.Fields)
		if strings.Contains(text, "198.51.100.23") && !strings.Contains(text, "203.0.113.9") && x.Source != processing.SourceFile {
			t.Errorf("event without the indicator tagged: %q", x.Message)
		}
	}
	// auth.log "Accepted ... from 203.0.113.9", the curl command, alice's live session from it,
	// and the file events of the history file whose hash is listed.
	if bySource["auth.log"] != 1 || bySource["bash_history"] != 1 || bySource["livestate"] != 1 || bySource[processing.SourceFile] == 0 {
		t.Errorf("tagged events by source = %v", bySource)
	}
	for _, x := range tagged {
		if x.Source == processing.SourceFile && !strings.Contains(x.Message, ".bash_history") {
			t.Errorf("file event tagged that is not the listed file: %q", x.Message)
		}
	}
	if r := e.evidence(ev.ID).Processing; r == nil || r.Detections != int64(len(tagged)) {
		t.Errorf("report counts %+v detections, want %d", r, len(tagged))
	}

	// The list changes: retagging moves the tags to the new indicator's events, and a star on
	// an event stays (retagging is not reprocessing).
	first := tagged[0]
	if _, err := e.events.StarEvents(ctx, e.pid, []int64{first.ID}, true); err != nil {
		t.Fatal(err)
	}
	list.Indicators = "ip:198.51.100.23\tscanner\n"
	list.Level = "medium"
	if err := iocs.UpdateIOCList(ctx, list); err != nil {
		t.Fatal(err)
	}
	n, err := e.proc.Retag(ctx, e.pid)
	if err != nil {
		t.Fatal(err)
	}
	retagged := map[string]int{}
	err = e.events.EachEvent(ctx, quarry.EventFilter{ProjectID: e.pid, EvidenceID: ev.ID}, func(x *quarry.Event) error {
		if len(x.Detections) == 0 {
			if x.Severity != "" {
				t.Errorf("untagged event %q keeps severity %q", x.Message, x.Severity)
			}
			return nil
		}
		retagged[x.Source]++
		if x.Severity != quarry.SeveritySuspicious || !strings.Contains(x.Message+fmt.Sprint(x.Fields), "198.51.100.23") {
			t.Errorf("retagged event %q: severity %q", x.Message, x.Severity)
		}
		if x.ID == first.ID && !x.Starred {
			t.Error("retagging lost a star")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// auth.log "Failed password ... from 198.51.100.23" and the live connection to it.
	if retagged["auth.log"] != 1 || retagged["livestate"] != 1 || len(retagged) != 2 {
		t.Errorf("retagged by source = %v", retagged)
	}
	if n != int64(len(tagged)+2) {
		t.Errorf("Retag changed %d events, want %d untagged + 2 tagged", n, len(tagged))
	}

	// No list any more: nothing stays tagged. A second retag changes nothing.
	if err := iocs.DeleteIOCList(ctx, list.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := e.proc.Retag(ctx, e.pid); err != nil || n != 2 {
		t.Errorf("Retag after delete = %d, %v; want 2", n, err)
	}
	if n, err := e.proc.Retag(ctx, e.pid); err != nil || n != 0 {
		t.Errorf("Retag again = %d, %v; want 0", n, err)
	}
	page, err := e.events.FindEvents(ctx, quarry.EventFilter{ProjectID: e.pid, Severities: []string{quarry.SeverityAlarm, quarry.SeveritySuspicious}})
	if err != nil || page.Total != 0 {
		t.Errorf("events with a severity after the list is gone: %d, %v", page.Total, err)
	}
}
