package validate

import (
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
)

// A fastBody answers one question about a JSON request body that ScanJSON
// has accepted: does it certainly conform to the schema? It walks the bytes
// once, allocating nothing for ordinary bodies, where kin-openapi first
// decodes the body into maps and then walks those (most of the validate
// stage's cost).
//
// It is an accelerator, not a second validator: "yes" lets the request
// through, anything else sends it down the kin-openapi path, which is the
// authority and writes the violation list. So every rule here is at least
// as strict as kin-openapi's (stricter only costs the slow path), and a
// schema using any keyword not handled here gets no fastBody at all. The
// differential fuzz test (FuzzFastBodyNeverLooser) holds it to that.
type fastBody struct {
	root  *fnode
	shape *shape // strict mode's documented properties, nil otherwise
}

// JSON value kinds, as a bit set of what a schema's type permits.
const (
	kNull uint8 = 1 << iota
	kBool
	kInteger
	kNumber
	kString
	kArray
	kObject
	kAll = kNull | kBool | kInteger | kNumber | kString | kArray | kObject
)

type fnode struct {
	types    uint8 // permitted kinds (a nil type permits all)
	nullable bool

	hasEnum bool
	strEnum map[string]struct{}
	numEnum []float64

	minLen  uint64
	maxLen  int64 // -1: none
	pattern *regexp.Regexp
	format  func(string) bool

	intBits      int // 32 or 64 for format int32/int64 on integers; 0 none
	float32Range bool
	min, max     float64
	hasMin       bool
	hasMax       bool
	exMin, exMax bool

	minItems uint64
	maxItems int64 // -1: none
	items    *fnode

	props    map[string]fprop
	required []string
	addl     uint8 // addlAny, addlNone, addlSchema
	addlNode *fnode
	minProps uint64
	maxProps int64 // -1: none

	allOf []*fnode
}

type fprop struct {
	n        *fnode
	readOnly bool
}

const (
	addlAny = iota
	addlNone
	addlSchema
)

// compileFastBody returns the accelerator for s, or nil when s uses a
// keyword it does not handle.
func compileFastBody(s *openapi3.Schema, sh *shape) *fastBody {
	c := fastCompiler{memo: map[*openapi3.Schema]*fnode{}}
	n := c.compile(s)
	if c.unsupported || n == nil {
		return nil
	}
	return &fastBody{root: n, shape: sh}
}

var kinds = map[string]uint8{
	openapi3.TypeNull: kNull, openapi3.TypeBoolean: kBool, openapi3.TypeInteger: kInteger,
	openapi3.TypeNumber: kNumber, openapi3.TypeString: kString, openapi3.TypeArray: kArray,
	openapi3.TypeObject: kObject,
}

// fail marks the schema as one the fast pass cannot judge.
func (c *fastCompiler) fail() *fnode {
	c.unsupported = true
	return nil
}

// bound converts an optional maximum; -1 is none.
func bound(p *uint64) (int64, bool) {
	switch {
	case p == nil:
		return -1, true
	case *p > math.MaxInt64:
		return 0, false
	}
	return int64(*p), true
}

type fastCompiler struct {
	memo        map[*openapi3.Schema]*fnode
	unsupported bool
}

