package intake

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/auth"
)

// EnrolPath is where a collector started by a connection's bootstrap script trades the
// script's enrolment token for its acquisition's upload token.
const EnrolPath = CollectorPath + "enrol"

// MaxEnrolTokenTTL bounds an enrolment token's life: it sits in a Live Response library that
// every operator of the tenant can read, so it must not live long.
const MaxEnrolTokenTTL = 7 * 24 * time.Hour

// prefixOf returns the readable part of a secret, kept for logs: its type prefix and six characters.
func prefixOf(secret, typ string) string { return secret[:len(typ)+6] }

// IssueEnrolToken mints an enrolment token for the XDR connection: until it expires after ttl
// (0: DefaultEnrolTokenTTL) it may download collector builds and enrol acquisitions of that
// connection. The secret is returned once; only its hash is stored.
func (s *Service) IssueEnrolToken(ctx context.Context, connectionID int64, ttl time.Duration) (string, *quarry.EnrolToken, error) {
	if s.cfg.Enrol == nil {
		return "", nil, errEnrolOff
	}
	if ttl == 0 {
		ttl = DefaultEnrolTokenTTL
	}
	if ttl < time.Minute || ttl > MaxEnrolTokenTTL {
		return "", nil, quarry.FieldError("expires_in", "Enrolment tokens live between one minute and %d days.", int(MaxEnrolTokenTTL.Hours()/24))
	}
	secret, hash := auth.NewSecret(EnrolTokenPrefix)
	t := &quarry.EnrolToken{ConnectionID: connectionID, Purpose: quarry.EnrolTokenPurpose, Prefix: prefixOf(secret, EnrolTokenPrefix), Hash: hash, ExpiresAt: s.cfg.Now().Add(ttl)}
	if err := s.cfg.Enrol.CreateEnrolToken(ctx, t); err != nil {
		return "", nil, err
	}
	return secret, t, nil
}

// RevokeEnrolTokens revokes every live enrolment token of the connection (it was deleted, or
// its bootstrap script leaked). Acquisitions that enrolled keep their upload tokens.
func (s *Service) RevokeEnrolTokens(ctx context.Context, connectionID int64) error {
	if s.cfg.Enrol == nil {
		return errEnrolOff
	}
	return s.cfg.Enrol.RevokeEnrolTokens(ctx, connectionID, s.cfg.Now())
}

var errEnrolOff = quarry.Errorf(quarry.EUNAVAILABLE, "Enrolment is not configured on this server.")

// AuthorizeEnrolToken checks that r carries a known enrolment token that is neither expired
// nor revoked. The collector download endpoint calls it; the error says which check failed,
// with code EUNAUTHORIZED.
func (s *Service) AuthorizeEnrolToken(r *http.Request) error {
	_, err := s.AuthenticateEnrolToken(r)
	return err
}

