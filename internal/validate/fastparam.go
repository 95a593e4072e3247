package validate

import (
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
)

// fastParam accepts the common scalar parameter (a string, integer, number
// or boolean with plain bounds) without kin-openapi's generic decoding. It
// only ever says "valid": anything it is unsure about, and every failure,
// goes to kin-openapi, so errors and edge cases stay kin-openapi's.
type fastParam struct {
	p        *openapi3.Parameter
	kind     byte // 's', 'i', 'n', 'b'
	min, max float64
	hasMin   bool
	hasMax   bool
	minLen   uint64
	maxLen   int64 // -1: none
	pattern  *regexp.Regexp
	format   openapi3.StringFormatValidator
	enum     map[string]bool
	int32    bool
}

// compileFastParam returns nil when the parameter needs kin-openapi.
func compileFastParam(p *openapi3.Parameter) *fastParam {
	if p.Schema == nil || p.Schema.Value == nil || p.Content != nil || p.Style != "" || p.Explode != nil || p.AllowEmptyValue {
		return nil
	}
	if p.In == openapi3.ParameterInCookie {
		return nil
	}
	s := p.Schema.Value
	if s.Type == nil || !s.Type.IsSingle() || len(s.AllOf)+len(s.OneOf)+len(s.AnyOf) > 0 || s.Not != nil ||
		s.ExclusiveMin.IsSet() || s.ExclusiveMax.IsSet() || s.MultipleOf != nil || s.Nullable || s.Default != nil {
		return nil
	}
	f := &fastParam{p: p, maxLen: -1}
	if s.Min != nil {
		f.min, f.hasMin = *s.Min, true
	}
	if s.Max != nil {
		f.max, f.hasMax = *s.Max, true
	}
	switch {
	case s.Type.Is("string"):
		f.kind = 's'
		f.minLen = s.MinLength
		if s.MaxLength != nil {
			if *s.MaxLength > math.MaxInt32 {
				return nil
			}
			f.maxLen = int64(*s.MaxLength)
		}
		if s.Pattern != "" {
			re, err := regexp.Compile(s.Pattern)
			if err != nil {
				return nil
			}
			f.pattern = re
		}
		if s.Format != "" {
			if v, ok := stringFormats[s.Format]; ok {
				f.format = v
			} else if v, ok := openapi3.SchemaStringFormats[s.Format]; ok {
				f.format = v
			} else {
				return nil
			}
		}
		if len(s.Enum) > 0 {
			f.enum = map[string]bool{}
			for _, e := range s.Enum {
				es, ok := e.(string)
				if !ok {
					return nil
				}
				f.enum[es] = true
			}
		}
	case s.Type.Is("integer"):
		f.kind = 'i'
		switch s.Format {
		case "", "int64":
		case "int32":
			f.int32 = true
		default:
			return nil
		}
	case s.Type.Is("number"):
		f.kind = 'n'
		if s.Format != "" && s.Format != "float" && s.Format != "double" {
			return nil
		}
	case s.Type.Is("boolean"):
		f.kind = 'b'
	default:
		return nil
	}
	if f.kind != 's' && (len(s.Enum) > 0 || s.Pattern != "" || s.MinLength != 0 || s.MaxLength != nil) {
		return nil
	}
	return f
}

// value finds the raw value; ok is false when kin-openapi should look.
func (f *fastParam) value(r *http.Request, path map[string]string, q url.Values) (string, bool) {
	switch f.p.In {
	case openapi3.ParameterInPath:
		v, ok := path[f.p.Name]
		return v, ok
	case openapi3.ParameterInQuery:
		vs := q[f.p.Name]
		if len(vs) != 1 {
			return "", false
		}
		return vs[0], true
	case openapi3.ParameterInHeader:
		vs := r.Header.Values(f.p.Name)
		if len(vs) != 1 {
			return "", false
		}
		return vs[0], true
	}
	return "", false
}

// accepts reports whether v certainly satisfies the schema.
func (f *fastParam) accepts(v string) bool {
	if v == "" {
		return false
	}
	switch f.kind {
	case 's':
		if f.minLen > 0 || f.maxLen >= 0 {
			n := utf8.RuneCountInString(v)
			if uint64(n) < f.minLen || (f.maxLen >= 0 && int64(n) > f.maxLen) {
				return false
			}
		}
		if f.enum != nil && !f.enum[v] {
			return false
		}
		if f.pattern != nil && !f.pattern.MatchString(v) {
			return false
		}
		if f.format != nil && f.format.Validate(v) != nil {
			return false
		}
		return true
	case 'i':
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || (f.int32 && (n < math.MinInt32 || n > math.MaxInt32)) {
			return false
		}
		return f.inRange(float64(n))
	case 'n':
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
			return false
		}
		return f.inRange(n)
	case 'b':
		return v == "true" || v == "false"
	}
	return false
}

func (f *fastParam) inRange(n float64) bool {
	return (!f.hasMin || n >= f.min) && (!f.hasMax || n <= f.max)
}
