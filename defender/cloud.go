package defender

import "strings"

// Cloud is one Defender for Endpoint deployment: where its API lives, which Entra ID authority signs its
// tokens and which scope the token is requested for. The list is data so a UI can offer it as a choice.
type Cloud struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	APIURL       string `json:"api_url"`
	AuthorityURL string `json:"authority_url"`
	// Scope is the OAuth 2.0 v2 scope. The commercial hosts still take tokens for the legacy
	// api.securitycenter.microsoft.com resource (mde-api.md §1.2); the US government clouds use their own
	// API host as the resource (§1.2, last bullets).
	Scope string `json:"scope"`
}

// CloudCustom is the ID of a deployment whose URLs the user types in, such as the emulator or a private
// endpoint.
const CloudCustom = "custom"

const (
	commercialAuthority = "https://login.microsoftonline.com/"
	usGovAuthority      = "https://login.microsoftonline.us/"
	commercialScope     = "https://api.securitycenter.microsoft.com/.default"
)

// Clouds lists the known deployments (mde-api.md §0). The first entry is the default.
var Clouds = []Cloud{
	{ID: "commercial", Name: "Commercial (global)", APIURL: "https://api.security.microsoft.com", AuthorityURL: commercialAuthority, Scope: commercialScope},
	{ID: "us", Name: "Commercial, United States", APIURL: "https://us.api.security.microsoft.com", AuthorityURL: commercialAuthority, Scope: commercialScope},
	{ID: "eu", Name: "Commercial, Europe", APIURL: "https://eu.api.security.microsoft.com", AuthorityURL: commercialAuthority, Scope: commercialScope},
	{ID: "uk", Name: "Commercial, United Kingdom", APIURL: "https://uk.api.security.microsoft.com", AuthorityURL: commercialAuthority, Scope: commercialScope},
	{ID: "au", Name: "Commercial, Australia", APIURL: "https://au.api.security.microsoft.com", AuthorityURL: commercialAuthority, Scope: commercialScope},
	{ID: "swa", Name: "Commercial, Switzerland", APIURL: "https://swa.api.security.microsoft.com", AuthorityURL: commercialAuthority, Scope: commercialScope},
	{ID: "ina", Name: "Commercial, India", APIURL: "https://ina.api.security.microsoft.com", AuthorityURL: commercialAuthority, Scope: commercialScope},
	{ID: "gcc", Name: "US Government GCC", APIURL: "https://api-gcc.securitycenter.microsoft.us", AuthorityURL: commercialAuthority, Scope: "https://api-gcc.securitycenter.microsoft.us/.default"},
	{ID: "gcc-high", Name: "US Government GCC High", APIURL: "https://api-gov.securitycenter.microsoft.us", AuthorityURL: usGovAuthority, Scope: "https://api-gov.securitycenter.microsoft.us/.default"},
	{ID: "dod", Name: "US Government DoD", APIURL: "https://api-gov.securitycenter.microsoft.us", AuthorityURL: usGovAuthority, Scope: "https://api-gov.securitycenter.microsoft.us/.default"},
}

// LookupCloud returns the preset with the given ID (case-insensitive).
func LookupCloud(id string) (Cloud, bool) {
	for _, c := range Clouds {
		if strings.EqualFold(c.ID, id) {
			return c, true
		}
	}
	return Cloud{}, false
}

// knownAuthority reports whether host is a Microsoft sign-in host, for which Entra instance discovery works.
// Any other authority (the emulator, a private proxy) must skip discovery, which would otherwise ask
// login.microsoft.com about a host it has never heard of.
func knownAuthority(host string) bool {
	switch strings.ToLower(host) {
	case "login.microsoftonline.com", "login.microsoftonline.us", "login.microsoft.com", "login.windows.net":
		return true
	}
	return false
}