// AuthenticateEnrolToken is AuthorizeEnrolToken that also returns the token (its connection
// and prefix, for logs and the audit).
func (s *Service) AuthenticateEnrolToken(r *http.Request) (*quarry.EnrolToken, error) {
	if s.cfg.Enrol == nil {
		return nil, errEnrolOff
	}
	secret := bearer(r)
	switch {
	case strings.HasPrefix(secret, TokenPrefix):
		return nil, quarry.Errorf(quarry.EUNAUTHORIZED, "An upload token cannot enrol or download; send the enrolment token of the bootstrap script: 'Authorization: Bearer qe_…'.")
	case !strings.HasPrefix(secret, EnrolTokenPrefix):
		return nil, quarry.Errorf(quarry.EUNAUTHORIZED, "An enrolment token is required: send 'Authorization: Bearer qe_…'.")
	}
	t, err := s.cfg.Enrol.FindEnrolTokenByHash(r.Context(), auth.HashSecret(secret))
	if quarry.ErrorCode(err) == quarry.ENOTFOUND {
		return nil, quarry.Errorf(quarry.EUNAUTHORIZED, "The enrolment token is not known to this server: the bootstrap script is from another Quarry server or its token was deleted; re-upload the script.")
	} else if err != nil {
		return nil, err
	}
	switch now := s.cfg.Now(); {
	case t.RevokedAt != nil:
		return nil, quarry.Errorf(quarry.EUNAUTHORIZED, "The enrolment token %s was revoked; the bootstrap script must be re-uploaded with a new one.", t.Prefix)
	case !now.Before(t.ExpiresAt):
		return nil, quarry.Errorf(quarry.EUNAUTHORIZED, "The enrolment token %s expired at %s; the bootstrap script must be re-uploaded with a new one.", t.Prefix, t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return t, nil
}

// bearer returns the secret of an "Authorization: Bearer" header, or "".
func bearer(r *http.Request) string {
	secret, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return strings.TrimSpace(secret)
}

type enrolRequest struct {
	AcquisitionID int64  `json:"acquisition_id"`
	Hostname      string `json:"hostname"`
	OS            string `json:"os"`
}

type enrolResponse struct {
	UploadToken   string    `json:"upload_token"`
	AcquisitionID int64     `json:"acquisition_id"`
	ExpiresAt     time.Time `json:"expires_at"`
}

// handleEnrol issues an acquisition's upload token to the collector that its connection's
// bootstrap script started. Each acquisition enrols once; the state is left to the heartbeats
// (the scheduler owns launching).
func (s *Service) handleEnrol(w http.ResponseWriter, r *http.Request) error {
	t, err := s.AuthenticateEnrolToken(r)
	if err != nil {
		return err
	}
	var req enrolRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.AcquisitionID <= 0 {
		return quarry.FieldError("acquisition_id", "acquisition_id must be a positive acquisition id (the first argument of the bootstrap script).")
	}
	actor, ip := "enrol:"+t.Prefix, s.cfg.ClientIP(r)
	details := map[string]any{"connection_id": t.ConnectionID, "hostname": clean(req.Hostname), "os": clean(req.OS), "ip": ip}
	secret, up, err := s.enrol(r.Context(), t, req.AcquisitionID, actor, details)
	id := strconv.FormatInt(req.AcquisitionID, 10)
	if err != nil {
		if code := quarry.ErrorCode(err); code == quarry.ECONFLICT || code == quarry.EFORBIDDEN {
			// A refused enrolment by a valid token is worth a trace: a wrong id in the script's
			// arguments, a replay, or a token used against another connection's acquisitions.
			details["error"] = quarry.ErrorMessage(err)
			s.audit(r.Context(), actor, ip, "acquisition.enrol", "acquisition", id, quarry.OutcomeFailure, details)
		}
		return err
	}
	details["upload_token_prefix"] = up.Prefix
	s.audit(r.Context(), actor, ip, "acquisition.enrol", "acquisition", id, quarry.OutcomeSuccess, details)
	s.cfg.Logger.Info("intake: acquisition enrolled", "acquisition", up.AcquisitionID, "enrol_token", t.Prefix, "upload_token", up.Prefix, "hostname", details["hostname"])
	writeJSON(w, http.StatusOK, enrolResponse{UploadToken: secret, AcquisitionID: up.AcquisitionID, ExpiresAt: up.ExpiresAt.UTC()})
	return nil
}

// enrol checks that acquisition id may enrol with t and stores its new upload token with a
// custody entry.
func (s *Service) enrol(ctx context.Context, t *quarry.EnrolToken, id int64, actor string, details map[string]any) (string, *quarry.UploadToken, error) {
	a, err := s.cfg.Acquisitions.FindAcquisitionByID(ctx, id)
	if quarry.ErrorCode(err) == quarry.ENOTFOUND {
		return "", nil, quarry.Errorf(quarry.ENOTFOUND, "Acquisition %d does not exist on this server; check the acquisition id the script was run with.", id)
	} else if err != nil {
		return "", nil, err
	}
	switch {
	case a.Source != quarry.SourceXDR || a.ConnectionID == nil:
		return "", nil, quarry.Errorf(quarry.EFORBIDDEN, "Acquisition %d is a manual collection; run the collector with its upload token (--token) instead of enrolling.", id)
	case *a.ConnectionID != t.ConnectionID:
		return "", nil, quarry.Errorf(quarry.EFORBIDDEN, "Acquisition %d belongs to another XDR connection than this enrolment token.", id)
	case a.State != quarry.AcquisitionLaunching && a.State != quarry.AcquisitionCollecting:
		return "", nil, quarry.Errorf(quarry.ECONFLICT, "Acquisition %d is %s; only an acquisition that is launching or collecting can enrol.", id, a.State)
	}
	now := s.cfg.Now()
	secret, hash := auth.NewSecret(TokenPrefix)
	up := &quarry.UploadToken{
		AcquisitionID: a.ID, Purpose: quarry.UploadTokenPurposeUpload, Prefix: prefixOf(secret, TokenPrefix), Hash: hash,
		EnrolTokenID: &t.ID, ExpiresAt: now.Add(DefaultTokenTTL),
	}
	custody := &quarry.CustodyEntry{At: now, Actor: actor, Action: quarry.CustodyEnrolled, Details: map[string]any{}}
	for k, v := range details {
		custody.Details[k] = v
	}
	custody.Details["upload_token_prefix"] = up.Prefix
	if err := s.cfg.Enrol.EnrolAcquisition(ctx, up, []*quarry.CustodyEntry{custody}); err != nil {
		return "", nil, err
	}
	return secret, up, nil
}
