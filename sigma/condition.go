package sigma

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// cond is a parsed Sigma condition: and, or, not, parentheses, search identifiers and the
// quantifiers "1 of X", "all of X" (X a name with * wildcards, or them).
type cond struct {
	op   condOp
	kids []*cond // operands of and, or, not
	Name string  // the identifier of condRef; the pattern (or "them") of condOneOf and condAllOf
	N    int     // condOneOf: how many must match (1 in "1 of")
}

// condOp is the operator of a cond node.
type condOp uint8

// The operators of a condition.
const (
	condRef condOp = iota
	condAnd
	condOr
	condNot
	condOneOf
	condAllOf
)

// Bounds for hostile conditions: real ones are a line long and a few levels deep.
const (
	maxCondLen   = 16 << 10
	maxCondDepth = 64
)

type condParser struct {
	toks  []string
	pos   int
	depth int
}

// parseCondition parses one condition string. An aggregation ("| count() by x", near) is an error
// wrapping ErrUnsupported.
func parseCondition(s string) (*cond, error) {
	if len(s) > maxCondLen {
		return nil, fmt.Errorf("condition longer than %d bytes", maxCondLen)
	}
	if i := strings.IndexByte(s, '|'); i >= 0 {
		return nil, unsupported("aggregation %q (counts across events need a correlation engine)", strings.TrimSpace(s[i:]))
	}
	p := &condParser{toks: lexCondition(s)}
	if len(p.toks) == 0 {
		return nil, errors.New("empty condition")
	}
	c, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("condition: unexpected %q", p.toks[p.pos])
	}
	return c, nil
}

func lexCondition(s string) []string {
	var toks []string
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			toks = append(toks, s[i:i+1])
			i++
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\r()", rune(s[j])) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks
}

func (p *condParser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *condParser) is(word string) bool { return strings.EqualFold(p.peek(), word) }

func (p *condParser) or() (*cond, error) {
	left, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.is("or") {
		p.pos++
		right, err := p.and()
		if err != nil {
			return nil, err
		}
		left = join(condOr, left, right)
	}
	return left, nil
}

func (p *condParser) and() (*cond, error) {
	left, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.is("and") {
		p.pos++
		right, err := p.not()
		if err != nil {
			return nil, err
		}
		left = join(condAnd, left, right)
	}
	return left, nil
}

// join flattens a chain of one operator into one node.
func join(op condOp, a, b *cond) *cond {
	if a.op == op {
		a.kids = append(a.kids, b)
		return a
	}
	return &cond{op: op, kids: []*cond{a, b}}
}

func (p *condParser) not() (*cond, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxCondDepth {
		return nil, fmt.Errorf("condition nested deeper than %d", maxCondDepth)
	}
	if p.is("not") {
		p.pos++
		k, err := p.not()
		if err != nil {
			return nil, err
		}
		return &cond{op: condNot, kids: []*cond{k}}, nil
	}
	return p.primary()
}

func isKeyword(t string) bool {
	switch strings.ToLower(t) {
	case "and", "or", "not", "of", "(", ")":
		return true
	}
	return false
}

func (p *condParser) primary() (*cond, error) {
	t := p.peek()
	switch {
	case t == "":
		return nil, errors.New("condition ends early")
	case t == "(":
		p.pos++
		c, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, errors.New("condition: missing )")
		}
		p.pos++
		return c, nil
	case isKeyword(t):
		return nil, fmt.Errorf("condition: unexpected %q", t)
	}
	p.pos++
	if p.is("of") {
		p.pos++
		target := p.peek()
		if target == "" || isKeyword(target) {
			return nil, fmt.Errorf("condition: %q of what?", t)
		}
		p.pos++
		if strings.EqualFold(target, "them") {
			target = "them"
		}
		switch {
		case strings.EqualFold(t, "all"):
			return &cond{op: condAllOf, Name: target}, nil
		case strings.EqualFold(t, "any"):
			return &cond{op: condOneOf, Name: target, N: 1}, nil
		}
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 || n > 1000 {
			return nil, fmt.Errorf("condition: %q of: want 1, a count or all", t)
		}
		return &cond{op: condOneOf, Name: target, N: n}, nil
	}
	return &cond{op: condRef, Name: t}, nil
}

// quantified returns the search identifiers a quantifier's target covers, in detection order. Names
// starting with _ are left out of them, as Sigma's reference implementation does.
func quantified(target string, searches []search) ([]string, error) {
	var out []string
	for _, s := range searches {
		if target == "them" {
			if !strings.HasPrefix(s.Name, "_") {
				out = append(out, s.Name)
			}
			continue
		}
		// path.Match knows * and ?, which is what Sigma allows here; [ is not a Sigma
		// wildcard, so match it literally.
		pat := strings.NewReplacer(`[`, `\[`, `\`, `\\`).Replace(target)
		if ok, _ := path.Match(pat, s.Name); ok {
			out = append(out, s.Name)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("condition: no search identifier matches %q", target)
	}
	return out, nil
}

// String prints the condition back, fully parenthesised, for tests and messages.
func (c *cond) String() string {
	switch c.op {
	case condRef:
		return c.Name
	case condNot:
		return "not " + c.kids[0].String()
	case condOneOf:
		return strconv.Itoa(c.N) + " of " + c.Name
	case condAllOf:
		return "all of " + c.Name
	}
	sep := " and "
	if c.op == condOr {
		sep = " or "
	}
	parts := make([]string, len(c.kids))
	for i, k := range c.kids {
		parts[i] = k.String()
	}
	return "(" + strings.Join(parts, sep) + ")"
}
