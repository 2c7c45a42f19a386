package collectorbin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/quarry-dfir/quarry"
)

// DownloadPrefix is the path under which Handler serves builds: DownloadPrefix + "{os}/{arch}".
const DownloadPrefix = "/api/v1/collector/download/"

// Handler serves GET DownloadPrefix{os}/{arch}: the build's bytes with Content-Length and its SHA-256
// in X-Quarry-SHA256. authorize decides who may download (a bootstrap's enrolment token); its error
// is answered 401. Errors use Quarry's envelope {"error":{"code","message"}}.
func (s *Store) Handler(authorize func(r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, quarry.EINVALID, "Use GET to download a collector build.")
			return
		}
		if err := authorize(r); err != nil {
			writeError(w, http.StatusUnauthorized, quarry.EUNAUTHORIZED, "A valid enrolment token is required to download the collector.")
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, DownloadPrefix)
		goos, arch, ok2 := strings.Cut(rest, "/")
		if !ok || !ok2 {
			writeError(w, http.StatusNotFound, quarry.ENOTFOUND, "Use "+DownloadPrefix+"{os}/{arch}.")
			return
		}
		// Only names that Builds produced are looked up, so no path value reaches the file system.
		builds, err := s.Builds(r.Context())
		b, found := builds[goos+"/"+arch]
		if !found {
			msg := fmt.Sprintf("There is no quarry-host build for %q.", goos+"/"+arch)
			if err != nil {
				s.log.Warn("collectorbin: builds incomplete", "err", err)
			}
			writeError(w, http.StatusNotFound, quarry.ENOTFOUND, msg)
			return
		}
		f, err := os.Open(b.Path)
		if err != nil {
			s.log.Error("collectorbin: open build", "path", b.Path, "err", err)
			writeError(w, http.StatusInternalServerError, quarry.EINTERNAL, "The collector build cannot be read.")
			return
		}
		defer f.Close()
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.FormatInt(b.Size, 10))
		h.Set("Content-Disposition", `attachment; filename="`+path.Base(b.Path)+`"`)
		h.Set("X-Quarry-SHA256", b.SHA256)
		h.Set("Cache-Control", "no-store")
		if r.Method == http.MethodHead {
			return
		}
		// Exactly Size bytes: a file replaced since it was hashed must not go out under the old hash
		// and length (the client's pinned hash would reject it anyway).
		if n, err := io.CopyN(w, f, b.Size); err != nil && !errors.Is(err, io.EOF) || n != b.Size {
			s.log.Warn("collectorbin: download cut short", "path", b.Path, "sent", n, "err", err)
		}
	})
}

// writeError writes Quarry's error envelope.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
