package scheduler

import "testing"

// TestLastJSON reads the status line a bootstrap prints after whatever else the shell wrote.
func TestLastJSON(t *testing.T) {
	for _, tt := range []struct {
		name, out  string
		want       status
		wantStatus bool
	}{
		{"Started", `{"status":"started","acquisition":4,"pid":9}` + "\n", status{Status: "started"}, true},
		{"ErrorAfterNoise", "downloading\n{\"status\":\"error\",\"error\":\"checksum mismatch\"}\r\n", status{Status: "error", Error: "checksum mismatch"}, true},
		{"LastWins", "{\"status\":\"error\",\"error\":\"a\"}\n{\"status\":\"started\"}", status{Status: "started"}, true},
		{"SkipsBrokenLast", "{\"status\":\"started\"}\n{\"status\":", status{Status: "started"}, true},
		{"NoStatusField", `{"pid":3}`, status{}, false},
		{"Empty", "", status{}, false},
		{"Hostile", "{" + string(make([]byte, 1<<16)), status{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := lastJSON(tt.out)
			if got != tt.want || ok != tt.wantStatus {
				t.Errorf("lastJSON = %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantStatus)
			}
		})
	}
}
