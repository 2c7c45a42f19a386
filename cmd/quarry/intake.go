package main

import (
	"context"
	"path/filepath"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/collectorbin"
	"github.com/quarry-dfir/quarry/intake"
	"github.com/quarry-dfir/quarry/sqldb"
)

// openIntake builds the receipt of collector uploads and hands it to the HTTP server (which
// must exist: intake answers errors through it). Partial uploads live under <data>/uploads.
func (m *Main) openIntake(ctx context.Context, blobURL string, audit quarry.AuditService) error {
	acquisitions, evidence := sqldb.NewAcquisitionService(m.DB), sqldb.NewEvidenceService(m.DB)
	svc, err := intake.New(intake.Config{
		Acquisitions: acquisitions, Evidence: evidence, Tokens: sqldb.NewUploadTokenService(m.DB), Enrol: sqldb.NewEnrolTokenService(m.DB), Audit: audit,
		Bucket: m.Blobs, BlobURL: blobURL, UploadDir: filepath.Join(m.Config.DataDir, "uploads"),
		PublicURL: m.Config.PublicURL, MaxUploadBytes: m.Config.MaxUploadBytes, Logger: m.Logger.With("part", "intake"),
		WriteError: m.HTTP.WriteAPIError, ClientIP: m.HTTP.ClientIP,
	})
	if err != nil {
		return err
	}
	// A package that arrived just before a crash gets its verdict now; one that cannot (the
	// store is down) is retried when its collector asks for the status, so start-up goes on.
	if err := svc.Recover(ctx); err != nil {
		m.Logger.Error("intake: recover finished uploads", "err", err)
	}
	m.Intake = svc
	m.Collectors = collectorbin.New(filepath.Join(m.Config.DataDir, "collector"), m.Config.CollectorDir, Version, m.Logger.With("part", "collectorbin"))
	m.HTTP.CollectorDownloads = m.Collectors.Handler(svc.AuthorizeEnrolToken)
	m.HTTP.Intake, m.HTTP.Acquisitions, m.HTTP.Evidence = svc, acquisitions, evidence
	return nil
}
