package http

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/quarry-dfir/quarry"
)

func TestDecodeJSON(t *testing.T) {
	type body struct {
		Name    string `json:"name"`
		Enabled bool   `json:"enabled"`
		Count   int    `json:"count"`
	}
	for _, tc := range []struct {
		name, in, ctype string
		field, msg      string
	}{
		{"OK", `{"name":"a","enabled":true,"count":2}`, "application/json", "", ""},
		{"Unknown", `{"nmae":"a"}`, "application/json", "nmae", `Unknown field "nmae".`},
		{"BoolType", `{"enabled":"yes"}`, "application/json", "enabled", `Field "enabled" must be a boolean, not string.`},
		{"IntType", `{"count":"2"}`, "", "count", `Field "count" must be a number, not string.`},
		{"Syntax", `{"name":"a",}`, "application/json", "", "The body is not valid JSON (at byte 13)."},
		{"Empty", ``, "application/json", "", "The request body is empty; send a JSON object."},
		{"Truncated", `{"name":"a"`, "application/json", "", "The body is not valid JSON (it ends too early)."},
		{"Twice", `{}{}`, "application/json", "", "The body must hold one JSON object and nothing after it."},
		{"Form", `name=a`, "application/x-www-form-urlencoded", "", `Send the body as application/json (got "application/x-www-form-urlencoded").`},
		{"TooBig", `{"name":"` + strings.Repeat("a", maxJSONBody) + `"}`, "application/json", "", "The body is larger than 1048576 bytes."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tc.in))
			if tc.ctype != "" {
				r.Header.Set("Content-Type", tc.ctype)
			}
			var b body
			err := decodeJSON(httptest.NewRecorder(), r, &b)
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("decodeJSON = %v", err)
				}
				return
			}
			if quarry.ErrorCode(err) != quarry.EINVALID || quarry.ErrorMessage(err) != tc.msg || quarry.ErrorField(err) != tc.field {
				t.Fatalf("decodeJSON = %q (field %q, code %q), want %q (field %q)", quarry.ErrorMessage(err), quarry.ErrorField(err), quarry.ErrorCode(err), tc.msg, tc.field)
			}
		})
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "/projects",
		"/projects/3":           "/projects/3",
		"/settings?x=1":         "/settings?x=1",
		"//evil.example":        "/projects",
		"/\\evil.example":       "/projects",
		"https://evil.example/": "/projects",
		"javascript:alert(1)":   "/projects",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestErrorStatus(t *testing.T) {
	for code, want := range map[string]int{
		quarry.EINVALID: 400, quarry.EUNAUTHORIZED: 401, quarry.EFORBIDDEN: 403, quarry.ENOTFOUND: 404,
		quarry.ECONFLICT: 409, quarry.ETHROTTLED: 429, quarry.EINTERNAL: 500, "made-up": 500,
	} {
		if got := ErrorStatus(code); got != want {
			t.Errorf("ErrorStatus(%q) = %d, want %d", code, got, want)
		}
	}
}

func TestInternalErrorsHideDetail(t *testing.T) {
	rec := httptest.NewRecorder()
	var logged strings.Builder
	logger := newTestLogger(&logged)
	writeError(logger, rec, httptest.NewRequest("GET", "/x", nil), errString("pq: relation users does not exist at /srv/db.go:12"))
	body := rec.Body.String()
	if rec.Code != http.StatusInternalServerError || strings.Contains(body, "relation") || !strings.Contains(body, `"code":"internal"`) {
		t.Fatalf("internal error response = %d %s", rec.Code, body)
	}
	if !strings.Contains(logged.String(), "relation users") {
		t.Fatalf("internal detail not logged: %q", logged.String())
	}
}

func TestPaging(t *testing.T) {
	for _, tc := range []struct {
		q             string
		offset, limit int
		field         string
	}{
		{"", 0, 50, ""},
		{"page=3&per_page=25", 50, 25, ""},
		{"offset=10&limit=5", 10, 5, ""},
		{"per_page=0", 0, 0, "per_page"},
		{"per_page=501", 0, 0, "per_page"},
		{"page=0", 0, 0, "page"},
		{"offset=-1", 0, 0, "offset"},
		{"limit=abc", 0, 0, "limit"},
	} {
		t.Run(tc.q, func(t *testing.T) {
			off, lim, err := paging(httptest.NewRequest("GET", "/?"+tc.q, nil), 50, 500)
			if tc.field != "" {
				if quarry.ErrorField(err) != tc.field {
					t.Fatalf("paging(%q) err = %v, want field %q", tc.q, err, tc.field)
				}
				return
			}
			if err != nil || off != tc.offset || lim != tc.limit {
				t.Fatalf("paging(%q) = %d, %d, %v; want %d, %d", tc.q, off, lim, err, tc.offset, tc.limit)
			}
		})
	}
}
