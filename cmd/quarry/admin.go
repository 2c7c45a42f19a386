package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/auth"
	"github.com/quarry-dfir/quarry/sqldb"
)

func init() {
	register("migrate", "bring the database schema up to date", runMigrate)
	register("user", "manage local users: create, list, passwd, disable, enable", runUser)
	register("token", "manage API tokens: create, list, revoke", runToken)
}

// store is what the administrative commands need: the database and the auth service on it.
type store struct {
	db    *sqldb.DB
	auth  *auth.Service
	audit quarry.AuditService
}

func openStore(ctx context.Context, cfg *Config) (*store, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", cfg.DataDir, err)
	}
	db, err := sqldb.OpenAndMigrate(ctx, cfg.Database)
	if err != nil {
		return nil, err
	}
	audit := sqldb.NewAuditService(db)
	return &store{db: db, audit: audit, auth: &auth.Service{
		Users: sqldb.NewUserService(db), Sessions: sqldb.NewSessionService(db), Tokens: sqldb.NewTokenService(db), Audit: audit,
	}}, nil
}

// record audits a change made from the command line; the actor is the operating-system user.
func (s *store) record(ctx context.Context, action, targetType string, targetID any, details map[string]any) error {
	e := quarry.NewAuditEntry(ctx, action, targetType, fmt.Sprint(targetID))
	e.Actor, e.Details = "cli:"+osUser(), details
	if err := s.audit.RecordAudit(ctx, e); err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

func osUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

func flags(name string, stderr io.Writer) (*flag.FlagSet, *Config) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &Config{}
	cfg.bind(fs, "127.0.0.1:8080", "./quarry-data")
	return fs, cfg
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfg := flags("quarry migrate", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.db.Close()
	fmt.Fprintf(stdout, "database is up to date (%s)\n", s.db.Dialect())
	return nil
}

// randomPassword returns a password of 20 characters from an alphabet without look-alikes.
func randomPassword() string {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func readPassword(stdin io.Reader) (string, error) {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

var stdin io.Reader = os.Stdin

func runUser(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: quarry user create|list|passwd|disable|enable [flags]")
	}
	sub := args[0]
	fs, cfg := flags("quarry user "+sub, stderr)
	username := fs.String("username", "", "the user's name")
	role := fs.String("role", "analyst", "viewer, analyst or admin (create)")
	pwStdin := fs.Bool("password-stdin", false, "read the password from standard input instead of generating one (create, passwd)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	s, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.db.Close()
	users := s.auth.Users

	password := func() (string, bool, error) {
		if *pwStdin {
			pw, err := readPassword(stdin)
			return pw, false, err
		}
		return randomPassword(), true, nil
	}
	switch sub {
	case "create":
		pw, generated, err := password()
		if err != nil {
			return err
		}
		u, err := s.auth.CreateUser(ctx, *username, pw, quarry.Role(*role))
		if err != nil {
			return userError(err)
		}
		if err := s.record(ctx, "user.create", "user", u.Username, map[string]any{"role": u.Role}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created user %s (%s)\n", u.Username, u.Role)
		if generated {
			fmt.Fprintf(stdout, "password: %s\n", pw)
		}
	case "list":
		us, _, err := users.FindUsers(ctx, quarry.UserFilter{Limit: 10000})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tUSERNAME\tROLE\tSTATE\tCREATED")
		for _, u := range us {
			state := "active"
			if u.Disabled {
				state = "disabled"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", u.ID, u.Username, u.Role, state, u.CreatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	case "passwd", "disable", "enable":
		u, err := users.FindUserByUsername(ctx, *username)
		if err != nil {
			return userError(err)
		}
		var upd quarry.UserUpdate
		var shown string
		switch sub {
		case "passwd":
			pw, generated, err := password()
			if err != nil {
				return err
			}
			if len([]rune(pw)) < auth.MinPasswordLength {
				return fmt.Errorf("password must be at least %d characters", auth.MinPasswordLength)
			}
			hash, err := auth.HashPassword(pw)
			if err != nil {
				return err
			}
			upd.PasswordHash = &hash
			if generated {
				shown = pw
			}
		default:
			disabled := sub == "disable"
			upd.Disabled = &disabled
		}
		if _, err := users.UpdateUser(ctx, u.ID, upd); err != nil {
			return err
		}
		if sub != "enable" {
			// A new password or a disabled account ends every open session.
			if err := s.auth.Sessions.DeleteUserSessions(ctx, u.ID); err != nil {
				return err
			}
		}
		if err := s.record(ctx, "user."+sub, "user", u.Username, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s: %s done\n", u.Username, sub)
		if shown != "" {
			fmt.Fprintf(stdout, "password: %s\n", shown)
		}
	default:
		return fmt.Errorf("unknown user command %q: use create, list, passwd, disable or enable", sub)
	}
	return nil
}

// userError turns a domain error into a one-line message for the terminal.
func userError(err error) error {
	if code := quarry.ErrorCode(err); code != quarry.EINTERNAL {
		return errors.New(quarry.ErrorMessage(err))
	}
	return err
}

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: quarry token create|list|revoke [flags]")
	}
	sub := args[0]
	fs, cfg := flags("quarry token "+sub, stderr)
	username := fs.String("user", "", "the token's user (create, list)")
	name := fs.String("name", "", "what the token is for (create)")
	role := fs.String("role", "", "viewer, analyst or admin, at most the user's role (create); default the user's role")
	ttl := fs.Duration("ttl", 30*24*time.Hour, "lifetime (create)")
	id := fs.Int64("id", 0, "token id (revoke)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	s, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.db.Close()
	switch sub {
	case "create":
		u, err := s.auth.Users.FindUserByUsername(ctx, *username)
		if err != nil {
			return userError(err)
		}
		if *name == "" {
			*name = "cli"
		}
		t, secret, err := s.auth.CreateToken(ctx, u.ID, *name, quarry.Role(*role), *ttl)
		if err != nil {
			return userError(err)
		}
		if err := s.record(ctx, "token.create", "token", t.ID, map[string]any{"user": u.Username, "name": t.Name, "role": t.Role}); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "token %d for %s (%s), expires %s; it is shown once:\n", t.ID, u.Username, t.Role, t.ExpiresAt.Format(time.RFC3339))
		fmt.Fprintln(stdout, secret)
	case "list":
		f := quarry.TokenFilter{Limit: 10000}
		if *username != "" {
			u, err := s.auth.Users.FindUserByUsername(ctx, *username)
			if err != nil {
				return userError(err)
			}
			f.UserID = &u.ID
		}
		ts, _, err := s.auth.Tokens.FindTokens(ctx, f)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tUSER_ID\tNAME\tPREFIX\tROLE\tEXPIRES\tSTATE")
		now := time.Now()
		for _, t := range ts {
			state := "active"
			if t.RevokedAt != nil {
				state = "revoked"
			} else if !t.Active(now) {
				state = "expired"
			}
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s…\t%s\t%s\t%s\n", t.ID, t.UserID, t.Name, t.Prefix, t.Role, t.ExpiresAt.Format(time.RFC3339), state)
		}
		return tw.Flush()
	case "revoke":
		if err := s.auth.Tokens.RevokeToken(ctx, *id, time.Now().UTC()); err != nil {
			return userError(err)
		}
		if err := s.record(ctx, "token.revoke", "token", *id, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "token %d revoked\n", *id)
	default:
		return fmt.Errorf("unknown token command %q: use create, list or revoke", sub)
	}
	return nil
}
