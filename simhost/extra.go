package simhost

import (
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Extra writes additional artifacts into a generated tree, after simhost's own files and before the
// marker. It is the extension point for writers that live elsewhere, such as the EVTX writer that will
// fill C/Windows/System32/winevt/Logs from the Story (4625 failures from AttackerIP, the 4624 logon at
// FirstSuccess, the 4720 for AddedUser, the 4698 for the task at PersistencePath). An Extra must be
// deterministic in (h, s) like the rest of the tree, must write only beneath root, and is called for
// every Host; it decides itself which OS it serves. s is the zero Story for hosts that are not compromised.
type Extra func(root string, h Host, s Story) error

var extras = struct {
	sync.Mutex
	m map[string]Extra
}{m: map[string]Extra{}}

// RegisterExtra adds an Extra under a unique name; extras run in name order. Registering changes the
// marker hash, so trees written before the registration are regenerated with the extra on the next
// Generate. It refuses an empty name, a nil function and a duplicate name.
func RegisterExtra(name string, fn Extra) error {
	if name == "" || fn == nil {
		return errors.New("simhost: register extra: empty name or nil function")
	}
	extras.Lock()
	defer extras.Unlock()
	if _, dup := extras.m[name]; dup {
		return fmt.Errorf("simhost: register extra %s: already registered", name)
	}
	extras.m[name] = fn
	return nil
}

func extraNames() []string {
	extras.Lock()
	defer extras.Unlock()
	names := make([]string, 0, len(extras.m))
	for n := range extras.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func extraFunc(name string) Extra {
	extras.Lock()
	defer extras.Unlock()
	return extras.m[name]
}

// unregisterExtra exists for tests, which must leave the registry as they found it.
func unregisterExtra(name string) {
	extras.Lock()
	defer extras.Unlock()
	delete(extras.m, name)
}
