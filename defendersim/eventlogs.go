package defendersim

import (
	"github.com/quarry-dfir/quarry/evtx/evtxgen"
	"github.com/quarry-dfir/quarry/simhost"
)

// The emulator's Windows devices carry real event logs (Security, System, PowerShell, Application)
// written with Quarry's EVTX writer from each device's story, so that a collected package has
// something for the timeline and the detections to find.
func init() {
	if err := simhost.RegisterExtra("evtx", evtxgen.WriteHostLogs); err != nil {
		panic(err)
	}
}
