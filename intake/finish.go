package intake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	tusd "github.com/tus/tusd/v2/pkg/handler"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/quarry-dfir/quarry"
)

// finish gives a complete upload its verdict: it hashes the bytes, and either records
// evidence and stores the package immutably under evidence/<id>/package.zip, or fails the
// acquisition and keeps the bytes under rejected/. It is idempotent: a crash at any point
// is recovered by calling it again (Recover, or the status endpoint).
func (s *Service) finish(ctx context.Context, info tusd.FileInfo) error {
	unlock := s.lockUpload(info.ID)
	defer unlock()
	acqID, err := strconv.ParseInt(info.MetaData["acquisition_id"], 10, 64)
	if err != nil {
		return fmt.Errorf("upload %s: no acquisition in its metadata", info.ID)
	}
	a, err := s.cfg.Acquisitions.FindAcquisitionByID(ctx, acqID)
	if err != nil {
		return fmt.Errorf("acquisition %d: %w", acqID, err)
	}
	if a.State != quarry.AcquisitionUploading {
		// The verdict was given already (or the acquisition ended): only the copy is left.
		return s.discard(ctx, info)
	}
	up, err := s.store.GetUpload(ctx, info.ID)
	if err != nil {
		return fmt.Errorf("upload %s: %w", info.ID, err)
	}
	sum, err := sha256Of(up.GetReader(ctx))
	if err != nil {
		return fmt.Errorf("upload %s: hash: %w", info.ID, err)
	}
	declared := info.MetaData["sha256"]
	tokenID, _ := strconv.ParseInt(info.MetaData["token_id"], 10, 64)
	actor := "upload-token:" + info.MetaData["token_prefix"]
	uploaded := &quarry.CustodyEntry{AcquisitionID: a.ID, Actor: actor, Action: quarry.CustodyUploaded, Details: map[string]any{
		"upload_id": info.ID, "bytes": info.Size, "ip": info.MetaData["ip"], "token_id": tokenID, "filename": info.MetaData["filename"],
	}}
	if sum != declared {
		return s.reject(ctx, a, info, up, uploaded, declared, sum)
	}

	// Evidence may exist from an earlier attempt that stopped before the package was stored.
	e, err := s.evidenceOf(ctx, a.ID)
	if err != nil {
		return err
	}
	if e == nil {
		e = &quarry.Evidence{ProjectID: a.ProjectID, AcquisitionID: a.ID, SHA256: sum, Size: info.Size,
			ReceivedFromIP: info.MetaData["ip"], TokenID: tokenID, TokenPrefix: info.MetaData["token_prefix"]}
		verified := &quarry.CustodyEntry{Actor: "system", Action: quarry.CustodyVerified, Details: map[string]any{"sha256": sum}}
		if m, err := s.manifestOf(ctx, up, info.Size); err != nil {
			// The hash matched, so the package is the collector's: keep it and let processing
			// report what is wrong with it.
			verified.Details["manifest_error"] = err.Error()
		} else {
			e.Manifest, e.Hostname, e.CollectorVersion = m.Summary, m.Hostname, m.CollectorVersion
			if m.Problems > 0 {
				verified.Details["package_problems"] = m.Problems
			}
		}
		if err := s.cfg.Evidence.CreateEvidence(ctx, e, []*quarry.CustodyEntry{uploaded, verified}); err != nil {
			return fmt.Errorf("record evidence of acquisition %d: %w", a.ID, err)
		}
	}
	if err := s.storeOnce(ctx, up, e.BlobKey, e.SHA256); err != nil {
		return fmt.Errorf("store evidence %d: %w", e.ID, err)
	}
	stored := &quarry.CustodyEntry{EvidenceID: &e.ID, AcquisitionID: a.ID, Actor: "system", Action: quarry.CustodyStored, Details: map[string]any{"blob_key": e.BlobKey}}
	if err := s.cfg.Evidence.RecordCustody(ctx, stored); err != nil {
		return err
	}
	if _, err := s.cfg.Acquisitions.TransitionAcquisition(ctx, a.ID, quarry.AcquisitionTransition{State: quarry.AcquisitionReceived, EvidenceID: &e.ID}); err != nil {
		return err
	}
	if s.cfg.OnReceived != nil {
		s.cfg.OnReceived(ctx, e)
	}
	s.audit(ctx, actor, info.MetaData["ip"], "evidence.receive", "evidence", strconv.FormatInt(e.ID, 10), quarry.OutcomeSuccess,
		map[string]any{"acquisition_id": a.ID, "sha256": sum, "size": info.Size, "blob_key": e.BlobKey})
	return s.discard(ctx, info)
}

