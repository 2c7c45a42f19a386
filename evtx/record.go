package evtx

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Event decodes the record's System fields and event data.
func (r *Record) Event() (Event, error) {
	var ev Event
	var refs []ref
	var root *element
	var rootSubs *scope
	for i := range r.frag.root {
		if n := &r.frag.root[i]; n.kind == nodeElement {
			root, rootSubs = n.elem, &r.frag.sc
			break
		}
	}
	if root == nil || root.name != "Event" {
		return ev, errors.New("evtx: record has no Event element")
	}
	refs = childElems(refs, root, rootSubs)
	for _, k := range refs {
		e := k.n.elem
		switch e.name {
		case "System":
			systemFields(&ev, e, k.sc)
		case "EventData":
			ev.DataKind = "EventData"
			for _, d := range childElems(nil, e, k.sc) {
				// <Data Name="X">, <ComplexData Name="X">: X; <Data>: "";
				// others (<Binary>) by their element name.
				name := d.n.elem.name
				if a := nameAttr(d.n.elem); a != nil {
					name = string(appendNodesText(nil, a.value, d.sc, escNone))
				} else if name == "Data" {
					name = ""
				}
				ev.Data = append(ev.Data, Field{Name: name, Value: contentAny(d.n.elem, d.sc)})
			}
		case "UserData":
			ev.DataKind = "UserData"
			kids := childElems(nil, e, k.sc)
			if len(kids) == 0 {
				break
			}
			u := kids[0]
			ev.UserDataName = u.n.elem.name
			for _, d := range childElems(nil, u.n.elem, u.sc) {
				ev.Data = append(ev.Data, Field{Name: d.n.elem.name, Value: contentAny(d.n.elem, d.sc)})
			}
		}
	}
	if ev.RecordID == 0 {
		ev.RecordID = r.ID
	}
	if ev.Time.IsZero() {
		ev.Time = r.Time
	}
	return ev, nil
}

// nodesAny gives the Go value of content: the decoded value when it is a
// single substitution or typed value (an empty string stays ""), nil when
// there is nothing or only null substitutions, else its text.
func nodesAny(nodes []node, sc *scope) any {
	var single *value
	count := 0
	for i := range nodes {
		n := &nodes[i]
		switch n.kind {
		case nodeSubst:
			v, ok := subst(n, sc)
			if !ok || v.typ == typeNull || (v.typ == typeBinXML && v.frag == nil) {
				continue
			}
			single = &v
			count++
		case nodeValue:
			single = &value{typ: n.vtype, raw: n.raw}
			count++
		case nodeText, nodeCDATA:
			if n.text != "" {
				count += 2
			}
		case nodeCharRef, nodeEntityRef, nodeElement:
			count += 2
		}
	}
	switch {
	case count == 0:
		return nil
	case count == 1 && single != nil:
		return single.goValue()
	}
	return string(appendNodesText(nil, nodes, sc, escNone))
}

func contentAny(e *element, sc *scope) any {
	if e.hasElem {
		var b []byte
		for i := range e.children {
			b = appendNodeXML(b, &e.children[i], sc, 0)
		}
		return string(b)
	}
	return nodesAny(e.children, sc)
}

func attrAny(e *element, name string, sc *scope) any {
	for i := range e.attrs {
		if e.attrs[i].name == name {
			return nodesAny(e.attrs[i].value, sc)
		}
	}
	return nil
}

// toUint converts a decoded value (or its decimal or 0x-hex text) to an
// unsigned integer.
func toUint(v any) (uint64, bool) {
	switch x := v.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case int8:
		return uint64(x), true
	case int16:
		return uint64(x), true
	case int32:
		return uint64(x), true
	case int64:
		return uint64(x), true
	case string:
		s := strings.TrimSpace(x)
		base := 10
		if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
			s, base = s[2:], 16
		}
		n, err := strconv.ParseUint(s, base, 64)
		return n, err == nil
	}
	return 0, false
}

func toString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case time.Time:
		return string(appendTime(nil, x))
	}
	if n, ok := toUint(v); ok {
		return strconv.FormatUint(n, 10)
	}
	return ""
}

func guidString(v any) string {
	s := toString(v)
	return strings.ToUpper(strings.Trim(s, "{}"))
}

func systemFields(ev *Event, sys *element, sc *scope) {
	u := func(v any) uint64 { n, _ := toUint(v); return n }
	for _, k := range childElems(nil, sys, sc) {
		e, s := k.n.elem, k.sc
		switch e.name {
		case "Provider":
			ev.Provider = toString(attrAny(e, "Name", s))
			ev.ProviderGUID = guidString(attrAny(e, "Guid", s))
			ev.EventSourceName = toString(attrAny(e, "EventSourceName", s))
		case "EventID":
			ev.EventID = uint16(u(nodesAny(e.children, s)))
			if q := attrAny(e, "Qualifiers", s); q != nil {
				ev.Qualifiers = uint16(u(q))
				ev.HasQualifiers = true
			}
		case "Version":
			ev.Version = uint8(u(nodesAny(e.children, s)))
		case "Level":
			ev.Level = uint8(u(nodesAny(e.children, s)))
		case "Task":
			ev.Task = uint16(u(nodesAny(e.children, s)))
		case "Opcode":
			ev.Opcode = uint8(u(nodesAny(e.children, s)))
		case "Keywords":
			ev.Keywords = u(nodesAny(e.children, s))
		case "TimeCreated":
			switch t := attrAny(e, "SystemTime", s).(type) {
			case time.Time:
				ev.Time = t
			case string:
				if p, err := time.Parse(time.RFC3339Nano, t); err == nil {
					ev.Time = p.UTC()
				}
			}
		case "EventRecordID":
			ev.RecordID = u(nodesAny(e.children, s))
		case "Correlation":
			ev.ActivityID = guidString(attrAny(e, "ActivityID", s))
			ev.RelatedActivityID = guidString(attrAny(e, "RelatedActivityID", s))
		case "Execution":
			ev.ProcessID = uint32(u(attrAny(e, "ProcessID", s)))
			ev.ThreadID = uint32(u(attrAny(e, "ThreadID", s)))
		case "Channel":
			ev.Channel = toString(nodesAny(e.children, s))
		case "Computer":
			ev.Computer = toString(nodesAny(e.children, s))
		case "Security":
			ev.UserID = toString(attrAny(e, "UserID", s))
		}
	}
}
