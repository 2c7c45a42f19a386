package quarry_test

import (
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
)

func TestAcquisitionTransitions(t *testing.T) {
	for _, tt := range []struct {
		from, to string
		want     bool
	}{
		{quarry.AcquisitionQueued, quarry.AcquisitionWaitingForSlot, true},
		{quarry.AcquisitionWaitingForSlot, quarry.AcquisitionLaunching, true},
		{quarry.AcquisitionLaunching, quarry.AcquisitionCollecting, true},
		{quarry.AcquisitionCollecting, quarry.AcquisitionUploading, true},
		{quarry.AcquisitionUploading, quarry.AcquisitionReceived, true},
		{quarry.AcquisitionReceived, quarry.AcquisitionProcessing, true},
		{quarry.AcquisitionProcessing, quarry.AcquisitionCompleted, true},
		{quarry.AcquisitionOfflinePending, quarry.AcquisitionLaunching, true},
		{quarry.AcquisitionCollecting, quarry.AcquisitionCancelled, true},
		{quarry.AcquisitionUploading, quarry.AcquisitionFailed, true},
		// A reprocess of the received package (the store also wants the package there).
		{quarry.AcquisitionCompleted, quarry.AcquisitionProcessing, true},
		{quarry.AcquisitionFailed, quarry.AcquisitionProcessing, true},
		{quarry.AcquisitionCancelled, quarry.AcquisitionProcessing, false},
		// No way back, no other way out of a final state, no skipping the verdict.
		{quarry.AcquisitionUploading, quarry.AcquisitionCollecting, false},
		{quarry.AcquisitionCollecting, quarry.AcquisitionCompleted, false},
		{quarry.AcquisitionReceived, quarry.AcquisitionCancelled, false},
		{quarry.AcquisitionCompleted, quarry.AcquisitionFailed, false},
		{quarry.AcquisitionFailed, quarry.AcquisitionQueued, false},
		{quarry.AcquisitionCancelled, quarry.AcquisitionCollecting, false},
		{quarry.AcquisitionExpired, quarry.AcquisitionLaunching, false},
		{quarry.AcquisitionQueued, quarry.AcquisitionQueued, false},
		{"made-up", quarry.AcquisitionQueued, false},
	} {
		if got := quarry.CanTransitionAcquisition(tt.from, tt.to); got != tt.want {
			t.Errorf("CanTransitionAcquisition(%s, %s) = %v, want %v", tt.from, tt.to, got, tt.want)
		}
	}
	for _, s := range []string{quarry.AcquisitionCompleted, quarry.AcquisitionFailed, quarry.AcquisitionCancelled, quarry.AcquisitionExpired} {
		if !quarry.AcquisitionTerminal(s) {
			t.Errorf("AcquisitionTerminal(%s) = false", s)
		}
	}
	if quarry.AcquisitionTerminal(quarry.AcquisitionReceived) || quarry.AcquisitionTerminal("made-up") {
		t.Error("received or an unknown state reported terminal")
	}
}

func TestUploadTokenValidate(t *testing.T) {
	testTime := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	ok := quarry.UploadToken{AcquisitionID: 1, Prefix: "qu_abcdef", Hash: "h", ExpiresAt: testTime}
	if err := ok.Validate(); err != nil || ok.Purpose != quarry.UploadTokenPurposeUpload {
		t.Fatalf("Validate = %v, purpose %q", err, ok.Purpose)
	}
	for name, mut := range map[string]func(*quarry.UploadToken){
		"NoAcquisition": func(u *quarry.UploadToken) { u.AcquisitionID = 0 },
		"NoExpiry":      func(u *quarry.UploadToken) { u.ExpiresAt = time.Time{} },
		"NoHash":        func(u *quarry.UploadToken) { u.Hash = "" },
		"BadPurpose":    func(u *quarry.UploadToken) { u.Purpose = "download" },
	} {
		u := ok
		mut(&u)
		if quarry.ErrorCode(u.Validate()) != quarry.EINVALID {
			t.Errorf("%s: Validate = %v, want invalid", name, u.Validate())
		}
	}
}
