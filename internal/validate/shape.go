package validate

import "github.com/getkin/kin-openapi/openapi3"

// shape is what a schema documents about the structure of a JSON value:
// which object properties exist and what array items look like. It is
// compiled once per schema and drives both mass-assignment checks (strict
// mode) and response filtering. A nil *shape documents nothing, so any
// value passes.
type shape struct {
	// open objects keep every property: additionalProperties: true, or an
	// object schema that lists no properties at all (schema-less).
	open bool
	// props are the documented properties; a nil value is a property
	// whose own structure is undocumented.
	props map[string]*shape
	// addl filters properties not in props when additionalProperties is a
	// schema; hasAddl tells a nil (open) addl from none.
	addl    *shape
	hasAddl bool
	items   *shape
}

// nothing documents no property of any object and no item structure: it is
// what an undocumented response status gets, so nothing leaks through it.
var nothing = func() *shape {
	s := &shape{props: map[string]*shape{}}
	s.items = s
	return s
}()

type shapeCompiler struct {
	memo   map[*openapi3.Schema]*shape
	merged map[[2]*shape]*shape
}

func newShapeCompiler() *shapeCompiler {
	return &shapeCompiler{memo: map[*openapi3.Schema]*shape{}, merged: map[[2]*shape]*shape{}}
}

// compile returns the shape of s. Recursive schemas ($ref cycles) are
// handled by memoising the shape before its children are compiled.
func (c *shapeCompiler) compile(s *openapi3.Schema) *shape {
	if s == nil {
		return nil
	}
	if sh, ok := c.memo[s]; ok {
		return sh
	}
	sh := &shape{props: map[string]*shape{}}
	c.memo[s] = sh
	var closed, hasItems bool
	seen := map[*openapi3.Schema]bool{}
	var gather func(s *openapi3.Schema)
	gather = func(s *openapi3.Schema) {
		if s == nil || seen[s] {
			return
		}
		seen[s] = true
		for name, ref := range s.Properties {
			var child *shape
			if ref != nil {
				child = c.compile(ref.Value)
			}
			if prev, ok := sh.props[name]; ok {
				child = c.merge(prev, child)
			}
			sh.props[name] = child
		}
		ap := s.AdditionalProperties
		if ap.Has != nil {
			if *ap.Has {
				sh.open = true
			} else {
				closed = true
			}
		}
		if ap.Schema != nil {
			child := c.compile(ap.Schema.Value)
			if sh.hasAddl {
				child = c.merge(sh.addl, child)
			}
			sh.addl, sh.hasAddl = child, true
		}
		if s.Items != nil {
			child := c.compile(s.Items.Value)
			if hasItems {
				child = c.merge(sh.items, child)
			}
			sh.items, hasItems = child, true
		}
		// allOf documents the union of its parts; for oneOf and anyOf the
		// value matches some branch, and which one is not known without
		// validating, so every branch's fields count as documented.
		for _, group := range [][]*openapi3.SchemaRef{s.AllOf, s.OneOf, s.AnyOf} {
			for _, b := range group {
				if b != nil {
					gather(b.Value)
				}
			}
		}
	}
	gather(s)
	if len(sh.props) == 0 && !sh.hasAddl && !closed {
		// An object schema listing nothing is schema-less: pass it through.
		sh.open = true
	}
	return sh
}

// merge is the union of two shapes: what either documents is documented.
func (c *shapeCompiler) merge(a, b *shape) *shape {
	if a == nil || b == nil {
		return nil
	}
	if a == b {
		return a
	}
	k := [2]*shape{a, b}
	if m, ok := c.merged[k]; ok {
		return m
	}
	m := &shape{props: map[string]*shape{}, open: a.open || b.open}
	c.merged[k] = m
	for n, s := range a.props {
		m.props[n] = s
	}
	for n, s := range b.props {
		if prev, ok := m.props[n]; ok {
			s = c.merge(prev, s)
		}
		m.props[n] = s
	}
	switch {
	case a.hasAddl && b.hasAddl:
		m.addl, m.hasAddl = c.merge(a.addl, b.addl), true
	case a.hasAddl:
		m.addl, m.hasAddl = a.addl, true
	case b.hasAddl:
		m.addl, m.hasAddl = b.addl, true
	}
	switch {
	case a.items == nil || b.items == nil:
		m.items = nil
	default:
		m.items = c.merge(a.items, b.items)
	}
	return m
}

// child returns the shape of property name of an object of shape s, and
// whether the property is documented.
func (s *shape) child(name []byte) (*shape, bool) {
	if s == nil {
		return nil, true
	}
	if c, ok := s.props[string(name)]; ok { // no allocation: map lookup by string(bytes)
		return c, true
	}
	if s.hasAddl {
		return s.addl, true
	}
	if s.open {
		return nil, true
	}
	return nil, false
}

func (s *shape) item() *shape {
	if s == nil {
		return nil
	}
	return s.items
}

// unknownFields lists the JSON pointers of properties of v that shape s
// does not document (strict mode's mass-assignment check), at most max.
func unknownFields(v any, s *shape, prefix string, out []string, max int) []string {
	if s == nil || len(out) >= max {
		return out
	}
	switch t := v.(type) {
	case map[string]any:
		for k, cv := range t {
			c, ok := s.child([]byte(k))
			if !ok {
				out = append(out, prefix+"/"+escapePointer(k))
				if len(out) >= max {
					return out
				}
				continue
			}
			if c != nil && isContainer(cv) {
				// Pointers are built only on the way into containers.
				out = unknownFields(cv, c, prefix+"/"+escapePointer(k), out, max)
			}
		}
	case []any:
		if s.items == nil {
			return out
		}
		for i, cv := range t {
			if isContainer(cv) {
				out = unknownFields(cv, s.items, prefix+"/"+itoa(i), out, max)
			}
		}
	}
	return out
}

func isContainer(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return true
	}
	return false
}
