// Package query is Quarry's timeline query language: a Lucene/Kibana-like syntax that analysts type
// to search events, parsed into a small tree that an in-memory matcher (Match) evaluates and that a
// store can compile to SQL.
//
// Grammar (EBNF; whitespace separates tokens; the keywords AND, OR, NOT and TO are upper case only):
//
//	query    = or_expr .
//	or_expr  = and_expr { ( "OR" | "||" ) and_expr } .
//	and_expr = unary { [ "AND" | "&&" ] unary } .    (* juxtaposition is AND *)
//	unary    = ( "NOT" | "-" ) unary | primary .      (* "-" must touch what it negates *)
//	primary  = "(" or_expr ")"
//	         | field ":" ( value | phrase | range | "(" or_expr ")" )   (* a field group *)
//	         | word | phrase .                        (* free text *)
//	range    = ( "[" | "{" ) bound "TO" bound ( "]" | "}" ) .   (* [ ] inclusive, { } exclusive *)
//	bound    = word | phrase | "*" .                  (* "*" is an open end *)
//	phrase   = '"' { char | "\" char } '"' .
//	field    = word .                                 (* no wildcards *)
//	word     = { char | "\" char }+ .
//
// A word ends at whitespace or one of ( ) [ ] { } " and, in free text, at ":". After "field:" and
// inside a field group a ":" is part of the value (timestamp:2024-01-01T10:00:00Z, ip:fe80::1),
// and a leading "-" after "field:" is part of the value (delta:-5). Inside a field group,
// terms and ranges without a field take the group's field: user:(root OR admin) is
// user:root OR user:admin. A backslash makes the next character literal. Unescaped "*" and "?" in
// a word are wildcards; in a phrase they are literal. Precedence, tightest first: NOT, AND, OR.
//
// Parsed trees are normalised: And and Or have at least two children, parentheses that change
// nothing are dropped, "-x" is Not{x}, and a field group is spread onto its terms. String prints a
// canonical form that parses back to an equal tree.
//
// To compile a tree (to SQL, say), switch on the five node types, recursing into And, Or and Not
// (or use Walk to inspect it first); resolve names with LookupField; and follow the semantics listed
// on Match, which the in-memory matcher implements and the tests pin down.
package query

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Node is a query tree node: *And, *Or, *Not, *Term or *Range.
type Node interface {
	// String prints the node in canonical query syntax.
	String() string
	node()
}

// And matches when all of its children match.
type And struct{ Children []Node }

// Or matches when any of its children matches.
type Or struct{ Children []Node }

// Not matches when its child does not.
type Not struct{ Child Node }

// Term is a value to look for.
//
// Field is the field name as typed (see LookupField); empty means free text. Phrase is set when
// the value was quoted. When Wildcard is set, Value is a glob pattern in which "*" matches any run of
// characters, "?" one character, and a backslash escapes the next character (only \*, \? and \\
// occur); otherwise Value is the literal text with no escapes.
type Term struct {
	Field    string
	Value    string
	Phrase   bool
	Wildcard bool
}

// Range matches field values between Lo and Hi. An empty Lo or Hi is an open end (written "*").
// IncLo and IncHi say whether the bounds themselves are included ("[" and "]") or not ("{", "}").
// Field is never empty.
type Range struct {
	Field        string
	Lo, Hi       string
	IncLo, IncHi bool
}

func (*And) node()   {}
func (*Or) node()    {}
func (*Not) node()   {}
func (*Term) node()  {}
func (*Range) node() {}

// Walk calls f for n and then, if f returns true, for each of n's descendants, depth first.
func Walk(n Node, f func(Node) bool) {
	if n == nil || !f(n) {
		return
	}
	switch n := n.(type) {
	case *And:
		for _, c := range n.Children {
			Walk(c, f)
		}
	case *Or:
		for _, c := range n.Children {
			Walk(c, f)
		}
	case *Not:
		Walk(n.Child, f)
	}
}

// Printing modes for values: what must be escaped depends on where the parser reads them.
const (
	modeFree  = iota // free text: ":" ends the word and a leading "-" means NOT
	modeField        // right after "field:": ":" and a leading "-" are literal
	modeGroup        // inside "field:( … )": ":" is literal, a leading "-" means NOT
	modeBound        // a range bound: "TO" and a lone "*" are special
	modeFieldName
)

func (n *And) String() string { return printNode(n, "") }
func (n *Or) String() string  { return printNode(n, "") }
func (n *Not) String() string { return printNode(n, "") }

func (n *Term) String() string { return printNode(n, "") }

func (n *Range) String() string { return printNode(n, "") }