func (c *fastCompiler) compile(s *openapi3.Schema) *fnode {
	if s == nil {
		return c.fail()
	}
	if n, ok := c.memo[s]; ok {
		return n // a $ref cycle: checked in full, stricter than kin-openapi
	}
	if len(s.OneOf) > 0 || len(s.AnyOf) > 0 || s.Not != nil || s.Discriminator != nil || s.UniqueItems ||
		s.MultipleOf != nil || s.Const != nil || len(s.PrefixItems) > 0 || s.Contains != nil ||
		s.MinContains != nil || s.MaxContains != nil || len(s.PatternProperties) > 0 ||
		len(s.DependentSchemas) > 0 || s.PropertyNames != nil || s.UnevaluatedItems.Has != nil ||
		s.UnevaluatedItems.Schema != nil || s.UnevaluatedProperties.Has != nil || s.UnevaluatedProperties.Schema != nil ||
		s.If != nil || s.Then != nil || s.Else != nil || len(s.DependentRequired) > 0 || s.Always != nil ||
		s.ContentSchema != nil || s.ContentMediaType != "" || s.ContentEncoding != "" || s.DynamicRef != "" ||
		len(s.Required) > 64 {
		return c.fail()
	}
	n := &fnode{types: kAll, nullable: s.Nullable, minLen: s.MinLength, minItems: s.MinItems, minProps: s.MinProps,
		required: s.Required}
	c.memo[s] = n
	var ok1, ok2, ok3 bool
	n.maxLen, ok1 = bound(s.MaxLength)
	n.maxItems, ok2 = bound(s.MaxItems)
	n.maxProps, ok3 = bound(s.MaxProps)
	if !ok1 || !ok2 || !ok3 {
		return c.fail()
	}
	if s.Type != nil {
		n.types = 0
		for _, t := range *s.Type {
			k, ok := kinds[t]
			if !ok {
				return c.fail()
			}
			n.types |= k
		}
	}
	if len(s.Enum) > 0 {
		n.hasEnum = true
		for _, e := range s.Enum {
			switch v := e.(type) {
			case string:
				if n.strEnum == nil {
					n.strEnum = map[string]struct{}{}
				}
				n.strEnum[v] = struct{}{}
			case float64:
				n.numEnum = append(n.numEnum, v)
			case int:
				n.numEnum = append(n.numEnum, float64(v))
			case int64:
				n.numEnum = append(n.numEnum, float64(v))
			default:
				return c.fail()
			}
		}
	}
	if s.Pattern != "" {
		// kin-openapi rewrites \u escapes before compiling; leave those
		// patterns to it rather than risk reading one differently.
		if strings.Contains(s.Pattern, `\u`) {
			return c.fail()
		}
		re, err := regexp.Compile(s.Pattern)
		if err != nil {
			return c.fail()
		}
		n.pattern = re
	}
	if f := s.Format; f != "" {
		// Strings: the very validators kin-openapi would use, ours first.
		if v, ok := stringFormats[f]; ok {
			n.format = func(x string) bool { return v.Validate(x) == nil }
		} else if v, ok := openapi3.SchemaStringFormats[f]; ok {
			n.format = func(x string) bool { return v.Validate(x) == nil }
		}
		// Numbers: a range at least as tight as any the format implies.
		switch f {
		case "int32":
			n.intBits = 32
		case "int64":
			n.intBits = 64
		case "float":
			n.float32Range = true
		case "double":
		default:
			if n.types&(kInteger|kNumber) != 0 {
				return c.fail()
			}
		}
	}
	if s.Min != nil {
		n.min, n.hasMin = *s.Min, true
	}
	if s.Max != nil {
		n.max, n.hasMax = *s.Max, true
	}
	if b := s.ExclusiveMin; b.Value != nil {
		// 3.1: the bound itself; combined with any minimum, the tighter.
		if !n.hasMin || *b.Value >= n.min {
			n.min, n.hasMin = *b.Value, true
		}
		n.exMin = true
	} else if b.Bool != nil && *b.Bool {
		n.exMin = true
	}
	if b := s.ExclusiveMax; b.Value != nil {
		if !n.hasMax || *b.Value <= n.max {
			n.max, n.hasMax = *b.Value, true
		}
		n.exMax = true
	} else if b.Bool != nil && *b.Bool {
		n.exMax = true
	}
	if s.Items != nil {
		if n.items = c.compile(s.Items.Value); n.items == nil {
			return nil
		}
	}
	if len(s.Properties) > 0 {
		n.props = make(map[string]fprop, len(s.Properties))
		for name, ref := range s.Properties {
			if ref == nil || ref.Value == nil {
				return c.fail()
			}
			p := c.compile(ref.Value)
			if p == nil {
				return nil
			}
			n.props[name] = fprop{n: p, readOnly: ref.Value.ReadOnly}
		}
	}
	switch ap := s.AdditionalProperties; {
	case ap.Schema != nil:
		if ap.Has != nil && !*ap.Has {
			n.addl = addlNone
			break
		}
		n.addl = addlSchema
		if n.addlNode = c.compile(ap.Schema.Value); n.addlNode == nil {
			return nil
		}
	case ap.Has != nil && !*ap.Has:
		n.addl = addlNone
	}
	for _, ref := range s.AllOf {
		if ref == nil {
			return c.fail()
		}
		sub := c.compile(ref.Value)
		if sub == nil {
			return nil
		}
		n.allOf = append(n.allOf, sub)
	}
	return n
}

