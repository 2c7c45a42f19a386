package sqldb

import (
	"context"
	"database/sql"
	"time"

	"github.com/quarry-dfir/quarry"
)

// AcquisitionService stores acquisitions and the history of their states.
type AcquisitionService struct {
	db *DB
}

var _ quarry.AcquisitionService = (*AcquisitionService)(nil)

// NewAcquisitionService returns an AcquisitionService on db.
func NewAcquisitionService(db *DB) *AcquisitionService { return &AcquisitionService{db: db} }

const acquisitionColumns = `id, project_id, connection_id, host_id, host_name, source, profile, state, error,
	progress_phase, progress_files_done, progress_bytes_done, progress_bytes_total, evidence_id,
	last_heartbeat_at, created_by, created_at, updated_at`

func scanAcquisition(s interface{ Scan(...any) error }) (*quarry.Acquisition, error) {
	var a quarry.Acquisition
	var connID, evidenceID, createdBy sql.NullInt64
	err := s.Scan(&a.ID, &a.ProjectID, &connID, &a.HostID, &a.HostName, &a.Source, &a.Profile, &a.State, &a.Error,
		&a.Progress.Phase, &a.Progress.FilesDone, &a.Progress.BytesDone, &a.Progress.BytesTotal, &evidenceID,
		nullTimeCol(&a.LastHeartbeatAt), &createdBy, timeCol(&a.CreatedAt), timeCol(&a.UpdatedAt))
	if err != nil {
		return nil, err
	}
	if connID.Valid {
		a.ConnectionID = &connID.Int64
	}
	if evidenceID.Valid {
		a.EvidenceID = &evidenceID.Int64
	}
	a.CreatedBy = createdBy.Int64
	return &a, nil
}

// CreateAcquisition validates and stores a with its first history entry, setting its ID, times
// and, when zero, CreatedBy from the actor in ctx. An unknown project or connection is EINVALID.
func (s *AcquisitionService) CreateAcquisition(ctx context.Context, a *quarry.Acquisition) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := createAcquisition(ctx, tx, a); err != nil {
		return err
	}
	return tx.Commit()
}

// FindAcquisitionByID returns the acquisition with id and its history, or ENOTFOUND.
func (s *AcquisitionService) FindAcquisitionByID(ctx context.Context, id int64) (*quarry.Acquisition, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return findAcquisitionByID(ctx, tx, id)
}

// FindAcquisitions returns the acquisitions matching filter, newest first, with their
// histories, and how many match in all.
func (s *AcquisitionService) FindAcquisitions(ctx context.Context, filter quarry.AcquisitionFilter) ([]*quarry.Acquisition, int, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	var w where
	if filter.ProjectID != nil {
		w.add("project_id = ?", *filter.ProjectID)
	}
	if filter.State != nil {
		w.add("state = ?", *filter.State)
	}
	var list []*quarry.Acquisition
	total, err := findPage(ctx, tx, "SELECT "+acquisitionColumns, "FROM acquisitions", &w, "created_at DESC, id DESC", filter.Offset, filter.Limit,
		func(rows *sql.Rows) error {
			a, err := scanAcquisition(rows)
			list = append(list, a)
			return err
		})
	if err != nil {
		return nil, 0, translate(err, "find acquisitions", "", "")
	}
	for _, a := range list {
		if a.History, err = acquisitionHistory(ctx, tx, a.ID); err != nil {
			return nil, 0, err
		}
	}
	return list, total, nil
}

// TransitionAcquisition moves acquisition id to t.State if the table of transitions allows it,
// recording the change in its history; ECONFLICT otherwise. Moving to the current state changes
// nothing. t.Error is kept for failed; t.EvidenceID is set when given.
func (s *AcquisitionService) TransitionAcquisition(ctx context.Context, id int64, t quarry.AcquisitionTransition) (*quarry.Acquisition, error) {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	a, err := transitionAcquisition(ctx, tx, id, t)
	if err != nil {
		return nil, err
	}
	return a, tx.Commit()
}

// UpdateAcquisitionProgress stores a heartbeat's progress and time.
func (s *AcquisitionService) UpdateAcquisitionProgress(ctx context.Context, id int64, p quarry.Progress, at time.Time) error {
	if err := p.Validate(); err != nil {
		return err
	}
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.exec(ctx, `UPDATE acquisitions SET progress_phase = ?, progress_files_done = ?, progress_bytes_done = ?,
		progress_bytes_total = ?, last_heartbeat_at = ?, updated_at = ? WHERE id = ?`,
		p.Phase, p.FilesDone, p.BytesDone, p.BytesTotal, at, tx.now, id)
	if err != nil {
		return translate(err, "update acquisition progress", "", "")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return quarry.Errorf(quarry.ENOTFOUND, "Acquisition not found.")
	}
	return tx.Commit()
}

