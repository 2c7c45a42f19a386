package parse

import (
	"regexp"
	"strconv"
	"strings"
)

// The messages of sshd, sudo, su, the shadow tools and systemd-logind that matter for a timeline.
var (
	reSSHAuth     = regexp.MustCompile(`^(Accepted|Failed|Postponed) (\S+) for (invalid user )?(\S*) from (\S+) port (\d+)(?: (ssh\d?))?(?:: (\S+) (\S+))?`)
	reSSHInvalid  = regexp.MustCompile(`^Invalid user (.*?) from (\S+)(?: port (\d+))?`)
	reSSHClosed   = regexp.MustCompile(`^(Connection closed|Disconnected|Connection reset) (?:by|from) (?:(authenticating user|invalid user|user) (\S+) )?(\S+) port (\d+)`)
	reSSHRecvDis  = regexp.MustCompile(`^Received disconnect from (\S+) port (\d+):`)
	rePAMSession  = regexp.MustCompile(`^pam_unix\(([^:)]+):session\): session (opened|closed) for user ([^\s(]+)(?:\(uid=(\d+)\))?(?: by ([^\s(]*)(?:\(uid=(\d+)\))?)?`)
	rePAMAuthFail = regexp.MustCompile(`^pam_unix\(([^:)]+):auth\): authentication failure;`)
	rePasswd      = regexp.MustCompile(`^pam_unix\(([^:)]+):chauthtok\): password changed for (\S+)`)
	reSuTo        = regexp.MustCompile(`^\(to (\S+)\) (\S+) on (\S+)`)
	reSuResult    = regexp.MustCompile(`^(Successful|FAILED) su for (\S+) by (\S+)`)
	reLogindNew   = regexp.MustCompile(`^New session (\S+) of user (\S+?)\.?$`)
	reLogindRm    = regexp.MustCompile(`^Removed session (\S+?)\.?$`)
	reUsermodGrp  = regexp.MustCompile(`^add '([^']+)' to (?:shadow )?group '([^']+)'`)
	reUsermodPw   = regexp.MustCompile(`^change user '([^']+)' password`)
	reDelUser     = regexp.MustCompile(`^delete user '([^']+)'`)
)

// authFields adds typed fields for the authentication-related messages of prog to f and returns the
// user the event is about ("" when none).
func authFields(prog, msg string, f map[string]any) string {
	switch prog {
	case "sshd", "sshd-session":
		return sshdFields(msg, f)
	case "sudo":
		return sudoFields(msg, f)
	case "su":
		if m := reSuTo.FindStringSubmatch(msg); m != nil {
			f["action"], f["target_user"], f["user"], f["tty"] = "su", m[1], m[2], m[3]
			return m[2]
		}
		if m := reSuResult.FindStringSubmatch(msg); m != nil {
			f["action"] = "su"
			f["result"] = map[string]string{"Successful": "success", "FAILED": "failure"}[m[1]]
			f["target_user"], f["user"] = m[2], m[3]
			return m[3]
		}
	case "useradd", "usermod", "userdel", "groupadd", "groupmod", "groupdel", "passwd", "chpasswd", "gpasswd":
		if u := shadowFields(prog, msg, f); u != "" {
			return u
		}
	case "systemd-logind":
		if m := reLogindNew.FindStringSubmatch(msg); m != nil {
			f["action"], f["session_id"], f["user"] = "session_new", m[1], m[2]
			return m[2]
		}
		if m := reLogindRm.FindStringSubmatch(msg); m != nil {
			f["action"], f["session_id"] = "session_removed", m[1]
			return ""
		}
	}
	return pamFields(msg, f)
}

func setPort(f map[string]any, key, v string) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		f[key] = n
	}
}

func sshdFields(msg string, f map[string]any) string {
	if m := reSSHAuth.FindStringSubmatch(msg); m != nil {
		f["action"] = strings.ToLower(m[1])
		f["auth_method"] = m[2]
		if m[3] != "" {
			f["invalid_user"] = true
		}
		f["user"], f["src_ip"] = m[4], m[5]
		setPort(f, "src_port", m[6])
		if m[7] != "" {
			f["protocol"] = m[7]
		}
		if m[8] != "" {
			f["key_type"], f["key_fingerprint"] = m[8], m[9]
		}
		return m[4]
	}
	if m := reSSHInvalid.FindStringSubmatch(msg); m != nil {
		f["action"], f["invalid_user"], f["user"], f["src_ip"] = "invalid_user", true, m[1], m[2]
		if m[3] != "" {
			setPort(f, "src_port", m[3])
		}
		return m[1]
	}
	if m := reSSHClosed.FindStringSubmatch(msg); m != nil {
		f["action"] = map[string]string{"Connection closed": "connection_closed", "Disconnected": "disconnected",
			"Connection reset": "connection_reset"}[m[1]]
		if m[2] == "invalid user" {
			f["invalid_user"] = true
		}
		if m[3] != "" {
			f["user"] = m[3]
		}
		f["src_ip"] = m[4]
		setPort(f, "src_port", m[5])
		if strings.HasSuffix(msg, "[preauth]") {
			f["preauth"] = true
		}
		return m[3]
	}
	if m := reSSHRecvDis.FindStringSubmatch(msg); m != nil {
		f["action"], f["src_ip"] = "disconnect_received", m[1]
		setPort(f, "src_port", m[2])
		return ""
	}
	return pamFields(msg, f)
}

