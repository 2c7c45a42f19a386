package defender_test

import (
	"errors"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/xdr"
)

// TestCommentAlert adds a comment through the optional xdr.AlertCommenter and reads it back
// from the emulator: the comment lands on the alert once, and the alert's update time moves (so
// an incremental poll sees the change).
func TestCommentAlert(t *testing.T) {
	s := startSim(t, 20)
	c := openSim(t, s, s.DefaultApp(), nil)
	var cl xdr.Client = c
	commenter, ok := cl.(xdr.AlertCommenter)
	if !ok {
		t.Fatal("the Defender client does not implement xdr.AlertCommenter")
	}
	alerts, err := c.ListAlerts(t.Context(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) == 0 {
		t.Fatal("the emulator has no alert at start; seed 11 with 20 machines should have some")
	}
	a := alerts[0]
	const text = "Quarry started acquisition 7: https://quarry.example/acquisitions/7"
	if err := commenter.CommentAlert(t.Context(), a.ID, text); err != nil {
		t.Fatal(err)
	}
	got, err := c.API().GetAlert(t.Context(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, cm := range got.Comments {
		if cm.Comment == text {
			n++
		}
	}
	if n != 1 {
		t.Errorf("comments = %+v, want the comment once", got.Comments)
	}
	if got.LastUpdateTime.Before(a.UpdatedAt) {
		t.Errorf("lastUpdateTime %v went back from %v", got.LastUpdateTime, a.UpdatedAt)
	}
	if err := commenter.CommentAlert(t.Context(), "da000_missing", text); !errors.Is(err, xdr.ErrNotFound) {
		t.Errorf("comment on unknown alert = %v, want ErrNotFound", err)
	}
}
