package defendersim

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// execCommand runs one LR command on the device and returns the result blob (RunScript, GetFile)
// or the command's error messages.
func (s *Sim) execCommand(ctx context.Context, a *action, cmd LRCommand) (string, []string) {
	d := a.dev
	root, work, err := s.deviceDirs(d, needsRoot(s, cmd))
	if err != nil {
		s.log.Error("defendersim: device file system", "machine", d.m.ID, "err", err)
		return "", []string{"The device could not run the command (internal error)"}
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", []string{"The device could not run the command (internal error)"}
	}
	switch cmd.Type {
	case "PutFile":
		name, _ := cmd.param("FileName")
		f, ok := s.lookupLibrary(name)
		if !ok {
			return "", []string{fmt.Sprintf("File '%s' was not found in the live response library", name)}
		}
		if err := replaceFile(filepath.Join(work, f.entry.FileName), f.data, 0o644, false); err != nil {
			return "", []string{"Failed to write the file on the device"}
		}
		return "", nil
	case "RunScript":
		name, _ := cmd.param("ScriptName")
		args, _ := cmd.param("Args")
		f, ok := s.lookupLibrary(name)
		if !ok {
			return "", []string{fmt.Sprintf("Script '%s' was not found in the live response library", name)}
		}
		if !f.entry.HasParameters {
			// Observed: arguments of a script uploaded without HasParameters never reach it (§5.1).
			args = ""
		}
		res, err := s.runScript(ctx, d, root, work, f, args)
		if err != nil {
			return "", []string{err.Error()}
		}
		b, _ := json.Marshal(res)
		blob, err := s.storeResult(b)
		if err != nil {
			return "", []string{"Failed to upload the script output"}
		}
		return blob, nil
	case "GetFile":
		p, _ := cmd.param("Path")
		data, err := readDeviceFile(d.host.OS, root, work, p)
		if err != nil {
			return "", []string{err.Error()}
		}
		if !s.opts.PlainGetFile {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(data)
			zw.Close()
			data = buf.Bytes()
		}
		blob, err := s.storeResult(data)
		if err != nil {
			return "", []string{"Failed to upload the file"}
		}
		return blob, nil
	}
	return "", []string{"Unsupported command " + cmd.Type}
}

// needsRoot tells whether a command can see the device's simulated file system. GetFile reads
// it; a script reaches it only through QUARRY_ROOT (or the stand-in's {root}), which the
// emulator exports only to scripts that name it. Generating a tree costs tens of milliseconds
// of CPU, which a thousand launches of a script that never looks would spend for nothing.
func needsRoot(s *Sim, cmd LRCommand) bool {
	if cmd.Type != "RunScript" {
		return true
	}
	name, _ := cmd.param("ScriptName")
	f, ok := s.lookupLibrary(name)
	return ok && scriptNamesRoot(f.data)
}

func scriptNamesRoot(script []byte) bool {
	return bytes.Contains(script, []byte("QUARRY_ROOT")) || bytes.Contains(script, []byte("{root}"))
}

// storeResult writes a command result under DataDir and registers its blob path.
func (s *Sim) storeResult(data []byte) (string, error) {
	dir := filepath.Join(s.dataDir, "results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	key := newGUID()
	file := filepath.Join(dir, key)
	if err := replaceFile(file, data, 0o644, false); err != nil {
		return "", err
	}
	return "investigation-actions-data/" + s.tenantID + "/CustomPlaybookCommandOutput/" + key, nil
}

// blobFile maps a blob path to its file under DataDir. Blob names are GUIDs the emulator made.
func (s *Sim) blobFile(blob string) (string, bool) {
	parts := strings.Split(blob, "/")
	switch {
	case len(parts) == 4 && parts[0] == "investigation-actions-data" && parts[2] == "CustomPlaybookCommandOutput":
		if isGUID(parts[3]) {
			return filepath.Join(s.dataDir, "results", parts[3]), true
		}
	case len(parts) == 4 && parts[0] == "investigation-package" && isGUID(parts[2]):
		return filepath.Join(s.dataDir, "packages", parts[2]+".zip"), true
	}
	return "", false
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
		} else if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// signBlob returns an Azure-SAS-like URL for blob that expires at exp.
func (s *Sim) signBlob(blob string, exp time.Time) string {
	se := exp.UTC().Format("2006-01-02T15:04:05.000000000Z")
	q := url.Values{"se": {se}, "sp": {"r"}, "sv": {"2019-07-07"}, "sr": {"b"}, "sig": {s.blobSig(blob, se)}}
	return s.apiURL + "/_blob/" + blob + "?" + q.Encode()
}

func (s *Sim) blobSig(blob, se string) string {
	m := hmac.New(sha256.New, s.blobKey)
	m.Write([]byte(blob + "\n" + se))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func blobError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-ms-error-code", code)
	w.WriteHeader(status)
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>%s</Code><Message>%s\nRequestId:%s\nTime:%s</Message></Error>",
		code, msg, newGUID(), time.Now().UTC().Format(time.RFC3339Nano))
}

