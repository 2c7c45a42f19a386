package upload

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Enrol trades cfg.Token, the enrolment token ("qe_…") that a connection's bootstrap script
// carries, for the upload token of acquisition acquisitionID, telling the server which host
// enrols (hostname, goos). The server hands out one upload token per acquisition, so the
// caller must keep the one it gets; it is never logged. Transient failures are retried a few
// times; a refusal (the token unknown, expired or revoked, the acquisition unknown, another
// connection's, enrolled already or past collecting) fails at once with the server's words,
// and a refused token wraps ErrUnauthorized.
func Enrol(ctx context.Context, cfg Config, acquisitionID int64, hostname, goos string) (string, error) {
	if acquisitionID <= 0 {
		return "", fmt.Errorf("upload: enrol: acquisition id %d: want a positive number", acquisitionID)
	}
	c, err := New(cfg)
	if err != nil {
		return "", err
	}
	body := map[string]any{"acquisition_id": acquisitionID, "hostname": hostname, "os": goos}
	var res struct {
		UploadToken   string `json:"upload_token"`
		AcquisitionID int64  `json:"acquisition_id"`
	}
	err = c.attempts(ctx, "enrol", func() error {
		return c.postJSON(ctx, "enrol", EnrolPath, body, &res, http.StatusOK)
	})
	switch {
	case err != nil:
		return "", fmt.Errorf("upload: %w", err)
	case res.UploadToken == "" || strings.ContainsAny(res.UploadToken, " \t\r\n"):
		return "", errors.New("upload: enrol: the server sent no usable upload token")
	case res.AcquisitionID != acquisitionID:
		return "", fmt.Errorf("upload: enrol: the server enrolled acquisition %d, not %d", res.AcquisitionID, acquisitionID)
	}
	return res.UploadToken, nil
}
