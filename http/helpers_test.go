package http

import (
	"io"
	"log/slog"
)

type errString string

func (e errString) Error() string { return string(e) }

func newTestLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
