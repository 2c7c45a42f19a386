// Package defender is Quarry's client for the Microsoft Defender for Endpoint REST API: devices, the Live
// Response library, runliveresponse and its machine actions, alerts and investigation packages.
//
// The client authenticates with an Entra ID client secret, keeps every call inside the documented rate
// limits per endpoint family, retries what is safe to retry, never repeats a runliveresponse blindly, and
// turns the API's error envelope into errors callers branch on with errors.Is and errors.As.
package defender
