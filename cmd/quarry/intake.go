package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/collectorbin"
	"github.com/quarry-dfir/quarry/detect"
	"github.com/quarry-dfir/quarry/fsaccess/archive"
	"github.com/quarry-dfir/quarry/intake"
	"github.com/quarry-dfir/quarry/processing"
	"github.com/quarry-dfir/quarry/sqldb"
)

// openIntake builds the receipt of collector uploads and hands it to the HTTP server (which
// must exist: intake answers errors through it). Partial uploads live under <data>/uploads.
func (m *Main) openIntake(ctx context.Context, blobURL string, audit quarry.AuditService) error {
	acquisitions, evidence := sqldb.NewAcquisitionService(m.DB), sqldb.NewEvidenceService(m.DB)
	// Processing turns received packages into timeline events; intake hands it each package.
	// Tar streams are unpacked under <data>/tmp while they are processed.
	tmp := filepath.Join(m.Config.DataDir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return fmt.Errorf("create the processing folder: %w", err)
	}
	if err := m.loadSigma(); err != nil {
		return err
	}
	proc, err := processing.New(processing.Config{
		Evidence: evidence, Acquisitions: acquisitions, Events: sqldb.NewEventService(m.DB), Audit: audit, Bucket: m.Blobs,
		Lock:      m.DB.WithLock, // one run per evidence item, across servers sharing a PostgreSQL
		Archive:   archive.Limits{TempDir: tmp},
		Logger:    m.Logger.With("part", "processing"),
		Workers:   max(m.processingWorkers(), 1), // 0 leaves the queue out (app.go), not the worker
		Detectors: m.detectors,
	})
	if err != nil {
		return err
	}
	m.Processing = proc
	svc, err := intake.New(intake.Config{
		Acquisitions: acquisitions, Evidence: evidence, Tokens: sqldb.NewUploadTokenService(m.DB), Enrol: sqldb.NewEnrolTokenService(m.DB), Audit: audit,
		Bucket: m.Blobs, BlobURL: blobURL, UploadDir: filepath.Join(m.Config.DataDir, "uploads"),
		PublicURL: m.Config.PublicURL, MaxUploadBytes: m.Config.MaxUploadBytes, Logger: m.Logger.With("part", "intake"),
		WriteError: m.HTTP.WriteAPIError, ClientIP: m.HTTP.ClientIP, OnReceived: proc.OnReceived,
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
	m.HTTP.Intake, m.HTTP.Acquisitions, m.HTTP.Evidence, m.HTTP.Reprocessor = svc, acquisitions, evidence, proc
	m.HTTP.IOCs, m.HTTP.Retagger = sqldb.NewIOCService(m.DB), proc
	return nil
}

// loadSigma loads the Sigma rules processing evaluates, once at start-up, and logs what it
// could not use and why.
func (m *Main) loadSigma() error {
	set, problems, err := detect.LoadSigma(!m.Config.NoBuiltinSigma, m.Config.SigmaRules, m.Config.severities)
	if err != nil {
		return err
	}
	kinds := map[string]int{}
	for _, p := range problems {
		kinds[string(p.Kind)]++
		m.Logger.Debug("Sigma rule left out", "path", p.Path, "rule", p.RuleID, "kind", p.Kind, "reason", p.Reason())
	}
	m.Logger.Info("Sigma rules loaded", "rules", set.Rules.Len(), "folders", len(m.Config.SigmaRules), "builtin", !m.Config.NoBuiltinSigma,
		"left_out", len(problems), "left_out_by_kind", kinds)
	m.sigma = set
	return nil
}

// detectors returns what tags the events of a processing run on a project's evidence: the Sigma
// rules, and the project's IOC lists as they are now.
func (m *Main) detectors(ctx context.Context, projectID int64) ([]processing.Detector, error) {
	var ds []processing.Detector
	if m.sigma != nil && m.sigma.Rules.Len() > 0 {
		ds = append(ds, m.sigma)
	}
	lists, problems, err := detect.Lists(ctx, sqldb.NewIOCService(m.DB), projectID, m.Config.severities)
	if err != nil {
		return nil, err
	}
	for _, p := range problems {
		m.Logger.Warn("processing: IOC list line skipped", "project", projectID, "problem", p)
	}
	return append(ds, lists), nil
}

// processingWorkers is how many packages this server processes at once, 0 for none. SQLite has
// one writer: a second package in processing would only wait for the lock that launches,
// heartbeats and the job queue need too.
func (m *Main) processingWorkers() int {
	switch {
	case m.Config.ProcessingWorkers < 0:
		return 0
	case m.Config.ProcessingWorkers > 0:
		return m.Config.ProcessingWorkers
	case m.DB.Dialect() == sqldb.DialectSQLite:
		return 1
	}
	return processing.DefaultWorkers
}
