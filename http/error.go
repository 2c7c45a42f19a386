package http

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/quarry-dfir/quarry"
)

// codes maps domain error codes to HTTP statuses; nothing else in Quarry chooses a status.
var codes = map[string]int{
	quarry.ECONFLICT:       http.StatusConflict,
	quarry.EINVALID:        http.StatusBadRequest,
	quarry.ENOTFOUND:       http.StatusNotFound,
	quarry.EUNAUTHORIZED:   http.StatusUnauthorized,
	quarry.EFORBIDDEN:      http.StatusForbidden,
	quarry.ETHROTTLED:      http.StatusTooManyRequests,
	quarry.EUNAVAILABLE:    http.StatusServiceUnavailable,
	quarry.ENOTIMPLEMENTED: http.StatusNotImplemented,
	quarry.EINTERNAL:       http.StatusInternalServerError,
}

// ErrorStatus returns the HTTP status for a domain error code.
func ErrorStatus(code string) int {
	if s, ok := codes[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// errorBody is the JSON error envelope of design.md: {"error":{"code","message"}}.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field,omitempty"`
		ID      string `json:"id,omitempty"` // correlates an internal error with its log line
	} `json:"error"`
}

// describeError returns what may be shown to a user about err, logging internal errors with a
// short id that the user also sees, so a report can be matched to the log without leaking text.
func describeError(logger *slog.Logger, r *http.Request, err error) (status int, body errorBody) {
	code := quarry.ErrorCode(err)
	body.Error.Code, body.Error.Message, body.Error.Field = code, quarry.ErrorMessage(err), quarry.ErrorField(err)
	if code == quarry.EINTERNAL {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		body.Error.ID = hex.EncodeToString(b)
		body.Error.Message = "Internal error (id " + body.Error.ID + "). The server log has the details."
		logger.Error("internal error", "id", body.Error.ID, "method", r.Method, "path", r.URL.Path, "err", err)
	}
	return ErrorStatus(code), body
}

// writeError writes err as the JSON error envelope.
func writeError(logger *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	status, body := describeError(logger, r, err)
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
