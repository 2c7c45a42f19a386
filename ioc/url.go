package ioc

import (
	"net/url"
	"strings"
)

// urlSchemes are the schemes a URL indicator may have; others are rarely indicators and often
// not URLs at all (C://, res://).
var urlSchemes = map[string]bool{"http": true, "https": true, "ftp": true, "ftps": true, "sftp": true, "ws": true, "wss": true, "smb": true, "file": true, "tcp": true, "udp": true}

// normURL lowercases scheme and host, drops the fragment, a default port and an empty path, so
// that the same URL written two ways is one value.
func normURL(v string) (string, error) {
	n, ok := canonicalURL(v)
	if !ok {
		return "", invalid("not a URL with a host (http://example.com/path)")
	}
	return n, nil
}

// canonicalURL is normURL for both indicators and the URLs found in events.
func canonicalURL(v string) (string, bool) {
	i := strings.Index(v, "://")
	if i <= 0 || i > 8 {
		return "", false
	}
	scheme := strings.ToLower(v[:i])
	if !urlSchemes[scheme] {
		return "", false
	}
	rest := v[i+3:]
	// The authority ends at the first /, ? or #; net/url is strict about what a host may hold,
	// and the wild has underscores and odd ports, so the host is checked here.
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	auth, tail := rest[:end], rest[end:]
	if j := strings.LastIndexByte(auth, '@'); j >= 0 {
		auth = auth[j+1:] // user info is no part of what identifies the resource
	}
	host, port := auth, ""
	if strings.HasPrefix(auth, "[") {
		k := strings.IndexByte(auth, ']')
		if k < 0 {
			return "", false
		}
		host, port = auth[:k+1], strings.TrimPrefix(auth[k+1:], ":")
	} else if k := strings.LastIndexByte(auth, ':'); k >= 0 {
		host, port = auth[:k], auth[k+1:]
	}
	host = strings.ToLower(strings.Trim(host, "."))
	if host == "" || strings.Contains(host, "..") {
		return "", false
	}
	for j := 0; j < len(host); j++ {
		c := host[j]
		if !isDomainByte(c) && c != '.' && c != ':' && c != '[' && c != ']' && c != '%' {
			return "", false
		}
	}
	for j := 0; j < len(port); j++ {
		if port[j] < '0' || port[j] > '9' {
			return "", false
		}
	}
	if port == defaultPorts[scheme] {
		port = ""
	}
	if k := strings.IndexByte(tail, '#'); k >= 0 {
		tail = tail[:k]
	}
	if tail == "/" {
		tail = ""
	}
	if _, err := url.Parse(scheme + "://" + host + tail); err != nil {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(scheme) + 3 + len(host) + 1 + len(port) + len(tail))
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	if port != "" {
		b.WriteByte(':')
		b.WriteString(port)
	}
	b.WriteString(tail)
	return b.String(), true
}

var defaultPorts = map[string]string{"http": "80", "https": "443", "ftp": "21", "ws": "80", "wss": "443"}

// stripQuery returns u without its query, the form a URL indicator matches besides itself.
func stripQuery(u string) string {
	k := strings.IndexByte(u, '?')
	if k < 0 {
		return u
	}
	u = u[:k]
	if strings.Count(u, "/") == 3 && strings.HasSuffix(u, "/") { // https://host/?x
		u = u[:len(u)-1]
	}
	return u
}
