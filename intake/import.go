package intake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/quarry-dfir/quarry"
)

// Import is a package an analyst uploads by hand.
type Import struct {
	ProjectID int64
	// HostName names the host the package is from; empty takes the manifest's host name, or the
	// file name without its extensions.
	HostName string
	FileName string    // as the analyst's browser sent it; kept in the chain of custody
	Body     io.Reader // the archive
	Actor    string    // who uploads, e.g. "user:alice"
	ActorID  int64     // 0 when not a user
	IP       string
}

// Archive kinds Import accepts, by their first bytes.
const (
	archiveZip   = "zip"
	archiveGzip  = "tar.gz"
	archiveTar   = "tar"
	sniffArchive = 512
)

// sniff names an archive kind from its first bytes, or "".
func sniff(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")):
		return archiveZip
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return archiveGzip
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return archiveTar
	}
	return ""
}

// Import receives an uploaded package: ours, or a folder-structured zip, tar or tar.gz such as
// KAPE, Velociraptor or UAC write. The bytes are spooled to the upload folder while hashed (at
// most MaxUploadBytes), then stored immutably as the evidence of a new manual acquisition, with
// its chain of custody, and handed to processing (Config.OnReceived) like a collector's package.
// What the archive holds is processing's to judge; Import refuses only what is no archive.
// The caller audits the import (the HTTP layer does for its routes).
func (s *Service) Import(ctx context.Context, in Import) (*quarry.Acquisition, *quarry.Evidence, error) {
	if in.ProjectID <= 0 {
		return nil, nil, quarry.FieldError("project_id", "An import goes into a project.")
	}
	spool, err := os.CreateTemp(s.cfg.UploadDir, "import-*.part")
	if err != nil {
		return nil, nil, fmt.Errorf("intake: import: %w", err)
	}
	defer func() {
		spool.Close()
		os.Remove(spool.Name())
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(spool, h), io.LimitReader(in.Body, s.cfg.MaxUploadBytes+1))
	if err != nil {
		return nil, nil, quarry.Errorf(quarry.EINVALID, "The upload broke off after %d bytes: %v.", n, err)
	}
	if n > s.cfg.MaxUploadBytes {
		return nil, nil, quarry.Errorf(quarry.EINVALID, "The package is larger than the limit of %d bytes.", s.cfg.MaxUploadBytes)
	}
	head := make([]byte, sniffArchive)
	m, _ := spool.ReadAt(head, 0)
	kind := sniff(head[:m])
	if kind == "" {
		return nil, nil, quarry.Errorf(quarry.EINVALID, "%q is not a zip, tar or tar.gz archive.", in.FileName)
	}
	sum := hex.EncodeToString(h.Sum(nil))

	var info *manifestInfo
	if kind == archiveZip {
		info, _ = readManifest(spool, n) // a foreign zip has no manifest: processing finds its layout
	}
	host := strings.TrimSpace(in.HostName)
	if host == "" && info != nil {
		host = info.Hostname
	}
	if host == "" {
		host = hostFromFileName(in.FileName)
	}
	a := &quarry.Acquisition{ProjectID: in.ProjectID, HostName: clean(host), Source: quarry.SourceManual,
		Profile: "import", State: quarry.AcquisitionUploading, CreatedBy: in.ActorID}
	if err := s.cfg.Acquisitions.CreateAcquisition(ctx, a); err != nil {
		return nil, nil, err
	}
	e := &quarry.Evidence{ProjectID: in.ProjectID, AcquisitionID: a.ID, SHA256: sum, Size: n, ReceivedFromIP: in.IP,
		BlobKey: fmt.Sprintf("evidence/import-%d/package.%s", a.ID, kind)}
	if info != nil {
		e.Manifest, e.Hostname, e.CollectorVersion = info.Summary, info.Hostname, info.CollectorVersion
	} else {
		e.Manifest.Format, e.Hostname = kind, a.HostName
	}
	custody := []*quarry.CustodyEntry{
		{Actor: in.Actor, Action: quarry.CustodyUploaded, Details: map[string]any{"bytes": n, "ip": in.IP, "filename": clean(in.FileName), "imported": true}},
		{Actor: "system", Action: quarry.CustodyVerified, Details: map[string]any{"sha256": sum, "computed_by": "server"}},
	}
	if err := s.cfg.Evidence.CreateEvidence(ctx, e, custody); err != nil {
		return nil, nil, err
	}
	if err := s.storeFile(ctx, spool, e.BlobKey, kind); err != nil {
		s.failImport(ctx, a.ID, "The package could not be stored: "+err.Error())
		return nil, nil, fmt.Errorf("intake: import: store evidence %d: %w", e.ID, err)
	}
	s.makeReadOnly(e.BlobKey)
	stored := &quarry.CustodyEntry{EvidenceID: &e.ID, AcquisitionID: a.ID, Actor: "system", Action: quarry.CustodyStored, Details: map[string]any{"blob_key": e.BlobKey}}
	if err := s.cfg.Evidence.RecordCustody(ctx, stored); err != nil {
		return nil, nil, err
	}
	a, err = s.cfg.Acquisitions.TransitionAcquisition(ctx, a.ID, quarry.AcquisitionTransition{State: quarry.AcquisitionReceived, EvidenceID: &e.ID})
	if err != nil {
		return nil, nil, err
	}
	if s.cfg.OnReceived != nil {
		s.cfg.OnReceived(ctx, e)
	}
	return a, e, nil
}

// storeFile writes the spooled file to key; it never overwrites.
func (s *Service) storeFile(ctx context.Context, f *os.File, key, kind string) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ct := map[string]string{archiveZip: "application/zip", archiveGzip: "application/gzip", archiveTar: "application/x-tar"}[kind]
	w, err := s.cfg.Bucket.NewWriter(wctx, key, &blob.WriterOptions{IfNotExist: true, ContentType: ct})
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, f); err != nil {
		cancel()
		w.Close()
		return err
	}
	if err := w.Close(); gcerrors.Code(err) == gcerrors.FailedPrecondition {
		return errors.New("a package is stored under that name already")
	} else if err != nil {
		return err
	}
	return nil
}

// failImport ends an import's acquisition with a reason, logging what it cannot record.
func (s *Service) failImport(ctx context.Context, id int64, msg string) {
	if _, err := s.cfg.Acquisitions.TransitionAcquisition(ctx, id, quarry.AcquisitionTransition{State: quarry.AcquisitionFailed, Error: msg}); err != nil {
		s.cfg.Logger.Error("intake: fail import", "acquisition", id, "err", err)
	}
}

// hostFromFileName guesses a host name from an upload's file name: "web01_triage.tar.gz" → "web01_triage".
func hostFromFileName(name string) string {
	base := path.Base(strings.ReplaceAll(name, `\`, "/"))
	for _, ext := range []string{".gz", ".tgz", ".tar", ".zip"} {
		base = strings.TrimSuffix(base, ext)
	}
	if base == "" || base == "." || base == "/" {
		return "imported"
	}
	return base
}
