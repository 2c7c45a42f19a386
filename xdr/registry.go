package xdr

import (
	"fmt"
	"regexp"
	"sort"
	"sync"
)

var (
	mu        sync.RWMutex
	providers = map[string]Provider{}
	idRE      = regexp.MustCompile(`^[a-z][a-z0-9_]{1,31}$`)
)

// Register adds a provider; provider packages call it from init. It panics on an empty,
// malformed or duplicate ID, which is a programming error found at start-up.
func Register(p Provider) {
	mu.Lock()
	defer mu.Unlock()
	id := p.ID()
	if !idRE.MatchString(id) {
		panic(fmt.Sprintf("xdr: provider id %q must be 2-32 lower-case letters, digits or _", id))
	}
	if _, dup := providers[id]; dup {
		panic(fmt.Sprintf("xdr: provider %q registered twice", id))
	}
	providers[id] = p
}

// Lookup returns the registered provider with the ID.
func Lookup(id string) (Provider, bool) {
	mu.RLock()
	defer mu.RUnlock()
	p, ok := providers[id]
	return p, ok
}

// Providers returns the registered providers ordered by ID.
func Providers() []Provider {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]Provider, 0, len(providers))
	for _, p := range providers {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out
}
