package collector

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry/fsaccess"
)

// hostFacts gathers what the manifest says about the host. Every fact is best effort: a missing one is
// left empty rather than failing the collection. For --root the facts come from the image's own files,
// never from the machine running the collector.
func hostFacts(acc fsaccess.Accessor, root string) HostInfo {
	h := HostInfo{OS: acc.OS(), Root: root, Live: root == "", IPs: []string{}}
	if h.Root == "" {
		h.Root = strings.Join(acc.Roots(), ",")
	}
	if h.Live {
		h.Arch = runtime.GOARCH
		h.Hostname, _ = os.Hostname()
		name, off := time.Now().Zone()
		h.Timezone, h.UTCOffsetSeconds = time.Local.String(), off
		if h.Timezone == "Local" {
			h.Timezone = name
		}
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() {
					h.IPs = append(h.IPs, ipn.IP.String())
				}
			}
		}
	}
	if acc.OS() == "windows" {
		return h
	}
	if h.Hostname == "" {
		h.Hostname = strings.TrimSpace(string(readSmall(acc, "/etc/hostname")))
	}
	if h.Timezone == "" {
		h.Timezone = strings.TrimSpace(string(readSmall(acc, "/etc/timezone")))
	}
	h.OSVersion = osRelease(readSmall(acc, "/etc/os-release"))
	if h.Live && acc.OS() == "linux" {
		h.Kernel = strings.TrimSpace(string(readSmall(acc, "/proc/sys/kernel/osrelease")))
		h.BootTime = bootTime(readSmall(acc, "/proc/stat"))
	}
	return h
}

// readSmall reads at most 64 KiB of a file; /proc files report size 0, so the size is not trusted.
func readSmall(acc fsaccess.Accessor, p string) []byte {
	f, err := acc.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 64<<10))
	return b
}

func osRelease(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PRETTY_NAME="); ok {
			if s, err := strconv.Unquote(v); err == nil {
				return s
			}
			return strings.Trim(v, `"'`)
		}
	}
	return ""
}

func bootTime(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "btime "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(n, 0).UTC().Format(time.RFC3339)
			}
		}
	}
	return ""
}