// handleBlob serves result and package downloads. Like a SAS URL it needs no Authorization header,
// only a valid signature and an expiry in the future.
func (s *Sim) handleBlob(w http.ResponseWriter, r *http.Request, segs []string) {
	s.count("BlobDownload")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		blobError(w, http.StatusMethodNotAllowed, "UnsupportedHttpVerb", "The resource doesn't support specified Http Verb.")
		return
	}
	blob := strings.Join(segs, "/")
	q := r.URL.Query()
	se, sig := q.Get("se"), q.Get("sig")
	if se == "" || sig == "" || !hmac.Equal([]byte(sig), []byte(s.blobSig(blob, se))) {
		blobError(w, http.StatusForbidden, "AuthenticationFailed", "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.")
		return
	}
	exp, err := time.Parse(time.RFC3339Nano, se)
	if err != nil || !time.Now().Before(exp) {
		blobError(w, http.StatusForbidden, "AuthenticationFailed", "Signed expiry time ["+se+"] must be after signed start time and current time.")
		return
	}
	file, ok := s.blobFile(blob)
	if !ok {
		blobError(w, http.StatusNotFound, "BlobNotFound", "The specified blob does not exist.")
		return
	}
	f, err := os.Open(file)
	if err != nil {
		blobError(w, http.StatusNotFound, "BlobNotFound", "The specified blob does not exist.")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		blobError(w, http.StatusInternalServerError, "InternalError", "The server encountered an internal error.")
		return
	}
	w.Header().Set("x-ms-blob-type", "BlockBlob")
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", st.ModTime(), f)
}

// lrDownloads is where PutFile puts library files on Windows; GetFile of a path there reads the
// device's working folder.
const lrDownloads = `c:\programdata\microsoft\windows defender advanced threat protection\downloads\`

// devicePath maps a path on the device to a slash path relative to the device root. Windows paths
// keep their drive letter as the first folder (C:\Windows → C/Windows); anything that is not an
// absolute path of the device's OS is refused.
func devicePath(osFamily, p string) (string, error) {
	if strings.ContainsRune(p, 0) || p == "" {
		return "", errors.New("invalid path")
	}
	if osFamily == "windows" {
		p = strings.ReplaceAll(p, "/", `\`)
		if len(p) < 3 || p[1] != ':' || p[2] != '\\' || !isLetter(p[0]) {
			return "", fmt.Errorf("path '%s' is not a full path with a drive letter", p)
		}
		rest := path.Clean("/" + strings.ReplaceAll(p[3:], `\`, "/"))
		return strings.ToUpper(p[:1]) + rest, nil
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("path '%s' is not an absolute path", p)
	}
	rel := strings.TrimPrefix(path.Clean(p), "/")
	if osFamily == "macos" {
		// /var, /tmp and /etc are firmlinks to /private/... on macOS; simhost writes the short form.
		for _, short := range []string{"var", "tmp", "etc"} {
			if rel == "private/"+short || strings.HasPrefix(rel, "private/"+short+"/") {
				rel = strings.TrimPrefix(rel, "private/")
			}
		}
	}
	if rel == "" {
		return "", fmt.Errorf("path '%s' is a directory", p)
	}
	return rel, nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// maxGetFile bounds what GetFile reads; the real limit is 3 GB, which no simulated file comes near.
const maxGetFile = 512 << 20

// readDeviceFile returns the bytes of a file on the device. The lookup goes through os.Root, so
// neither ".." nor a symlink can leave the device root; Windows lookups are case-insensitive.
func readDeviceFile(osFamily, root, work, p string) ([]byte, error) {
	dir, rel := root, ""
	if osFamily == "windows" && strings.HasPrefix(strings.ToLower(strings.ReplaceAll(p, "/", `\`)), lrDownloads) {
		dir, rel = work, path.Clean("/" + strings.ReplaceAll(p[len(lrDownloads):], `\`, "/"))[1:]
	} else {
		var err error
		if rel, err = devicePath(osFamily, p); err != nil {
			return nil, err
		}
	}
	rt, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("file '%s' was not found on the device", p)
	}
	defer rt.Close()
	if osFamily == "windows" {
		rel = foldCase(rt, rel)
	}
	f, err := rt.Open(rel)
	if err != nil {
		return nil, fmt.Errorf("file '%s' was not found on the device", p)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		return nil, fmt.Errorf("path '%s' is not a file", p)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxGetFile+1))
	if err != nil {
		return nil, fmt.Errorf("file '%s' could not be read", p)
	}
	if len(data) > maxGetFile {
		return nil, fmt.Errorf("file '%s' is too large", p)
	}
	return data, nil
}

// foldCase finds the on-disk spelling of a Windows path, component by component.
func foldCase(rt *os.Root, rel string) string {
	var out []string
	for _, comp := range strings.Split(rel, "/") {
		cur := strings.Join(out, "/")
		if cur == "" {
			cur = "."
		}
		next := comp
		if _, err := rt.Lstat(path.Join(cur, comp)); errors.Is(err, fs.ErrNotExist) {
			if dirf, err := rt.Open(cur); err == nil {
				entries, _ := dirf.ReadDir(-1)
				dirf.Close()
				for _, e := range entries {
					if strings.EqualFold(e.Name(), comp) {
						next = e.Name()
						break
					}
				}
			}
		}
		out = append(out, next)
	}
	return strings.Join(out, "/")
}

// collectPackage writes the investigation package zip of a CollectInvestigationPackage action.
func (s *Sim) collectPackage(a *action) (string, error) {
	dir := filepath.Join(s.dataDir, "packages")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	s.mu.Lock()
	m := s.machineLocked(a.dev, time.Now())
	s.mu.Unlock()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(name string, data []byte) error {
		w, err := zw.Create(name)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	facts, _ := json.MarshalIndent(m, "", "  ")
	if err := add("SystemInformation/machine.json", facts); err != nil {
		return "", err
	}
	if err := add("README.txt", []byte("Investigation package collected by the Quarry Defender emulator for "+m.ComputerDNSName+".\n")); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	if err := replaceFile(filepath.Join(dir, a.ma.ID+".zip"), buf.Bytes(), 0o644, false); err != nil {
		return "", err
	}
	return "investigation-package/" + s.tenantID + "/" + a.ma.ID + "/WDATP_Investigation_Package.zip", nil
}