// printNode prints n; group is the field of an enclosing field group, whose leaves print without it.
func printNode(n Node, group string) string {
	var b strings.Builder
	writeNode(&b, n, group)
	return b.String()
}

func writeNode(b *strings.Builder, n Node, group string) {
	switch n := n.(type) {
	case *And:
		writeList(b, n, n.Children, " AND ", group)
	case *Or:
		writeList(b, n, n.Children, " OR ", group)
	case *Not:
		b.WriteString("NOT ")
		writeChild(b, n, n.Child, group)
	case *Term:
		mode := modeFree
		if group != "" {
			mode = modeGroup
		} else if n.Field != "" {
			b.WriteString(escapeWord(n.Field, modeFieldName, false))
			b.WriteByte(':')
			mode = modeField
		}
		if n.Phrase {
			writePhrase(b, n.Value)
		} else {
			b.WriteString(escapeWord(n.Value, mode, n.Wildcard))
		}
	case *Range:
		if group == "" {
			b.WriteString(escapeWord(n.Field, modeFieldName, false))
			b.WriteByte(':')
		}
		if n.IncLo {
			b.WriteByte('[')
		} else {
			b.WriteByte('{')
		}
		writeBound(b, n.Lo)
		b.WriteString(" TO ")
		writeBound(b, n.Hi)
		if n.IncHi {
			b.WriteByte(']')
		} else {
			b.WriteByte('}')
		}
	case nil:
		b.WriteString("<nil>")
	}
}

// writeList prints the children of an And or Or. When all leaves below share one field and we are
// not inside a group already, it prints them as a field group: user:(root OR admin).
func writeList(b *strings.Builder, parent Node, children []Node, sep, group string) {
	if group == "" {
		if f := commonField(parent); f != "" {
			b.WriteString(escapeWord(f, modeFieldName, false))
			b.WriteString(":(")
			writeList(b, parent, children, sep, f)
			b.WriteByte(')')
			return
		}
	}
	for i, c := range children {
		if i > 0 {
			b.WriteString(sep)
		}
		writeChild(b, parent, c, group)
	}
}

// writeChild prints c, in parentheses when the tree shape would otherwise be lost: an And or Or
// inside another And, Or or Not, except an And inside an Or, which precedence already groups.
func writeChild(b *strings.Builder, parent, c Node, group string) {
	paren := false
	switch c.(type) {
	case *And:
		_, inOr := parent.(*Or)
		paren = !inOr
	case *Or:
		paren = true
	}
	if paren && group == "" && commonField(c) != "" {
		paren = false // printed as field:( … ), which is a primary already
	}
	if paren {
		b.WriteByte('(')
	}
	writeNode(b, c, group)
	if paren {
		b.WriteByte(')')
	}
}

// commonField returns the field shared by every leaf below n, or "" when leaves differ or one is
// free text. Field names compare exactly, as typed.
func commonField(n Node) string {
	field, same := "", true
	Walk(n, func(c Node) bool {
		var f string
		switch c := c.(type) {
		case *Term:
			f = c.Field
		case *Range:
			f = c.Field
		default:
			return same
		}
		if f == "" || (field != "" && f != field) {
			same = false
		}
		field = f
		return same
	})
	if !same {
		return ""
	}
	return field
}

func writeBound(b *strings.Builder, s string) {
	if s == "" {
		b.WriteByte('*')
		return
	}
	b.WriteString(escapeWord(s, modeBound, false))
}

func writePhrase(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
}

// isSpecial reports whether r ends a word.
func isSpecial(r rune) bool {
	switch r {
	case '(', ')', '[', ']', '{', '}', '"', '\\':
		return true
	}
	return unicode.IsSpace(r)
}

// escapeWord escapes s so that the parser reads it back as the same word in the given mode. When
// wildcard is set, s is a glob pattern whose backslash escapes are kept as they are.
func escapeWord(s string, mode int, wildcard bool) string {
	var b strings.Builder
	switch {
	case s == "AND", s == "OR", s == "NOT", s == "&&", s == "||", s == "TO" && mode == modeBound:
		b.WriteByte('\\')
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case wildcard && r == '\\' && i+size < len(s):
			// Keep the pattern's escape and the character it escapes.
			_, size2 := utf8.DecodeRuneInString(s[i+size:])
			b.WriteString(s[i : i+size+size2])
			i += size + size2
			continue
		case isSpecial(r),
			!wildcard && (r == '*' || r == '?'),
			r == ':' && (mode == modeFree || mode == modeFieldName),
			r == '-' && i == 0 && (mode == modeFree || mode == modeGroup || mode == modeFieldName):
			b.WriteByte('\\')
		}
		b.WriteRune(r)
		i += size
	}
	return b.String()
}