// sudoFields reads "alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id" and the
// variants with a failure reason before TTY ("3 incorrect password attempts ; TTY=...").
func sudoFields(msg string, f map[string]any) string {
	user, rest, ok := strings.Cut(strings.TrimSpace(msg), " : ")
	if !ok || strings.ContainsAny(user, " =") {
		return pamFields(msg, f)
	}
	f["user"] = user
	f["action"] = "sudo"
	for i, part := range strings.Split(rest, " ; ") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || strings.ContainsAny(k, " ") {
			if i == 0 {
				f["action"] = "sudo_failure"
				f["reason"] = part
			}
			continue
		}
		switch k {
		case "TTY":
			f["tty"] = v
		case "PWD":
			f["cwd"] = v
		case "USER":
			f["target_user"] = v
		case "GROUP":
			f["target_group"] = v
		case "COMMAND":
			// The command is last and may itself contain " ; ".
			idx := strings.Index(rest, "COMMAND=")
			f["command"] = rest[idx+len("COMMAND="):]
			return user
		default:
			f[strings.ToLower(k)] = v
		}
	}
	return user
}

// shadowFields reads the shadow tools' "new user: name=bob, UID=1001, ..." style and a few phrases.
func shadowFields(prog, msg string, f map[string]any) string {
	f["action"] = prog
	if head, kv, ok := strings.Cut(msg, ": name="); ok {
		f["action"] = prog + ": " + head
		for _, part := range strings.Split("name="+kv, ", ") {
			k, v, ok := strings.Cut(part, "=")
			if !ok {
				continue
			}
			k = strings.ToLower(k)
			switch k {
			case "uid", "gid":
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					f[k] = n
					continue
				}
			case "name":
				k = "target_user"
				if strings.Contains(prog, "group") || strings.Contains(head, "group") {
					k = "group"
				}
			case "from":
				k = "tty"
			}
			f[k] = v
		}
		if u, ok := f["target_user"].(string); ok {
			return u
		}
		return ""
	}
	if m := reUsermodGrp.FindStringSubmatch(msg); m != nil {
		f["target_user"], f["group"] = m[1], m[2]
		return m[1]
	}
	if m := reUsermodPw.FindStringSubmatch(msg); m != nil {
		f["target_user"] = m[1]
		return m[1]
	}
	if m := reDelUser.FindStringSubmatch(msg); m != nil {
		f["target_user"] = m[1]
		return m[1]
	}
	return pamFields(msg, f)
}

// pamFields covers pam_unix session, authentication-failure and password-change messages of any
// program.
func pamFields(msg string, f map[string]any) string {
	if !strings.HasPrefix(msg, "pam_unix(") {
		return ""
	}
	if m := rePAMSession.FindStringSubmatch(msg); m != nil {
		f["pam_service"] = m[1]
		f["action"] = "session_" + m[2]
		f["user"] = m[3]
		if m[4] != "" {
			setPort(f, "uid", m[4])
		}
		if m[5] != "" {
			f["by_user"] = m[5]
		}
		return m[3]
	}
	if m := rePasswd.FindStringSubmatch(msg); m != nil {
		f["pam_service"], f["action"], f["target_user"] = m[1], "password_changed", m[2]
		return m[2]
	}
	if m := rePAMAuthFail.FindStringSubmatch(msg); m != nil {
		f["pam_service"], f["action"] = m[1], "auth_failure"
		for _, kv := range strings.Fields(msg[strings.IndexByte(msg, ';')+1:]) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || v == "" {
				continue
			}
			switch k {
			case "rhost":
				f["src_ip"] = v
			case "user":
				f["user"] = v
			case "ruser":
				f["remote_user"] = v
			case "tty":
				f["tty"] = v
			}
		}
		u, _ := f["user"].(string)
		return u
	}
	return ""
}