func createAcquisition(ctx context.Context, tx *Tx, a *quarry.Acquisition) error {
	if err := a.Validate(); err != nil {
		return err
	}
	if a.CreatedBy == 0 {
		a.CreatedBy = quarry.UserIDFromContext(ctx)
	}
	createdBy := sql.NullInt64{Int64: a.CreatedBy, Valid: a.CreatedBy != 0}
	a.CreatedAt, a.UpdatedAt = tx.now, tx.now
	err := tx.queryRow(ctx, `INSERT INTO acquisitions (project_id, connection_id, host_id, host_name, source, profile, state, error,
		progress_phase, progress_files_done, progress_bytes_done, progress_bytes_total, evidence_id, last_heartbeat_at,
		created_by, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		a.ProjectID, a.ConnectionID, a.HostID, a.HostName, a.Source, a.Profile, a.State, a.Error,
		a.Progress.Phase, a.Progress.FilesDone, a.Progress.BytesDone, a.Progress.BytesTotal, a.EvidenceID, a.LastHeartbeatAt,
		createdBy, a.CreatedAt, a.UpdatedAt).Scan(&a.ID)
	if err != nil {
		return translate(err, "create acquisition", "", "")
	}
	a.History = nil
	return addHistory(ctx, tx, a, a.State)
}

func addHistory(ctx context.Context, tx *Tx, a *quarry.Acquisition, state string) error {
	_, err := tx.exec(ctx, "INSERT INTO acquisition_history (acquisition_id, state, at) VALUES (?, ?, ?)", a.ID, state, tx.now)
	if err != nil {
		return translate(err, "record acquisition history", "", "")
	}
	a.History = append(a.History, quarry.StateChange{State: state, At: tx.now})
	return nil
}

func findAcquisitionByID(ctx context.Context, tx *Tx, id int64) (*quarry.Acquisition, error) {
	a, err := scanAcquisition(tx.queryRow(ctx, "SELECT "+acquisitionColumns+" FROM acquisitions WHERE id = ?", id))
	if err != nil {
		return nil, translate(err, "find acquisition", "Acquisition not found.", "")
	}
	if a.History, err = acquisitionHistory(ctx, tx, id); err != nil {
		return nil, err
	}
	return a, nil
}

func acquisitionHistory(ctx context.Context, tx *Tx, id int64) ([]quarry.StateChange, error) {
	rows, err := tx.query(ctx, "SELECT state, at FROM acquisition_history WHERE acquisition_id = ? ORDER BY id", id)
	if err != nil {
		return nil, translate(err, "find acquisition history", "", "")
	}
	defer rows.Close()
	history := []quarry.StateChange{}
	for rows.Next() {
		var c quarry.StateChange
		if err := rows.Scan(&c.State, timeCol(&c.At)); err != nil {
			return nil, translate(err, "find acquisition history", "", "")
		}
		history = append(history, c)
	}
	return history, translate(rows.Err(), "find acquisition history", "", "")
}

func transitionAcquisition(ctx context.Context, tx *Tx, id int64, t quarry.AcquisitionTransition) (*quarry.Acquisition, error) {
	if !quarry.ValidAcquisitionState(t.State) {
		return nil, quarry.FieldError("state", "Unknown acquisition state %q.", t.State)
	}
	a, err := findAcquisitionByID(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	if a.State == t.State {
		return a, nil
	}
	if !quarry.CanTransitionAcquisition(a.State, t.State) {
		return nil, quarry.Errorf(quarry.ECONFLICT, "Acquisition %d cannot go from %s to %s.", id, a.State, t.State)
	}
	if quarry.AcquisitionTerminal(a.State) && a.EvidenceID == nil {
		// Only a reprocess leaves a final state, and only with a package to process.
		return nil, quarry.Errorf(quarry.ECONFLICT, "Acquisition %d has no package to process.", id)
	}
	if quarry.AcquisitionTerminal(a.State) {
		a.Error = "" // the verdict of the earlier run; the new run gives its own
	}
	prev := a.State
	a.State, a.UpdatedAt = t.State, tx.now
	if t.Error != "" {
		a.Error = t.Error
	}
	if t.EvidenceID != nil {
		a.EvidenceID = t.EvidenceID
	}
	// The state is part of the WHERE clause so that two servers racing on one acquisition
	// cannot both apply a transition from the same state.
	res, err := tx.exec(ctx, "UPDATE acquisitions SET state = ?, error = ?, evidence_id = ?, updated_at = ? WHERE id = ? AND state = ?",
		a.State, a.Error, a.EvidenceID, a.UpdatedAt, id, prev)
	if err != nil {
		return nil, translate(err, "transition acquisition", "", "")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, quarry.Errorf(quarry.ECONFLICT, "Acquisition %d changed state meanwhile; try again.", id)
	}
	return a, addHistory(ctx, tx, a, a.State)
}
