package defendersim

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/quarry-dfir/quarry/defendersim/odata"
)

// listQuery is the OData system query of a collection request.
type listQuery struct {
	filter *odata.Filter
	top    int
	hasTop bool
	skip   int
	expand string
}

// parseQuery reads $filter, $top, $skip and $expand. $select, $orderby and $count are accepted and
// ignored (see doc.go); any other `$` option is an ODataError, as in ASP.NET OData.
func (s *Sim) parseQuery(c *call, schema odata.Schema, expandable ...string) (listQuery, error) {
	q := listQuery{top: s.limits.MaxPageSize}
	vals, err := url.ParseQuery(c.r.URL.RawQuery)
	if err != nil {
		return q, badRequest("ODataError", "The query string is malformed: %v", err)
	}
	for key, vs := range vals {
		v := vs[len(vs)-1]
		switch strings.ToLower(key) {
		case "$filter":
			f, err := odata.Parse(v, schema)
			if err != nil {
				return q, badRequest("ODataError", "Invalid filter clause: %v", err)
			}
			q.filter = f
		case "$top":
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 {
				return q, badRequest("ODataError", "Invalid value '%s' for $top query option found. The $top query option requires a non-negative integer value.", v)
			}
			if n > s.limits.MaxPageSize {
				return q, badRequest("ODataError", "The limit of '%d' for Top query has been exceeded. The value from the incoming request is '%d'.", s.limits.MaxPageSize, n)
			}
			q.top, q.hasTop = n, true
		case "$skip":
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 {
				return q, badRequest("ODataError", "Invalid value '%s' for $skip query option found. The $skip query option requires a non-negative integer value.", v)
			}
			q.skip = n
		case "$expand":
			for _, part := range strings.Split(v, ",") {
				part = strings.TrimSpace(part)
				ok := false
				for _, e := range expandable {
					if strings.EqualFold(part, e) {
						ok = true
					}
				}
				if !ok {
					return q, badRequest("ODataError", "Could not find a property named '%s' that can be expanded.", part)
				}
				q.expand = strings.ToLower(part)
			}
		case "$select", "$orderby", "$count", "$format":
		default:
			if strings.HasPrefix(key, "$") {
				return q, badRequest("ODataError", "The query parameter '%s' is not supported.", key)
			}
		}
	}
	return q, nil
}

// paginate applies $skip and $top and builds the nextLink of §11.10: only without $top, and only
// when rows remain after a full page, as the request URL with $skip replaced.
func paginate[T any](c *call, q listQuery, items []T) ([]T, string) {
	if q.skip >= len(items) {
		return []T{}, ""
	}
	items = items[q.skip:]
	next := ""
	if len(items) > q.top {
		if !q.hasTop {
			next = nextLink(c, q.skip+q.top)
		}
		items = items[:q.top]
	}
	return items, next
}

func nextLink(c *call, skip int) string {
	var parts []string
	for _, p := range strings.Split(c.r.URL.RawQuery, "&") {
		if p == "" {
			continue
		}
		k, _, _ := strings.Cut(p, "=")
		if uk, err := url.QueryUnescape(k); err == nil && strings.EqualFold(uk, "$skip") {
			continue
		}
		parts = append(parts, p)
	}
	parts = append(parts, "$skip="+strconv.Itoa(skip))
	return "https://" + c.r.Host + c.r.URL.EscapedPath() + "?" + strings.Join(parts, "&")
}

// collection is the `{"@odata.context", "value", "@odata.nextLink"?}` envelope.
func collection[T any](c *call, set string, items []T, next string) map[string]any {
	out := map[string]any{"@odata.context": c.context(set), "value": items}
	if next != "" {
		out["@odata.nextLink"] = next
	}
	return out
}

// nullable turns an optional field into a filter value: nil stays an untyped nil, so `eq null` works.
func nullable[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
