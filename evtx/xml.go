package evtx

// appendXML renders the fragment as XML text: attributes whose value is empty
// are left out (as Windows does for missing optional values) and elements
// without content are written as empty-element tags.
func (f *fragment) appendXML(dst []byte) []byte {
	for i := range f.root {
		dst = appendNodeXML(dst, &f.root[i], &f.sc, 0)
	}
	return dst
}

func appendNodeXML(dst []byte, n *node, sc *scope, depth int) []byte {
	if depth > maxDepth {
		return dst
	}
	switch n.kind {
	case nodeElement:
		if !n.elem.hasSubst && !n.elem.attrSubst {
			return appendElementXML(dst, n.elem, sc, depth)
		}
		for _, r := range expandArrays(nil, n, sc) {
			dst = appendElementXML(dst, r.n.elem, r.sc, depth)
		}
		return dst
	case nodeText:
		return appendString(dst, n.text, escXML)
	case nodeCDATA:
		dst = append(dst, "<![CDATA["...)
		dst = append(dst, n.text...)
		return append(dst, "]]>"...)
	case nodeValue:
		v := value{typ: n.vtype, raw: n.raw}
		return v.appendText(dst, escXML)
	case nodeSubst:
		v, ok := subst(n, sc)
		if !ok {
			return dst
		}
		if v.typ == typeBinXML {
			if v.frag != nil {
				for i := range v.frag.root {
					dst = appendNodeXML(dst, &v.frag.root[i], &v.frag.sc, depth+1)
				}
			}
			return dst
		}
		return v.appendText(dst, escXML)
	case nodeCharRef:
		dst = append(dst, "&#"...)
		dst = appendDec(dst, int(n.id), 1)
		return append(dst, ';')
	case nodeEntityRef:
		dst = append(dst, '&')
		dst = append(dst, n.text...)
		return append(dst, ';')
	case nodePI:
		dst = append(dst, "<?"...)
		dst = append(dst, n.text...)
		if len(n.raw) > 0 {
			dst = append(dst, ' ')
			dst = appendUTF16(dst, n.raw, escNone)
		}
		return append(dst, "?>"...)
	}
	return dst
}

func appendElementXML(dst []byte, e *element, sc *scope, depth int) []byte {
	dst = append(dst, '<')
	dst = append(dst, e.name...)
	for i := range e.attrs {
		a := &e.attrs[i]
		if !hasText(a.value, sc) {
			continue
		}
		dst = append(dst, ' ')
		dst = append(dst, a.name...)
		dst = append(dst, '=', '"')
		dst = appendNodesText(dst, a.value, sc, escXML)
		dst = append(dst, '"')
	}
	if !hasElemChild(e, sc) && !hasText(e.children, sc) {
		return append(dst, "/>"...)
	}
	dst = append(dst, '>')
	for i := range e.children {
		dst = appendNodeXML(dst, &e.children[i], sc, depth+1)
	}
	dst = append(dst, "</"...)
	dst = append(dst, e.name...)
	return append(dst, '>')
}
