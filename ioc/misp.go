package ioc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/quarry-dfir/quarry"
)

// ParseMISP reads indicators out of MISP JSON: an event export ({"Event":{…}}), a search
// response ({"response":[{"Event":…}]} or {"response":{"Attribute":[…]}}), an array of
// events, or a bare array of attributes. Attributes are taken from an event's "Attribute" and
// from its objects' ("Object":[{"Attribute":[…]}]); proposals (ShadowAttribute) and soft-deleted
// attributes are not.
//
// MISP types map to Types: md5, sha1, sha256, sha512, imphash; ip-src, ip-dst (an address or a
// network) and their |port forms; domain, hostname, hostname|port; domain|ip (two indicators);
// url; filename; filename|<hash> and malware-sample give the hash alone, with the file name in
// its description, because names such as svchost.exe on their own would match every Windows
// host. Other types are counted in Result.Skipped, as are attributes whose to_ids is false
// unless opt.IncludeNonIDS (see Options). The description is the attribute's comment, else the
// event's info.
//
// A supported attribute whose value is bad becomes a Problem with the line where the attribute
// starts. The error is a read error, malformed JSON (with the line), or a limit (ErrLimit).
func ParseMISP(r io.Reader, opt Options) (*Result, error) {
	c := newCollector(opt)
	data, err := io.ReadAll(&countingReader{r: r, max: c.opt.MaxBytes})
	if err != nil {
		if errors.Is(err, ErrLimit) {
			return c.res, err
		}
		return c.res, fmt.Errorf("ioc: read MISP JSON: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	w := &mispWalker{dec: dec, data: data, c: c, line: 1}
	if err := w.value(0, ctxTop); err != nil {
		if errors.Is(err, ErrLimit) {
			return c.res, err
		}
		return c.res, w.syntaxError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return c.res, w.syntaxError(errors.New("text after the JSON document"))
	}
	if len(c.res.Indicators) == 0 && len(c.res.Problems) == 0 && len(c.res.Skipped) == 0 && !w.sawAttributes {
		return c.res, quarry.Errorf(quarry.EINVALID, "no MISP event or attribute found in this JSON; export the event from MISP as JSON")
	}
	return c.res, nil
}

// maxMISPDepth bounds the nesting the walker descends into; MISP documents are a few levels deep,
// deeper values are skipped without recursion.
const maxMISPDepth = 32

// Where a JSON value sits, for deciding whether an object is an attribute.
type mispCtx int

const (
	ctxTop       mispCtx = iota // the document itself
	ctxTopArray                 // an element of a top-level array
	ctxAttribute                // an element of an "Attribute" array
	ctxOther
)

type mispWalker struct {
	dec           *json.Decoder
	data          []byte
	c             *collector
	off           int // data[:off] has been counted into line
	line          int
	sawAttributes bool
}

// lineAt returns the 1-based line of the first byte at or after off that is not JSON
// whitespace or a comma: where the next value starts. Offsets only grow, so counting is linear.
func (w *mispWalker) lineAt(off int64) int {
	p := int(off)
	for p < len(w.data) && strings.IndexByte(" \t\r\n,:", w.data[p]) >= 0 {
		p++
	}
	if p < w.off {
		return w.line
	}
	w.line += bytes.Count(w.data[w.off:p], []byte{'\n'})
	w.off = p
	return w.line
}

func (w *mispWalker) syntaxError(err error) error {
	line := w.lineAt(w.dec.InputOffset())
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line = 1 + bytes.Count(w.data[:min(int(se.Offset), len(w.data))], []byte{'\n'})
	}
	return &quarry.Error{Code: quarry.EINVALID, Message: fmt.Sprintf("not valid MISP JSON near line %d", line), Err: err}
}

// value walks the next JSON value.
func (w *mispWalker) value(depth int, ctx mispCtx) error {
	start := w.dec.InputOffset()
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth >= maxMISPDepth {
		return w.skip()
	}
	if d == '[' {
		elem := ctxOther
		if ctx == ctxTop {
			elem = ctxTopArray
		} else if ctx == ctxAttribute {
			elem = ctxAttribute
		}
		for w.dec.More() {
			if err := w.value(depth+1, elem); err != nil {
				return err
			}
		}
		_, err := w.dec.Token()
		return err
	}
	return w.object(depth, ctx, start)
}

// skip consumes the rest of a container whose opening delimiter was read, without recursion.
func (w *mispWalker) skip() error {
	for n := 1; n > 0; {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				n++
			} else {
				n--
			}
		}
	}
	return nil
}

// mispAttr holds the keys of an object that matter if it is an attribute.
type mispAttr struct {
	typ, value, comment string
	hasType, hasValue   bool
	toIDS, deleted      *bool
}