// valid reports whether data (accepted by ScanJSON) certainly conforms.
func (f *fastBody) valid(data []byte) bool {
	i := skipWS(data, 0)
	if i >= len(data) {
		return false
	}
	end, ok := f.root.check(data, i)
	if !ok || skipWS(data, end) != len(data) {
		return false
	}
	if f.shape != nil {
		if _, ok := shapeCheck(data, i, f.shape); !ok {
			return false
		}
	}
	return true
}

// check validates the value at data[i] and returns the index after it.
func (n *fnode) check(data []byte, i int) (int, bool) {
	if data[i] == 'n' {
		// null: only where the schema itself says so (kin-openapi also
		// accepts it through allOf in some cases; those take the slow path).
		return i + 4, n.nullable || n.types&kNull != 0
	}
	for _, sub := range n.allOf {
		if _, ok := sub.check(data, i); !ok {
			return 0, false
		}
	}
	switch c := data[i]; {
	case c == 't' || c == 'f':
		end := i + 4
		if c == 'f' {
			end++
		}
		return end, n.types&kBool != 0 && !n.hasEnum
	case c == '"':
		return n.checkString(data, i)
	case c == '{':
		return n.checkObject(data, i)
	case c == '[':
		return n.checkArray(data, i)
	default:
		return n.checkNumber(data, i)
	}
}

func (n *fnode) checkString(data []byte, i int) (int, bool) {
	end, escaped, err := scanString(data, i)
	if err != nil || n.types&kString == 0 {
		return end, false
	}
	raw := data[i+1 : end-1]
	if escaped {
		var s string
		if json.Unmarshal(data[i:end], &s) != nil {
			return end, false
		}
		raw = []byte(s)
	}
	if n.hasEnum {
		if _, ok := n.strEnum[string(raw)]; !ok {
			return end, false
		}
	}
	if n.minLen != 0 || n.maxLen >= 0 {
		l := utf8.RuneCount(raw)
		if uint64(l) < n.minLen || n.maxLen >= 0 && int64(l) > n.maxLen {
			return end, false
		}
	}
	if n.pattern != nil && !n.pattern.Match(raw) {
		return end, false
	}
	if n.format != nil && !n.format(string(raw)) {
		return end, false
	}
	return end, true
}

func (n *fnode) checkNumber(data []byte, i int) (int, bool) {
	end, err := scanNumber(data, i)
	if err != nil || n.types&(kInteger|kNumber) == 0 {
		return end, false
	}
	v, err := strconv.ParseFloat(string(data[i:end]), 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return end, false
	}
	if n.types&kNumber == 0 && v != math.Trunc(v) {
		return end, false // integer required
	}
	if n.hasEnum {
		found := false
		for _, e := range n.numEnum {
			if e == v {
				found = true
				break
			}
		}
		if !found {
			return end, false
		}
	}
	switch n.intBits {
	case 32:
		if v < math.MinInt32 || v > math.MaxInt32 {
			return end, false
		}
	case 64:
		if v < -(1<<63) || v >= 1<<63 {
			return end, false
		}
	}
	if n.float32Range && math.Abs(v) > math.MaxFloat32 {
		return end, false
	}
	if n.hasMin && (v < n.min || n.exMin && v == n.min) {
		return end, false
	}
	if n.hasMax && (v > n.max || n.exMax && v == n.max) {
		return end, false
	}
	if n.exMin && !n.hasMin || n.exMax && !n.hasMax {
		// A 3.0 exclusive flag with no bound: nothing to compare, but
		// leave the judgement to kin-openapi.
		return end, false
	}
	return end, true
}

