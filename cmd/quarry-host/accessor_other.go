//go:build !windows

package main

import "github.com/quarry-dfir/quarry/fsaccess"

// liveAccessor returns nil: on Unix the collector's default (the OS) accessor reads everything the
// collector needs.
func liveAccessor(root, goos string) (fsaccess.Accessor, func(), error) {
	return nil, func() {}, nil
}
