package defender

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestDocExamples decodes every JSON sample of mde-api.md (copied into testdata/mde-api) into the
// client's types, encodes it again and checks that every key and value survived. The only
// normalisations are those the types promise: null and "" are the same string, and timestamps compare
// as instants (the service writes seven fractional digits, Go writes as few as needed).
func TestDocExamples(t *testing.T) {
	tests := []struct {
		file string
		into any
	}{
		{"token-claims.json", &Claims{}},
		{"error.json", &errorEnvelope{}},
		{"machines.json", &collection[Machine]{}},
		{"machine-action.json", &MachineAction{}},
		{"liveresponse-request.json", &LiveResponseRequest{}},
		{"result-link.json", &odataString{}},
		{"script-result.json", &ScriptResult{}},
		{"library-files.json", &collection[LibraryFile]{}},
		{"alerts.json", &collection[Alert]{}},
		{"alert-update.json", &AlertUpdate{}},
	}
	files, err := filepath.Glob("testdata/mde-api/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tests) {
		t.Fatalf("testdata/mde-api has %d files, the test knows %d", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata/mde-api", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var want any
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(strings.NewReader(string(raw)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(tt.into); err != nil {
				t.Fatalf("decode into %T: %v", tt.into, err)
			}
			again, err := json.Marshal(tt.into)
			if err != nil {
				t.Fatal(err)
			}
			var got any
			if err := json.Unmarshal(again, &got); err != nil {
				t.Fatal(err)
			}
			for _, diff := range lostIn(want, got, "$") {
				t.Error(diff)
			}
		})
	}
}

// lostIn lists what of want is missing or different in got. Keys only in got are fine (a type may
// write a documented field the sample omits).
func lostIn(want, got any, path string) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{path + ": object became " + describe(got)}
		}
		var out []string
		for k, wv := range w {
			gv, present := g[k]
			if !present {
				out = append(out, path+"."+k+": key lost")
				continue
			}
			out = append(out, lostIn(wv, gv, path+"."+k)...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{path + ": array changed to " + describe(got)}
		}
		var out []string
		for i := range w {
			out = append(out, lostIn(w[i], g[i], path+"["+string(rune('0'+i%10))+"]")...)
		}
		return out
	}
	if sameScalar(want, got) {
		return nil
	}
	return []string{path + ": " + describe(want) + " became " + describe(got)}
}

func sameScalar(want, got any) bool {
	if reflect.DeepEqual(want, got) {
		return true
	}
	ws, wIsStr := want.(string)
	gs, gIsStr := got.(string)
	if (want == nil && gIsStr && gs == "") || (got == nil && wIsStr && ws == "") {
		return true
	}
	if wIsStr && gIsStr {
		wt, err1 := time.Parse(time.RFC3339Nano, ws)
		gt, err2 := time.Parse(time.RFC3339Nano, gs)
		return err1 == nil && err2 == nil && wt.Equal(gt)
	}
	return false
}

func describe(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
