//go:build unix && !linux && !darwin

package fsaccess

import "io/fs"

func fillTimes(*FileInfo, string, fs.FileInfo) {}
