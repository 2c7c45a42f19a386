package ioc

import "strings"

// refanger undoes the defanging reports use so that nobody clicks a live indicator:
// evil[.]com, 10(.)0(.)0(.)1, evil{dot}com, hxxp[:]//, [://], [/].
var refanger = strings.NewReplacer(
	"[.]", ".", "(.)", ".", "{.}", ".", "[dot]", ".", "(dot)", ".", "{dot}", ".",
	"[DOT]", ".", "(DOT)", ".", "{DOT}", ".", `\.`, ".",
	"[://]", "://", "[:]", ":", "(:)", ":", "[/]", "/", "[//]", "//",
)

// defangedSchemes are the scheme spellings reports use for http, https and ftp.
var defangedSchemes = []struct{ from, to string }{
	{"hxxps", "https"}, {"hxxp", "http"}, {"h**ps", "https"}, {"h**p", "http"},
	{"hxtps", "https"}, {"hxtp", "http"}, {"fxp", "ftp"}, {"fxps", "ftps"},
}

// Refang returns s with common defanging undone: [.] (.) {.} [dot] \. for dots, [:] [://] [/]
// for the URL punctuation, and hxxp, hXXps, h**p, fxp for the scheme. Other text is unchanged,
// so refanging a clean value is a no-op.
func Refang(s string) string {
	if strings.ContainsAny(s, `[({\`) {
		s = refanger.Replace(s)
	}
	for _, d := range defangedSchemes {
		if len(s) > len(d.from) && strings.EqualFold(s[:len(d.from)], d.from) {
			rest := s[len(d.from):]
			if strings.HasPrefix(rest, "://") || strings.HasPrefix(rest, ":") {
				return d.to + rest
			}
		}
	}
	return s
}
