// Package defendersim emulates the Microsoft Defender for Endpoint API for `quarry demo`, training and
// end-to-end tests: an Entra-like token service, the machines, machine actions, Live Response, library
// and alerts APIs of /work/shared/reference/mde-api.md (§1–§11), with their limits and error bodies, on
// simulated devices whose file systems come from package simhost.
//
// One HTTPS listener serves everything, with a certificate from a CA the emulator creates in its data
// folder (ca.pem, reused on the next start). The default app's tenant and client id follow from the
// seed; its secret is random and kept in the data folder (app-secret, 0600), because a token lets its
// holder run scripts on the emulator's machine.
//
// Routes:
//
//	/{tenant}/oauth2/token                          v1 client credentials (resource=...)
//	/{tenant}/oauth2/v2.0/token                     v2 client credentials (scope=.../.default)
//	/{tenant}/v2.0/.well-known/openid-configuration OpenID metadata (what MSAL/azidentity fetch)
//	/{tenant}/.well-known/openid-configuration      v1 metadata
//	/{tenant}/discovery/v2.0/keys                   the token-signing key (ES256)
//	/api/... and /api/v1.0/...                      the MDE API (paths match case-insensitively)
//	/_blob/...                                      result and package downloads (signed, no auth)
//	/_sim/stats                                     counters (no auth)
//
// azidentity's ClientSecretCredential works against AuthorityURL() with DisableInstanceDiscovery and
// a transport that trusts the CA (HTTPClient()).
//
// # Time
//
// Timestamps are wall-clock time. Options.TimeScale divides every limit window, timeout and expiry:
// with 60, the per-minute rate windows last one second, RunScript is killed after ten seconds and an
// offline device's request expires after 72 minutes. Retry-After is in real seconds, rounded up, at
// least 1. Token lifetimes are scaled too but never drop below 30 real seconds.
//
// # Devices
//
// Device i of a fleet depends only on the seed and i. One in ten (i%10 == 7) is offline, one in twenty
// (i%20 == 3) flaps online/offline every 5–20 simulated minutes, one in eight (i%8 == 5) is compromised:
// its simhost tree holds an attack story and it raises alerts over time, built from that story
// (attacker IP, user, persistence path, commands, event times). A device's file system is generated
// on the first command that needs it, under DataDir/devices/<id>/root; scripts run in
// DataDir/devices/<id>/work.
//
// # Running scripts
//
// RunScript runs `.sh` scripts with bash on Linux and macOS devices and `.ps1` scripts on Windows
// devices; any other pairing fails the command. The working folder is the current directory; the
// environment holds only QUARRY_ROOT (the device's file-system root), QUARRY_SIM_MACHINE_ID,
// QUARRY_SIM_HOSTNAME, QUARRY_SIM_OS (windows|linux|macos), HOME and TMPDIR (the working folder),
// LANG, TZ=UTC and the emulator's PATH, SSL_CERT_FILE and SSL_CERT_DIR. Args are split into words at
// blanks; single or double quotes group words; backslashes are literal (Windows paths pass through);
// nothing is expanded. A script that leaves a child running in the background
// returns as soon as it exits itself; the child lives until the emulator closes.
//
// PowerShell cannot run here, so a `.ps1` is run by a stand-in that performs the steps the script
// declares in comment lines of the form
//
//	# quarry-sim: <verb> <arguments>
//
// Real PowerShell ignores these lines, so one script serves real hosts and the emulator. Arguments
// are split like Args; the placeholders {args} (all Args words), {arg1}…{argN}, {root} (QUARRY_ROOT)
// and {work} (the working folder) are replaced in every argument. Steps run in order; the first
// failing step ends the script with exit code 1 (or the failing program's code). The verbs:
//
//	echo <text...>                           write the text to script_output
//	download <url> sha256 <hex> to <name> [bearer <token>]   GET url (with Authorization: Bearer <token>) into the working folder; a hash mismatch fails
//	run <program> [args...]                  run and wait; its stdout/stderr join the script's; a non-zero exit ends the script with that code
//	start <program> [args...]                start detached and go on, as a bootstrap starts quarry-host
//	write <name> <text...>                   write a file in the working folder
//	sleep <duration>                         wait (Go duration, simulated time, e.g. 30s)
//	exit <code>                              end the script with this exit code
//
// <program> is a file name in the working folder (e.g. one downloaded before) or an absolute path.
// The header describes what the emulator does, not what the PowerShell body does, so the server can
// point `download` at a build of quarry-host that runs on the emulator's machine. Example:
//
//	# quarry-sim: download https://127.0.0.1:8080/api/v1/collector/download/linux/amd64 sha256 9f2c…4a to quarry-host bearer qe_…
//	# quarry-sim: start quarry-host collect --server https://127.0.0.1:8080 --enrol-token qe_… --acquisition {arg1} --root {root} --os windows
//	# quarry-sim: echo bootstrap started
//
// Package bootstrap writes such a header into Quarry's Windows bootstrap, naming the build for the
// emulator's platform (bootstrap.Params.SimPlatform, by default the server's own).
//
// The result of RunScript is `{script_name, exit_code, script_output, script_errors}`; the stand-in's
// output starts with the PowerShell transcript banner, as on Windows. Output is capped at 4 MB each.
//
// GetFile maps `C:\Windows\x` to root/C/Windows/x (case-insensitively), Unix paths to root/...,
// macOS /private/{var,tmp,etc} to root/{var,tmp,etc}, and the Windows Live Response download folder
// (C:\ProgramData\Microsoft\Windows Defender Advanced Threat Protection\Downloads\) to the working
// folder. Lookups go through os.Root, so no path or symlink leaves the device.
//
// # Deviations and choices ([UNCONFIRMED] items of mde-api.md)
//
//   - Token audience: tokens can be had for every WindowsDefenderATP identifier URI, and also for
//     https://api.security.microsoft.com and Graph; the API accepts only the former and answers
//     403 Forbidden to the others (#9246). Tokens are ES256-signed (Entra uses RS256); clients must
//     treat them as opaque anyway.
//   - 401 and 429 bodies use the documented envelope with codes Unauthorized / TooManyRequests;
//     429 always carries Retry-After. Throttling is per app and per API (§2.5 [INF]).
//   - The 25-session limit counts every Live Response action that is not final, including Pending
//     ones queued for an offline device; cancelling one frees its slot at once. Over the limit: 429
//     TooManyRequests with Retry-After of 30 simulated seconds.
//   - Command order PutFile → RunScript → GetFile is enforced (400 InvalidInput) unless
//     Limits.AnyCommandOrder. Library names in commands are checked when the device runs them: a
//     missing file fails that command, not the request.
//   - commandStatus stays Created while a command runs, then Completed or Failed; commands after a
//     failure stay Created. errors is an array of strings.
//   - A RunScript over the script timeout is killed: the command is Failed with the error "script
//     execution timed out after 10m0s" and the action is Failed. A request still Pending when the
//     offline queue ends becomes TimeOut. A non-zero exit code is still a Completed command.
//   - Arguments reach a script only if its library entry has HasParameters=true (reported by a third
//     party); otherwise the script runs without them.
//   - GetFile results are gzip-compressed (the one public observation); Options.PlainGetFile serves
//     the raw bytes instead.
//   - Result link: a PutFile index or an out-of-range index is 400 InvalidInput; a command that has
//     not completed is 404 ResourceNotFound. Links live 30 minutes (scaled) and fail with Azure's 403
//     AuthenticationFailed XML afterwards; a new call gives a new link.
//   - Library upload: the file part may be named `file` or `File`; other field names are
//     case-sensitive. A name that exists with OverrideIfExists=false is 400 BadRequest; names must
//     match the portal rule (letters, digits, -, _, .) or 400 InvalidInput; over 20 MB is 400
//     BadRequest. Library names are case-insensitive. parametersDescription is null when not given.
//   - Cancelling a final action is 400 BadRequest. Cancel needs a Comment (MissingRequiredParameter).
//   - Machines and alerts are listed in a stable order: machines in generation order, alerts by
//     creation time, oldest first; machine actions newest first (§2.3). $select, $orderby and
//     $count are accepted and ignored; other `$` options are 400 ODataError. $top above 10,000 is 400
//     ODataError. String comparisons in $filter are case-insensitive; machineTags is filtered with
//     `machineTags/any(t: t eq 'x')`. The emulator never answers 404 for an empty machine list.
//   - `GET /api/machines/{id}` also resolves a computer DNS name.
//   - runliveresponse accepts a missing Comment (requestorComment is then ""); the action endpoints
//     of §8 and cancel require one.
//   - Alert evidence entityType values are User, Process, File and Ip.
//   - osPlatform is Windows10, Windows11, WindowsServer2019, WindowsServer2022, Linux or macOS; healthStatus
//     is Active when the device is online and Inactive when not.
//   - Alert PATCH accepts both determination spellings (NotMalicious/Clean,
//     ConfirmedActivity/ConfirmedUserActivity) and stores the resource page's; an invalid enum is 400
//     InvalidInput; unknown or wrong-case keys are 400 InvalidRequestBody.
//   - collectInvestigationPackage works on every OS; the package is a small zip whose link lives one
//     minute (scaled). isolate, unisolate and runAntiVirusScan complete after 10 simulated seconds;
//     isolate and unisolate on macOS are 400 OsPlatformNotSupported (#11102). A second request of the
//     same type on a device while one is active is 400 ActiveRequestAlreadyExists.
//   - GetLiveResponseResultDownloadLink accepts Machine.Read.All as well as Machine.ReadWrite.All
//     (the older page); the current page names only the latter.
//   - `/api/machines/{id}/alerts/$count` answers a bare number as text/plain.
//   - Not implemented: other `/$count` paths, $select, alerts batchUpdate, advanced hunting,
//     restrict/unrestrict code execution, stop-and-quarantine and offboarding.
//   - Live Response is always enabled in the emulated tenant and unsigned scripts are allowed.
package defendersim
