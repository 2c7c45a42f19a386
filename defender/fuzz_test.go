package defender

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzDecode feeds hostile bodies to everything that reads service output: the error parser, the
// entity decoders and the token payload reader. None may panic.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/mde-api/*.json")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"error":{"code":"Forbidden","message":"(Machine.Read.All, Alert.ReadWrite.All)"}}`))
	f.Add([]byte(`{"value":[{"lastUpdateTime":"2024-06-03T09:00:01.53"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, status := range []int{400, 403, 429, 503} {
			h := http.Header{"Retry-After": {string(b)}}
			e := parseAPIError("GET /api/x", famRunLR, status, h, b, time.Unix(0, 0))
			_ = e.Error()
		}
		for _, v := range []any{&collection[Machine]{}, &collection[Alert]{}, &collection[LibraryFile]{}, &MachineAction{}, &ScriptResult{}, &odataString{}} {
			_ = json.Unmarshal(b, v)
		}
		var a MachineAction
		if json.Unmarshal(b, &a) == nil {
			_ = ActionError(&a)
			for _, c := range a.Commands {
				_ = c.ErrorText()
			}
		}
		_, _ = decodeClaims("x." + string(b) + ".y")
	})
}
