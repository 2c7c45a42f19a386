package intake_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/intake"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

// errorOf decodes the JSON error envelope.
func errorOf(t *testing.T, body string) (code, msg string) {
	t.Helper()
	var env struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return env.Error.Code, env.Error.Message
}

func TestTokenScope(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, fileBlobURL(t))
		acqA, tokA := e.manual("alpha")
		acqB, tokB := e.manual("bravo")
		pkg, sum := makePackage(t, "alpha", 20_000, 7)
		locA := e.create(tokA, len(pkg), metadata(sum, acqA))
		e.patch(tokA, locA, 0, pkg[:5000])
		_, sumB := makePackage(t, "bravo", 10, 8)

		_, tokExpired := e.manual("charlie")

		patchHdr := map[string]string{"Upload-Offset": "5000", "Content-Type": "application/offset+octet-stream"}
		for _, tt := range []struct {
			name, method, path, token string
			hdr                       map[string]string
			body                      []byte
			status                    int
			msg                       string
		}{
			{"NoToken", "HEAD", locA, "", nil, nil, http.StatusUnauthorized, ""},
			{"UnknownToken", "POST", intake.CollectorPath + "heartbeat", "qu_nope", nil, []byte(`{"phase":"collecting"}`), http.StatusUnauthorized, "not known"},
			{"APIToken", "GET", intake.CollectorPath + "status", "qk_whatever", nil, nil, http.StatusUnauthorized, "upload token is required"},
			{"OtherUploadHead", "HEAD", locA, tokB, nil, nil, http.StatusNotFound, ""},
			{"OtherUploadPatch", "PATCH", locA, tokB, patchHdr, []byte("xx"), http.StatusNotFound, "No such upload"},
			{"MadeUpUpload", "PATCH", intake.BasePath + "a1-0000", tokA, patchHdr, []byte("x"), http.StatusNotFound, "No such upload"},
			{"GetData", "GET", locA, tokA, nil, nil, http.StatusForbidden, "only HEAD and PATCH"},
			{"Delete", "DELETE", locA, tokA, nil, nil, http.StatusForbidden, "only HEAD and PATCH"},
			{"MethodOverride", "POST", locA, tokA, map[string]string{"X-HTTP-Method-Override": "GET"}, nil, http.StatusBadRequest, "Override"},
			{"ListUploads", "GET", intake.BasePath, tokA, nil, nil, http.StatusNotFound, ""},
			{"SecondCreate", "POST", intake.BasePath, tokA, map[string]string{"Upload-Length": "10", "Upload-Metadata": metadata(sum, acqA)}, nil, http.StatusConflict, "resume it"},
			{"OtherAcquisition", "POST", intake.BasePath, tokB, map[string]string{"Upload-Length": "10", "Upload-Metadata": metadata(sumB, acqA)}, nil, http.StatusForbidden, "uploads for acquisition " + strconv.FormatInt(acqB, 10)},
		} {
			t.Run(tt.name, func(t *testing.T) {
				resp, body := e.do(tt.method, tt.path, tt.token, tt.hdr, tt.body)
				if resp.StatusCode != tt.status {
					t.Fatalf("%s %s = %s %s, want %d", tt.method, tt.path, resp.Status, body, tt.status)
				}
				if tt.msg != "" {
					if _, msg := errorOf(t, body); !strings.Contains(msg, tt.msg) {
						t.Fatalf("message %q, want it to mention %q", msg, tt.msg)
					}
				}
			})
		}
		t.Run("Expired", func(t *testing.T) {
			e.clock.Advance(intake.DefaultTokenTTL)
			resp, body := e.do("GET", intake.CollectorPath+"status", tokExpired, nil, nil)
			if _, msg := errorOf(t, body); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(msg, "expired") {
				t.Fatalf("status with an expired token = %s %s, want 401 saying it expired", resp.Status, body)
			}
			resp, _ = e.do("HEAD", locA, tokA, nil, nil)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("HEAD with an expired token = %s, want 401", resp.Status)
			}
			e.clock.Advance(-intake.DefaultTokenTTL)
		})
		t.Run("Revoked", func(t *testing.T) {
			if err := e.cfg.Tokens.RevokeUploadTokens(context.Background(), acqB, e.clock.Now()); err != nil {
				t.Fatal(err)
			}
			resp, body := e.do("GET", intake.CollectorPath+"status", tokB, nil, nil)
			if _, msg := errorOf(t, body); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(msg, "revoked") {
				t.Fatalf("status with a revoked token = %s %s", resp.Status, body)
			}
		})
		t.Run("OwnUploadStillWorks", func(t *testing.T) {
			if off := e.head(tokA, locA); off != 5000 {
				t.Fatalf("offset = %d, want 5000 (no refused request may have written)", off)
			}
			e.patch(tokA, locA, 5000, pkg[5000:])
			e.checkReceived(acqA, tokA, pkg, sum)
		})
	})
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, fileBlobURL(t))
		acq, tok := e.manual("delta")
		sum := strings.Repeat("0a", 32)
		good := metadata(sum, acq)
		for _, tt := range []struct {
			name   string
			hdr    map[string]string
			status int
			msg    string
		}{
			{"TooLarge", map[string]string{"Upload-Length": strconv.FormatInt(21<<30, 10), "Upload-Metadata": good}, http.StatusRequestEntityTooLarge, "at most 21474836480"},
			{"NoLength", map[string]string{"Upload-Metadata": good}, http.StatusBadRequest, "Upload-Length"},
			{"NegativeLength", map[string]string{"Upload-Length": "-5", "Upload-Metadata": good}, http.StatusBadRequest, "Upload-Length"},
			{"Empty", map[string]string{"Upload-Length": "0", "Upload-Metadata": good}, http.StatusBadRequest, "empty"},
			{"Deferred", map[string]string{"Upload-Defer-Length": "1", "Upload-Metadata": good}, http.StatusBadRequest, "deferred"},
			{"BadBase64", map[string]string{"Upload-Length": "10", "Upload-Metadata": "filename " + b64("x") + ",sha256 !!notbase64!!"}, http.StatusBadRequest, `"sha256" is not valid base64`},
			{"MissingSHA256", map[string]string{"Upload-Length": "10", "Upload-Metadata": "filename " + b64("x")}, http.StatusBadRequest, "must carry sha256"},
			{"SHA256NotHex", map[string]string{"Upload-Length": "10", "Upload-Metadata": "sha256 " + b64(strings.Repeat("z", 64))}, http.StatusBadRequest, "64 hex digits"},
			{"HugeMetadata", map[string]string{"Upload-Length": "10", "Upload-Metadata": "x " + b64(strings.Repeat("a", 5000))}, http.StatusBadRequest, "longer than"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				resp, body := e.do("POST", intake.BasePath, tok, tt.hdr, nil)
				if resp.StatusCode != tt.status {
					t.Fatalf("create = %s %s, want %d", resp.Status, body, tt.status)
				}
				if _, msg := errorOf(t, body); !strings.Contains(msg, tt.msg) {
					t.Fatalf("message %q, want it to mention %q", msg, tt.msg)
				}
			})
		}
		t.Run("ChunkTooLarge", func(t *testing.T) {
			loc := e.create(tok, 5000, good)
			e.cfg.MaxChunkBytes = 1000
			e.restart()
			resp, body := e.do("PATCH", loc, tok, map[string]string{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, make([]byte, 1001))
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("PATCH of 1001 bytes with a 1000-byte cap = %s %s", resp.Status, body)
			}
			if off := e.head(tok, loc); off != 0 {
				t.Fatalf("offset = %d after a refused chunk", off)
			}
		})
		if a := e.acquisition(acq); a.State != quarry.AcquisitionUploading {
			t.Fatalf("state = %s, want uploading after the one accepted create", a.State)
		}
	})
}

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, fileBlobURL(t))
		acq, tok := e.manual("echo")
		beat := func(token, body string) (int, string) {
			t.Helper()
			resp, b := e.do("POST", intake.CollectorPath+"heartbeat", token, map[string]string{"Content-Type": "application/json"}, []byte(body))
			return resp.StatusCode, b
		}
		if st, b := beat(tok, `{"phase":"collecting","files_done":12,"bytes_done":3400,"bytes_total":0,"message":"evtx"}`); st != http.StatusNoContent {
			t.Fatalf("heartbeat = %d %s", st, b)
		}
		a := e.acquisition(acq)
		if a.Progress != (quarry.Progress{Phase: "collecting", FilesDone: 12, BytesDone: 3400}) || a.LastHeartbeatAt == nil ||
			!a.LastHeartbeatAt.Equal(e.clock.Now()) || a.State != quarry.AcquisitionCollecting {
			t.Fatalf("after collecting heartbeat: %+v", a)
		}
		e.clock.Advance(time.Minute)
		if st, b := beat(tok, `{"phase":"uploading","files_done":40,"bytes_done":100,"bytes_total":900}`); st != http.StatusNoContent {
			t.Fatalf("heartbeat = %d %s", st, b)
		}
		if a = e.acquisition(acq); a.State != quarry.AcquisitionUploading || a.Progress.BytesTotal != 900 || !a.LastHeartbeatAt.Equal(e.clock.Now()) {
			t.Fatalf("after uploading heartbeat: %+v", a)
		}
		// A late "collecting" heartbeat does not move the state back.
		if st, _ := beat(tok, `{"phase":"collecting"}`); st != http.StatusNoContent || e.acquisition(acq).State != quarry.AcquisitionUploading {
			t.Fatalf("late heartbeat: %d, state %s", st, e.acquisition(acq).State)
		}
		for _, bad := range []string{`{"phase":"dancing"}`, `{"phase":"collecting","bytes_done":-1}`, `{}`, `not json`, `{"phase":"done","extra":1}`} {
			if st, b := beat(tok, bad); st != http.StatusBadRequest {
				t.Errorf("heartbeat %s = %d %s, want 400", bad, st, b)
			}
		}
		if st, _ := beat(tok, `{"phase":"failed","message":"disk full"}`); st != http.StatusNoContent {
			t.Fatalf("failed heartbeat = %d", st)
		}
		if a = e.acquisition(acq); a.State != quarry.AcquisitionFailed || a.Error != "collector failed: disk full" {
			t.Fatalf("after failed heartbeat: state %s, error %q", a.State, a.Error)
		}
		if st, b := beat(tok, `{"phase":"collecting"}`); st != http.StatusConflict || !strings.Contains(b, "stop collecting") {
			t.Fatalf("heartbeat on a failed acquisition = %d %s, want 409", st, b)
		}
	})
}

