package intake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/intake"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
	"github.com/quarry-dfir/quarry/xdr"
)

const testProviderID = "intake_test"

type testProvider struct{ xdr.Provider }

func (testProvider) ID() string { return testProviderID }

func init() { xdr.Register(testProvider{}) }

// lockedBuffer collects a service's log lines, which are written from handler goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// connection creates an XDR connection and returns its id.
func (e *env) connection(name string) int64 {
	e.t.Helper()
	c := &quarry.Connection{Provider: testProviderID, Name: name, TenantID: "tenant-" + name, ClientID: "client-" + name, Cloud: "custom", SecretSealed: "v1.sealed"}
	if err := sqldb.NewConnectionService(e.db).CreateConnection(context.Background(), c); err != nil {
		e.t.Fatalf("CreateConnection(%s): %v", name, err)
	}
	return c.ID
}

// xdrAcquisition creates an acquisition of the connection in state.
func (e *env) xdrAcquisition(conn int64, host, state string) int64 {
	e.t.Helper()
	a := &quarry.Acquisition{ProjectID: e.project.ID, ConnectionID: &conn, HostName: host, Source: quarry.SourceXDR, State: state}
	if err := e.cfg.Acquisitions.CreateAcquisition(context.Background(), a); err != nil {
		e.t.Fatalf("CreateAcquisition(%s): %v", host, err)
	}
	return a.ID
}

func (e *env) enrolToken(conn int64, ttl time.Duration) string {
	e.t.Helper()
	secret, tok, err := e.svc.IssueEnrolToken(context.Background(), conn, ttl)
	if err != nil {
		e.t.Fatalf("IssueEnrolToken(%d): %v", conn, err)
	}
	if !strings.HasPrefix(secret, intake.EnrolTokenPrefix) || !strings.HasPrefix(secret, tok.Prefix) || tok.ConnectionID != conn || tok.Hash == "" || strings.Contains(tok.Hash, secret) {
		e.t.Fatalf("IssueEnrolToken = %q, %+v", tok.Prefix, tok)
	}
	return secret
}

func enrolBody(acq int64) []byte {
	return fmt.Appendf(nil, `{"acquisition_id":%d,"hostname":"web-07","os":"linux"}`, acq)
}

type enrolled struct {
	UploadToken   string    `json:"upload_token"`
	AcquisitionID int64     `json:"acquisition_id"`
	ExpiresAt     time.Time `json:"expires_at"`
}