func (n *fnode) checkArray(data []byte, i int) (int, bool) {
	if n.types&kArray == 0 || n.hasEnum {
		return 0, false
	}
	i = skipWS(data, i+1)
	count := int64(0)
	if data[i] != ']' {
		for {
			var end int
			var ok bool
			if n.items != nil {
				end, ok = n.items.check(data, i)
			} else {
				end, ok = skipValue(data, i)
			}
			if !ok {
				return 0, false
			}
			count++
			i = skipWS(data, end)
			if data[i] == ']' {
				break
			}
			i = skipWS(data, i+1) // ','
		}
	}
	if uint64(count) < n.minItems || n.maxItems >= 0 && count > n.maxItems {
		return 0, false
	}
	return i + 1, true
}

func (n *fnode) checkObject(data []byte, i int) (int, bool) {
	if n.types&kObject == 0 || n.hasEnum {
		return 0, false
	}
	i = skipWS(data, i+1)
	count := int64(0)
	var seen uint64 // bit k: required[k] present
	if data[i] != '}' {
		for {
			key, vstart, ok := readKey(data, i)
			if !ok {
				return 0, false
			}
			i = vstart
			var end int
			if p, found := n.props[string(key)]; found {
				if p.readOnly {
					return 0, false
				}
				end, ok = p.n.check(data, i)
			} else {
				switch n.addl {
				case addlNone:
					return 0, false
				case addlSchema:
					end, ok = n.addlNode.check(data, i)
				default:
					end, ok = skipValue(data, i)
				}
			}
			if !ok {
				return 0, false
			}
			for k, r := range n.required {
				if r == string(key) {
					seen |= 1 << k
				}
			}
			count++
			i = skipWS(data, end)
			if data[i] == '}' {
				break
			}
			i = skipWS(data, i+1) // ','
		}
	}
	for k, r := range n.required {
		if seen&(1<<k) == 0 {
			// kin-openapi excuses a missing readOnly property in a request.
			if p, ok := n.props[r]; !ok || !p.readOnly {
				return 0, false
			}
		}
	}
	if uint64(count) < n.minProps || n.maxProps >= 0 && count > n.maxProps {
		return 0, false
	}
	return i + 1, true
}

// shapeCheck is strict mode's mass-assignment rule over the bytes: every
// property of every object is one the shape documents.
func shapeCheck(data []byte, i int, s *shape) (int, bool) {
	if s == nil {
		return skipValue(data, i)
	}
	switch data[i] {
	case '{':
		i = skipWS(data, i+1)
		if data[i] == '}' {
			return i + 1, true
		}
		for {
			key, vstart, ok := readKey(data, i)
			if !ok {
				return 0, false
			}
			c, ok := s.child(key)
			if !ok {
				return 0, false
			}
			i = vstart
			end, ok := shapeCheck(data, i, c)
			if !ok {
				return 0, false
			}
			i = skipWS(data, end)
			if data[i] == '}' {
				return i + 1, true
			}
			i = skipWS(data, i+1)
		}
	case '[':
		i = skipWS(data, i+1)
		if data[i] == ']' {
			return i + 1, true
		}
		for {
			end, ok := shapeCheck(data, i, s.items)
			if !ok {
				return 0, false
			}
			i = skipWS(data, end)
			if data[i] == ']' {
				return i + 1, true
			}
			i = skipWS(data, i+1)
		}
	default:
		return skipValue(data, i)
	}
}

// readKey reads the object key at data[i] (unescaped) and returns where
// its value starts.
func readKey(data []byte, i int) (key []byte, value int, ok bool) {
	kend, escaped, err := scanString(data, i)
	if err != nil {
		return nil, 0, false
	}
	key = data[i+1 : kend-1]
	if escaped {
		key = unescapeKey(data[i:kend])
	}
	return key, skipWS(data, skipWS(data, kend)+1), true
}

// skipValue steps over a well-formed value.
func skipValue(data []byte, i int) (int, bool) {
	switch data[i] {
	case '"':
		end, _, err := scanString(data, i)
		return end, err == nil
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				end, _, err := scanString(data, i)
				if err != nil {
					return 0, false
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return 0, false
	default:
		end, err := scanScalar(data, i)
		return end, err == nil
	}
}

func skipWS(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