// reject fails the acquisition over a hash mismatch, keeping the bytes for inspection.
func (s *Service) reject(ctx context.Context, a *quarry.Acquisition, info tusd.FileInfo, up tusd.Upload, uploaded *quarry.CustodyEntry, declared, sum string) error {
	key := fmt.Sprintf("rejected/%d/%s.zip", a.ID, info.ID)
	if err := s.storeOnce(ctx, up, key, sum); err != nil {
		return fmt.Errorf("keep rejected upload %s: %w", info.ID, err)
	}
	msg := fmt.Sprintf("hash mismatch: declared %s, received %s", declared, sum)
	if err := s.cfg.Evidence.RecordCustody(ctx, uploaded); err != nil {
		return err
	}
	rejected := &quarry.CustodyEntry{AcquisitionID: a.ID, Actor: "system", Action: quarry.CustodyRejected,
		Details: map[string]any{"reason": msg, "declared_sha256": declared, "sha256": sum, "kept_at": key}}
	if err := s.cfg.Evidence.RecordCustody(ctx, rejected); err != nil {
		return err
	}
	if _, err := s.cfg.Acquisitions.TransitionAcquisition(ctx, a.ID, quarry.AcquisitionTransition{State: quarry.AcquisitionFailed, Error: msg}); err != nil {
		return err
	}
	s.audit(ctx, uploaded.Actor, info.MetaData["ip"], "evidence.reject", "acquisition", strconv.FormatInt(a.ID, 10), quarry.OutcomeFailure,
		map[string]any{"declared_sha256": declared, "sha256": sum, "kept_at": key})
	return s.discard(ctx, info)
}

func (s *Service) evidenceOf(ctx context.Context, acquisitionID int64) (*quarry.Evidence, error) {
	list, _, err := s.cfg.Evidence.FindEvidence(ctx, quarry.EvidenceFilter{AcquisitionID: &acquisitionID, Limit: 1})
	if err != nil || len(list) == 0 {
		return nil, err
	}
	return list[0], nil
}

func (s *Service) manifestOf(ctx context.Context, up tusd.Upload, size int64) (*manifestInfo, error) {
	rc, err := up.GetReader(ctx)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	ra, ok := rc.(io.ReaderAt)
	if !ok {
		return nil, errors.New("the upload store gives no random access")
	}
	return readManifest(ra, size)
}

// sha256Of hashes what an open call returned, and closes it.
func sha256Of(rc io.ReadCloser, err error) (string, error) {
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// storeOnce copies the upload to key unless key exists. Packages are never overwritten: an
// existing blob is accepted only if its bytes hash to sum (an earlier attempt stored it).
func (s *Service) storeOnce(ctx context.Context, up tusd.Upload, key, sum string) error {
	exists, err := s.cfg.Bucket.Exists(ctx, key)
	if err != nil {
		return err
	}
	if !exists {
		err = s.write(ctx, up, key)
		if gcerrors.Code(err) != gcerrors.FailedPrecondition {
			if err == nil {
				s.makeReadOnly(key)
			}
			return err
		}
		// Someone wrote it between Exists and the write: check it like any existing blob.
	}
	got, err := sha256Of(s.cfg.Bucket.NewReader(ctx, key, nil))
	if err != nil {
		return err
	}
	if got != sum {
		return fmt.Errorf("blob %s exists with SHA-256 %s, not %s; refusing to overwrite it", key, got, sum)
	}
	s.makeReadOnly(key)
	return nil
}

func (s *Service) write(ctx context.Context, up tusd.Upload, key string) error {
	rc, err := up.GetReader(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.cfg.Bucket.NewWriter(wctx, key, &blob.WriterOptions{IfNotExist: true, ContentType: "application/zip"})
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, rc); err != nil {
		cancel() // abandons the partial blob
		w.Close()
		return err
	}
	return w.Close()
}

// makeReadOnly drops the write bits of a stored package in a file:// store, so that a slip
// on the server's own disk cannot change evidence either.
func (s *Service) makeReadOnly(key string) {
	if s.root == "" {
		return
	}
	p := filepath.Join(s.root, filepath.FromSlash(key))
	if err := os.Chmod(p, 0o444); err != nil {
		s.cfg.Logger.Warn("intake: make stored package read-only", "path", p, "err", err)
	}
}

// discard deletes the local copy of an upload that has its verdict.
func (s *Service) discard(ctx context.Context, info tusd.FileInfo) error {
	up, err := s.store.GetUpload(ctx, info.ID)
	if err != nil {
		return nil // gone already
	}
	if err := s.store.AsTerminatableUpload(up).Terminate(ctx); err != nil {
		s.cfg.Logger.Warn("intake: remove finished upload", "upload", info.ID, "err", err)
	}
	return nil
}

func (s *Service) audit(ctx context.Context, actor, ip, action, targetType, targetID, outcome string, details map[string]any) {
	e := &quarry.AuditEntry{Actor: actor, IP: ip, Action: action, TargetType: targetType, TargetID: targetID, Outcome: outcome, Details: details}
	if err := s.cfg.Audit.RecordAudit(ctx, e); err != nil {
		s.cfg.Logger.Error("intake: audit write failed", "action", action, "err", err)
	}
}

func (s *Service) lockUpload(id string) (unlock func()) {
	s.mu.Lock()
	m, ok := s.finishing[id]
	if !ok {
		m = &sync.Mutex{}
		s.finishing[id] = m
	}
	s.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// clean makes text from a package fit for the database: valid UTF-8, no NUL, bounded.
func clean(s string) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) > 255 {
		s = strings.ToValidUTF8(s[:255], "")
	}
	return s
}