func TestEnrol(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e := newEnv(t, db, fileBlobURL(t))
		logs := &lockedBuffer{}
		e.cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		e.restart()
		prod, lab := e.connection("prod"), e.connection("lab")
		tokProd, tokLab := e.enrolToken(prod, 0), e.enrolToken(lab, time.Hour)
		old := e.connection("old")
		revoked := e.enrolToken(old, 0)
		if err := e.svc.RevokeEnrolTokens(ctx, old); err != nil {
			t.Fatal(err)
		}
		var secrets []string
		secrets = append(secrets, tokProd, tokLab, revoked)

		launching := e.xdrAcquisition(prod, "web-07", quarry.AcquisitionLaunching)
		collecting := e.xdrAcquisition(prod, "web-08", quarry.AcquisitionCollecting)
		queued := e.xdrAcquisition(prod, "web-09", quarry.AcquisitionWaitingForSlot)
		labAcq := e.xdrAcquisition(lab, "lab-01", quarry.AcquisitionLaunching)
		manual, manualTok := e.manual("laptop")

		t.Run("OK", func(t *testing.T) {
			resp, body := e.do("POST", intake.EnrolPath, tokProd, nil, enrolBody(launching))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("enrol = %s %s", resp.Status, body)
			}
			var got enrolled
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got.UploadToken, intake.TokenPrefix) || got.AcquisitionID != launching || !got.ExpiresAt.Equal(e.clock.Now().Add(intake.DefaultTokenTTL)) {
				t.Fatalf("enrol = %s", body)
			}
			secrets = append(secrets, got.UploadToken)
			// The upload token works; the state is the heartbeats' business, not enrolment's.
			if st := e.status(got.UploadToken); st.State != quarry.AcquisitionLaunching {
				t.Fatalf("state after enrolment = %s, want launching", st.State)
			}
			pkg, sum := makePackage(t, "web-07", 5000, 3)
			e.upload(got.UploadToken, launching, pkg, sum, 2000)
			if st := e.status(got.UploadToken); st.State != quarry.AcquisitionReceived {
				t.Fatalf("state after upload = %+v", st)
			}
			chain, err := e.cfg.Evidence.FindCustody(ctx, launching)
			if err != nil || len(chain) == 0 || chain[0].Action != quarry.CustodyEnrolled || chain[0].Actor != "enrol:"+tokProd[:9] ||
				chain[0].Details["hostname"] != "web-07" || chain[0].Details["os"] != "linux" || chain[0].Details["upload_token_prefix"] != got.UploadToken[:9] {
				t.Fatalf("custody = %+v, %v", chain, err)
			}
			if c := e.custody(launching); c != "enrolled,uploaded,verified,stored" {
				t.Fatalf("custody = %s", c)
			}
			entries, _, err := e.cfg.Audit.FindAuditEntries(ctx, quarry.AuditFilter{Action: "acquisition.enrol", TargetID: strconv.FormatInt(launching, 10)})
			if err != nil || len(entries) != 1 || entries[0].Outcome != quarry.OutcomeSuccess || entries[0].Actor != "enrol:"+tokProd[:9] {
				t.Fatalf("audit = %+v, %v", entries, err)
			}

			// Collecting acquisitions enrol too (the heartbeat of a relaunch came first).
			resp, body = e.do("POST", intake.EnrolPath, tokProd, nil, enrolBody(collecting))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("enrol collecting = %s %s", resp.Status, body)
			}
			json.Unmarshal([]byte(body), &got)
			secrets = append(secrets, got.UploadToken)
		})

		for _, tt := range []struct {
			name, token string
			body        []byte
			status      int
			msg         string
		}{
			{"NoToken", "", enrolBody(labAcq), http.StatusUnauthorized, "enrolment token is required"},
			{"UploadToken", manualTok, enrolBody(manual), http.StatusUnauthorized, "upload token cannot enrol"},
			{"APIToken", "qk_whatever", enrolBody(labAcq), http.StatusUnauthorized, "enrolment token is required"},
			{"UnknownToken", "qe_madeup", enrolBody(labAcq), http.StatusUnauthorized, "not known"},
			{"RevokedToken", revoked, enrolBody(labAcq), http.StatusUnauthorized, "was revoked"},
			{"UnknownAcquisition", tokLab, enrolBody(labAcq + 1000), http.StatusNotFound, fmt.Sprintf("Acquisition %d does not exist", labAcq+1000)},
			{"OtherConnection", tokLab, enrolBody(launching), http.StatusForbidden, "another XDR connection"},
			{"Manual", tokLab, enrolBody(manual), http.StatusForbidden, "manual collection"},
			{"AlreadyEnrolled", tokProd, enrolBody(collecting), http.StatusConflict, "enrolled already"},
			{"Received", tokProd, enrolBody(launching), http.StatusConflict, "is received"},
			{"Waiting", tokProd, enrolBody(queued), http.StatusConflict, "is waiting_for_slot; only an acquisition that is launching or collecting"},
			{"BadJSON", tokLab, []byte(`{"acquisition_id":"7"}`), http.StatusBadRequest, "not the JSON expected"},
			{"UnknownField", tokLab, []byte(`{"acquisition_id":7,"token":"x"}`), http.StatusBadRequest, "not the JSON expected"},
			{"NoAcquisition", tokLab, []byte(`{"hostname":"h"}`), http.StatusBadRequest, "acquisition_id must be a positive"},
			{"TrailingData", tokLab, append(enrolBody(labAcq), "{}"...), http.StatusBadRequest, "after the JSON"},
			{"Huge", tokLab, fmt.Appendf(nil, `{"acquisition_id":%d,"hostname":"%s"}`, labAcq, strings.Repeat("a", 70<<10)), http.StatusBadRequest, "larger than"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				resp, body := e.do("POST", intake.EnrolPath, tt.token, nil, tt.body)
				if resp.StatusCode != tt.status {
					t.Fatalf("enrol = %s %s, want %d", resp.Status, body, tt.status)
				}
				if _, msg := errorOf(t, body); !strings.Contains(msg, tt.msg) {
					t.Fatalf("message %q, want it to mention %q", msg, tt.msg)
				}
			})
		}
		t.Run("RefusalsLeaveNoTrace", func(t *testing.T) {
			// The lab acquisition was asked for with bad bodies and foreign tokens only: it still enrols.
			resp, body := e.do("POST", intake.EnrolPath, tokLab, nil, enrolBody(labAcq))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("enrol lab = %s %s", resp.Status, body)
			}
			var got enrolled
			json.Unmarshal([]byte(body), &got)
			secrets = append(secrets, got.UploadToken)
			entries, _, err := e.cfg.Audit.FindAuditEntries(ctx, quarry.AuditFilter{Action: "acquisition.enrol", TargetID: strconv.FormatInt(launching, 10)})
			if err != nil || len(entries) != 3 || entries[0].Outcome != quarry.OutcomeFailure {
				t.Fatalf("audit of %d = %+v, %v; want the success, the foreign token and the second enrolment", launching, entries, err)
			}
		})
		t.Run("Scope", func(t *testing.T) {
			for _, r := range []struct{ method, path string }{
				{"POST", intake.CollectorPath + "preflight"}, {"POST", intake.CollectorPath + "heartbeat"},
				{"GET", intake.CollectorPath + "status"}, {"POST", intake.BasePath}, {"HEAD", intake.BasePath + "a1-00"},
			} {
				resp, body := e.do(r.method, r.path, tokProd, map[string]string{"Upload-Length": "10"}, []byte(`{"phase":"collecting"}`))
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("%s %s with an enrolment token = %s %s, want 401", r.method, r.path, resp.Status, body)
				}
				if r.method != "HEAD" {
					if _, msg := errorOf(t, body); !strings.Contains(msg, "only enrols") {
						t.Fatalf("%s %s: message %q", r.method, r.path, msg)
					}
				}
			}
			resp, _ := e.do("GET", intake.EnrolPath, tokProd, nil, nil)
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("GET enrol = %s, want 404", resp.Status)
			}
			for _, tt := range []struct {
				name, token, code string
			}{
				{"EnrolToken", tokProd, ""},
				{"UploadToken", manualTok, quarry.EUNAUTHORIZED},
				{"Revoked", revoked, quarry.EUNAUTHORIZED},
				{"None", "", quarry.EUNAUTHORIZED},
			} {
				r := httptest.NewRequest("GET", "/api/v1/collector/download/linux/amd64", nil)
				if tt.token != "" {
					r.Header.Set("Authorization", "Bearer "+tt.token)
				}
				if err := e.svc.AuthorizeEnrolToken(r); quarry.ErrorCode(err) != tt.code && !(tt.code == "" && err == nil) {
					t.Errorf("AuthorizeEnrolToken(%s) = %v, want code %q", tt.name, err, tt.code)
				}
			}
		})
		t.Run("Expired", func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/v1/collector/download/linux/amd64", nil)
			r.Header.Set("Authorization", "Bearer "+tokLab)
			e.clock.Advance(time.Hour - time.Second)
			if err := e.svc.AuthorizeEnrolToken(r); err != nil {
				t.Fatalf("a second before expiry: %v", err)
			}
			e.clock.Advance(time.Second)
			defer e.clock.Advance(-time.Hour)
			if err := e.svc.AuthorizeEnrolToken(r); quarry.ErrorCode(err) != quarry.EUNAUTHORIZED || !strings.Contains(quarry.ErrorMessage(err), "expired at") {
				t.Fatalf("at expiry: %v", err)
			}
			other := e.xdrAcquisition(lab, "lab-02", quarry.AcquisitionLaunching)
			resp, body := e.do("POST", intake.EnrolPath, tokLab, nil, enrolBody(other))
			if _, msg := errorOf(t, body); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(msg, "expired at") {
				t.Fatalf("enrol with an expired token = %s %s", resp.Status, body)
			}
		})
		t.Run("Race", func(t *testing.T) {
			acq := e.xdrAcquisition(prod, "web-10", quarry.AcquisitionLaunching)
			var wg sync.WaitGroup
			var mu sync.Mutex // guards secrets
			statuses := make([]int, 6)
			for i := range statuses {
				wg.Go(func() {
					resp, body := e.do("POST", intake.EnrolPath, tokProd, nil, enrolBody(acq))
					statuses[i] = resp.StatusCode
					if resp.StatusCode == http.StatusOK {
						var got enrolled
						json.Unmarshal([]byte(body), &got)
						mu.Lock()
						secrets = append(secrets, got.UploadToken)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			ok := 0
			for _, s := range statuses {
				switch s {
				case http.StatusOK:
					ok++
				case http.StatusConflict:
				default:
					t.Fatalf("concurrent enrolments answered %v", statuses)
				}
			}
			if ok != 1 {
				t.Fatalf("concurrent enrolments answered %v, want exactly one 200", statuses)
			}
		})
		t.Run("NoSecretsLogged", func(t *testing.T) {
			entries, _, err := e.cfg.Audit.FindAuditEntries(ctx, quarry.AuditFilter{Action: "acquisition."})
			if err != nil {
				t.Fatal(err)
			}
			audit, _ := json.Marshal(entries)
			var custody []byte
			for _, acq := range []int64{launching, collecting, labAcq} {
				chain, _ := e.cfg.Evidence.FindCustody(ctx, acq)
				b, _ := json.Marshal(chain)
				custody = append(custody, b...)
			}
			if !strings.Contains(logs.String(), "acquisition enrolled") {
				t.Fatalf("log lacks the enrolments:\n%s", logs.String())
			}
			for _, s := range secrets {
				if s == "" || strings.Contains(logs.String(), s) || bytes.Contains(audit, []byte(s)) || bytes.Contains(custody, []byte(s)) {
					t.Fatalf("secret %s… is logged, audited or in custody (or empty)", s[:min(len(s), 9)])
				}
			}
		})
	})
}

func TestIssueEnrolToken(t *testing.T) {
	t.Parallel()
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	e := newEnv(t, db, fileBlobURL(t))
	conn := e.connection("prod")
	for _, tt := range []struct {
		name string
		conn int64
		ttl  time.Duration
		code string
	}{
		{"TooShort", conn, 30 * time.Second, quarry.EINVALID},
		{"TooLong", conn, intake.MaxEnrolTokenTTL + time.Hour, quarry.EINVALID},
		{"UnknownConnection", conn + 100, 0, quarry.EINVALID},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := e.svc.IssueEnrolToken(context.Background(), tt.conn, tt.ttl); quarry.ErrorCode(err) != tt.code {
				t.Fatalf("IssueEnrolToken = %v, want %s", err, tt.code)
			}
		})
	}
	t.Run("Default", func(t *testing.T) {
		_, tok, err := e.svc.IssueEnrolToken(context.Background(), conn, 0)
		if err != nil || !tok.ExpiresAt.Equal(e.clock.Now().Add(intake.DefaultEnrolTokenTTL)) || tok.Purpose != quarry.EnrolTokenPurpose {
			t.Fatalf("IssueEnrolToken = %+v, %v", tok, err)
		}
	})
	t.Run("Off", func(t *testing.T) {
		e.cfg.Enrol = nil
		e.restart()
		if _, _, err := e.svc.IssueEnrolToken(context.Background(), conn, 0); quarry.ErrorCode(err) != quarry.EUNAVAILABLE {
			t.Fatalf("IssueEnrolToken without a store = %v", err)
		}
		resp, body := e.do("POST", intake.EnrolPath, "qe_something", nil, enrolBody(1))
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("enrol without a store = %s %s", resp.Status, body)
		}
	})
}
