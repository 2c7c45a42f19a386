package defender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Time is an MDE timestamp. The service writes UTC with up to seven fractional digits, sometimes fewer,
// and null for "not yet"; null and "" decode to the zero Time, which encodes back as null.
type Time struct{ time.Time }

// timeLayouts are tried in order; the last two cover timestamps written without a zone, read as UTC.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02"}

// UnmarshalJSON reads an ISO-8601 string or null.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	if s == "" {
		*t = Time{}
		return nil
	}
	for _, layout := range timeLayouts {
		if p, err := time.Parse(layout, s); err == nil {
			t.Time = p.UTC()
			return nil
		}
	}
	return fmt.Errorf("timestamp %q not understood", clip(s, 40))
}

// MarshalJSON writes RFC 3339 UTC, or null for the zero Time.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.UTC().Format(time.RFC3339Nano))
}

// filterTime writes t as an OData date literal: unquoted ISO-8601 UTC (mde-api.md §2.3). Whole seconds,
// rounded down, so a "ge" filter never skips the boundary.
func filterTime(t time.Time) string {
	return t.UTC().Truncate(time.Second).Format("2006-01-02T15:04:05Z")
}

// quote writes s as an OData string literal; a single quote inside is doubled.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// and joins non-empty OData filter clauses.
func and(clauses ...string) string {
	var out []string
	for _, c := range clauses {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	if len(out) > 1 {
		for i, c := range out {
			out[i] = "(" + c + ")"
		}
	}
	return strings.Join(out, " and ")
}

// collection is the OData collection envelope (mde-api.md §2.3).
type collection[T any] struct {
	Context  string `json:"@odata.context,omitempty"`
	NextLink string `json:"@odata.nextLink,omitempty"`
	Value    []T    `json:"value"`
}

// odataString is the answer of the functions that return one URL (result link, package URI).
type odataString struct {
	Context string `json:"@odata.context,omitempty"`
	Value   string `json:"value"`
}

// Page selects part of a list. With Top == 0 the client pages through everything itself.
type Page struct {
	Top  int
	Skip int
}

// maxPages stops paging through a server that never ends its list (10,000 pages of 10,000 rows).
const maxPages = 10000

// list fetches a collection. With page.Top > 0 it makes one request. Otherwise it pages with
// $top/$skip until a short page, as the API reference advises; @odata.nextLink is followed only when the
// server cut a page short and offered one, and only on the API host. Rows are de-duplicated by key,
// because paging by $skip over a changing list can return a row twice.
func list[T any](ctx context.Context, c *Client, r request, page Page, key func(T) string) ([]T, error) {
	if page.Top > 0 || page.Skip > 0 {
		if page.Top <= 0 || page.Top > maxPageSize {
			page.Top = maxPageSize
		}
		q := cloneQuery(r.query)
		q.Set("$top", strconv.Itoa(page.Top))
		if page.Skip > 0 {
			q.Set("$skip", strconv.Itoa(page.Skip))
		}
		r.query = q
		var col collection[T]
		if err := c.call(ctx, r, &col); err != nil {
			return nil, emptyOnNotFound[T](err)
		}
		return col.Value, nil
	}
	size := c.limits.PageSize
	var out []T
	seen := map[string]bool{}
	visited := map[string]bool{}
	skip := 0
	next := r
	for range maxPages {
		if next.rawURL == "" {
			q := cloneQuery(r.query)
			q.Set("$top", strconv.Itoa(size))
			if skip > 0 {
				q.Set("$skip", strconv.Itoa(skip))
			}
			next.query = q
		}
		var col collection[T]
		if err := c.call(ctx, next, &col); err != nil {
			if len(out) == 0 {
				return nil, emptyOnNotFound[T](err)
			}
			return nil, err
		}
		added := 0
		for _, v := range col.Value {
			if k := key(v); k == "" || !seen[k] {
				seen[k] = true
				out = append(out, v)
				added++
			}
		}
		skip += len(col.Value)
		switch {
		case len(col.Value) >= size && next.rawURL == "":
			continue
		case col.NextLink != "" && !visited[col.NextLink] && added > 0:
			visited[col.NextLink] = true
			next = r
			next.rawURL = col.NextLink
			continue
		}
		return out, nil
	}
	return nil, fmt.Errorf("defender: %s: more than %d pages", r.op(), maxPages)
}

// emptyOnNotFound: the machines list is documented to answer 404 when there are no recent machines
// (mde-api.md §3.1), which means an empty list, not an error.
func emptyOnNotFound[T any](err error) error {
	var ae *APIError
	if errors.As(err, &ae) && errors.Is(err, ErrNotFound) && strings.HasPrefix(ae.Op, "GET ") {
		return nil
	}
	return err
}

func cloneQuery(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}