func (w *mispWalker) object(depth int, ctx mispCtx, start int64) error {
	first := len(w.c.res.Indicators)
	line := 0
	if ctx != ctxOther {
		line = w.lineAt(start) // now, while offsets still grow
	}
	var a mispAttr
	info := ""
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		switch key {
		case "type", "value", "comment", "info", "to_ids", "deleted":
			tok, err := w.dec.Token()
			if err != nil {
				return err
			}
			if d, ok := tok.(json.Delim); ok {
				if d == '{' || d == '[' {
					if err := w.skip(); err != nil {
						return err
					}
				}
				continue
			}
			switch key {
			case "type":
				a.typ, a.hasType = scalarString(tok), true
			case "value":
				a.value, a.hasValue = scalarString(tok), true
			case "comment":
				a.comment = scalarString(tok)
			case "info":
				info = scalarString(tok)
			case "to_ids":
				a.toIDS = scalarBool(tok)
			case "deleted":
				a.deleted = scalarBool(tok)
			}
		case "ShadowAttribute":
			// Proposals nobody accepted yet are no indicators.
			if err := w.value(maxMISPDepth, ctxOther); err != nil {
				return err
			}
		case "Attribute":
			w.sawAttributes = true
			if err := w.value(depth+1, ctxAttribute); err != nil {
				return err
			}
		default:
			if err := w.value(depth+1, ctxOther); err != nil {
				return err
			}
		}
	}
	if _, err := w.dec.Token(); err != nil {
		return err
	}
	if ctx != ctxOther && a.hasType && a.hasValue {
		w.sawAttributes = true
		if err := w.attribute(line, a); err != nil {
			return err
		}
	}
	if info = cleanDescription(info); info != "" {
		for i := first; i < len(w.c.res.Indicators); i++ {
			if w.c.res.Indicators[i].Description == "" {
				w.c.res.Indicators[i].Description = info
			}
		}
	}
	return nil
}

func scalarString(tok json.Token) string {
	switch v := tok.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

// scalarBool reads MISP's flags, which older exports write as "1"/"0" or numbers.
func scalarBool(tok json.Token) *bool {
	var b bool
	switch v := tok.(type) {
	case bool:
		b = v
	case string:
		b = v == "1" || strings.EqualFold(v, "true")
	case json.Number:
		b = v.String() != "0"
	default:
		return nil
	}
	return &b
}

// maxSkipReasons bounds the distinct reasons in Result.Skipped against hostile type names.
const maxSkipReasons = 64

func (w *mispWalker) skipType(t string) {
	reason := "MISP type " + cut(strings.ToValidUTF8(t, "?"), 40) + " not matched"
	if _, ok := w.c.res.Skipped[reason]; !ok && len(w.c.res.Skipped) >= maxSkipReasons {
		reason = "other MISP types not matched"
	}
	w.c.skip(reason)
}

// attribute turns one MISP attribute into indicators.
func (w *mispWalker) attribute(line int, a mispAttr) error {
	if a.deleted != nil && *a.deleted {
		w.c.skip("deleted in MISP")
		return nil
	}
	t := strings.ToLower(strings.TrimSpace(a.typ))
	type part struct {
		t     Type // "" detects an address or a network
		value string
		desc  string
	}
	var parts []part
	desc := a.comment
	switch t {
	case "md5", "sha1", "sha256", "sha512", "imphash":
		parts = []part{{Type(t), a.value, desc}}
	case "ip-src", "ip-dst":
		parts = []part{{"", a.value, desc}}
	case "ip-src|port", "ip-dst|port":
		ip, _, _ := cutLast(a.value, "|")
		parts = []part{{"", ip, desc}}
	case "domain", "hostname":
		parts = []part{{Domain, a.value, desc}}
	case "hostname|port":
		host, _, _ := cutLast(a.value, "|")
		parts = []part{{Domain, host, desc}}
	case "domain|ip":
		d, ip, ok := strings.Cut(a.value, "|")
		if !ok {
			w.c.problem(line, a.value, "domain|ip value without |")
			return nil
		}
		parts = []part{{Domain, d, desc}, {"", ip, desc}}
	case "url":
		parts = []part{{URL, a.value, desc}}
	case "filename":
		parts = []part{{Filename, a.value, desc}}
	case "filename|md5", "filename|sha1", "filename|sha256", "filename|sha512", "filename|imphash", "malware-sample":
		ht := Type(strings.TrimPrefix(t, "filename|"))
		if t == "malware-sample" {
			ht = MD5
		}
		name, h, ok := cutLast(a.value, "|")
		if !ok {
			w.c.problem(line, a.value, t+" value without |")
			return nil
		}
		d := "file " + strings.TrimSpace(name)
		if desc != "" {
			d += ": " + desc
		}
		parts = []part{{ht, h, d}}
	default:
		w.skipType(t)
		return nil
	}
	if a.toIDS != nil && !*a.toIDS && !w.c.opt.IncludeNonIDS {
		w.c.skip("to_ids is false")
		return nil
	}
	for _, p := range parts {
		var ind Indicator
		var err error
		if p.t == "" {
			ind, err = NewIndicator("", p.value, p.desc)
			if err == nil && ind.Type != IP && ind.Type != CIDR {
				err = invalid("not an IP address or network")
			}
		} else {
			ind, err = NewIndicator(p.t, p.value, p.desc)
		}
		if err != nil {
			w.c.problem(line, p.value, t+": "+reasonOf(err))
			continue
		}
		if err := w.c.add(ind); err != nil {
			return err
		}
	}
	return nil
}

// cutLast splits s around the last sep (IPv6 addresses hold colons, so ports come after |).
func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