func TestPreflight(t *testing.T) {
	t.Parallel()
	db := sqldbtest.Open(t, sqldb.DialectSQLite) // no store state beyond the token is involved
	e := newEnv(t, db, fileBlobURL(t))
	acq, tok := e.manual("foxtrot")
	probe := make([]byte, 1024)
	for i := range probe {
		probe[i] = byte(i * 7)
	}
	sum := sha256.Sum256(probe)
	req := func(probeB64, probeSum, clientTime string) (int, string) {
		b, _ := json.Marshal(map[string]string{"probe": probeB64, "probe_sha256": probeSum, "client_time": clientTime})
		resp, body := e.do("POST", intake.CollectorPath+"preflight", tok, nil, b)
		return resp.StatusCode, body
	}
	client := e.clock.Now().Add(-90 * time.Second).Format(time.RFC3339Nano)
	st, body := req(base64.StdEncoding.EncodeToString(probe), hex.EncodeToString(sum[:]), client)
	var got struct {
		OK            bool    `json:"ok"`
		ServerTime    string  `json:"server_time"`
		AcquisitionID int64   `json:"acquisition_id"`
		MaxUpload     int64   `json:"max_upload_bytes"`
		Skew          float64 `json:"clock_skew_seconds"`
	}
	if err := json.Unmarshal([]byte(body), &got); st != http.StatusOK || err != nil {
		t.Fatalf("preflight = %d %s", st, body)
	}
	if !got.OK || got.AcquisitionID != acq || got.MaxUpload != intake.DefaultMaxUploadBytes || got.Skew != -90 || got.ServerTime != e.clock.Now().Format(time.RFC3339Nano) {
		t.Fatalf("preflight = %+v", got)
	}
	changed := append([]byte(nil), probe...)
	changed[0] ^= 1
	for _, tt := range []struct{ name, probe, sum, time, msg string }{
		{"Changed", base64.StdEncoding.EncodeToString(changed), hex.EncodeToString(sum[:]), client, "arrived changed"},
		{"NotBase64", "%%%", hex.EncodeToString(sum[:]), client, "base64"},
		{"BadTime", base64.StdEncoding.EncodeToString(probe), hex.EncodeToString(sum[:]), "yesterday", "RFC 3339"},
	} {
		if st, body := req(tt.probe, tt.sum, tt.time); st != http.StatusBadRequest || !strings.Contains(body, tt.msg) {
			t.Errorf("%s: preflight = %d %s, want 400 mentioning %q", tt.name, st, body, tt.msg)
		}
	}
}
