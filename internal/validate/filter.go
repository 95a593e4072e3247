package validate

import (
	"errors"
	"strconv"
	"strings"
)

// maxFilterDepth bounds the recursion of the response filter; a backend
// answering deeper than this is refused rather than followed.
const maxFilterDepth = 256

// ErrUnfilterable is returned for a response body the filter cannot parse.
var ErrUnfilterable = errors.New("response body is not filterable JSON")

// DenyList is a compiled list of field names and /pointer/paths that never
// leave the gateway.
type DenyList struct {
	names map[string]bool
	paths [][]string // segments; "*" matches any key or index
}

// NewDenyList compiles deny_fields entries: a bare name matches that key at
// any depth, a /pointer/path matches one place.
func NewDenyList(lists ...[]string) *DenyList {
	d := &DenyList{names: map[string]bool{}}
	for _, l := range lists {
		for _, f := range l {
			if strings.HasPrefix(f, "/") {
				segs := strings.Split(f[1:], "/")
				for i, s := range segs {
					segs[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(s)
				}
				d.paths = append(d.paths, segs)
			} else if f != "" {
				d.names[f] = true
			}
		}
	}
	if len(d.names) == 0 && len(d.paths) == 0 {
		return nil
	}
	return d
}

func (d *DenyList) denies(key []byte, path []pathSeg) bool {
	if d == nil {
		return false
	}
	if d.names[string(key)] {
		return true
	}
	for _, p := range d.paths {
		if len(p) != len(path)+1 {
			continue
		}
		match := p[len(p)-1] == "*" || p[len(p)-1] == string(key)
		for i := 0; match && i < len(path); i++ {
			match = segMatches(p[i], path[i])
		}
		if match {
			return true
		}
	}
	return false
}

func segMatches(pat string, s pathSeg) bool {
	if pat == "*" {
		return true
	}
	if s.idx >= 0 {
		return pat == strconv.Itoa(s.idx)
	}
	return pat == string(s.key)
}

// filterer rewrites a JSON document keeping only documented fields.
type filterer struct {
	data    []byte
	out     []byte
	deny    *DenyList
	report  bool     // keep undocumented fields, only list them
	collect bool     // build the pointers of undocumented fields
	dropped []string // pointers of undocumented fields (bounded)
	ndrop   int
	denied  int
	path    []pathSeg
}

const maxDropped = 32

// filterJSON appends to out the document data with every field shape s does
// not document removed (or, with report, kept and listed), and every field
// the deny list names removed. The output is compact JSON.
func filterJSON(out, data []byte, s *shape, deny *DenyList, report, collect bool) (res []byte, dropped []string, ndrop, denied int, err error) {
	var path [16]pathSeg
	f := filterer{data: data, out: out, deny: deny, report: report, collect: collect, path: path[:0]}
	i, err := f.value(f.ws(0), s, 0)
	if err != nil {
		return out, nil, 0, 0, err
	}
	if f.ws(i) != len(data) {
		return out, nil, 0, 0, ErrUnfilterable
	}
	return f.out, f.dropped, f.ndrop, f.denied, nil
}

func (f *filterer) ws(i int) int {
	for i < len(f.data) {
		switch f.data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func (f *filterer) value(i int, s *shape, depth int) (int, error) {
	if i >= len(f.data) || depth > maxFilterDepth {
		return i, ErrUnfilterable
	}
	switch f.data[i] {
	case '{':
		return f.object(i, s, depth)
	case '[':
		return f.array(i, s, depth)
	case '"':
		end, _, err := scanString(f.data, i)
		if err != nil {
			return i, ErrUnfilterable
		}
		f.out = append(f.out, f.data[i:end]...)
		return end, nil
	default:
		end, err := scanScalar(f.data, i)
		if err != nil {
			return i, ErrUnfilterable
		}
		f.out = append(f.out, f.data[i:end]...)
		return end, nil
	}
}

func (f *filterer) object(i int, s *shape, depth int) (int, error) {
	f.out = append(f.out, '{')
	first := true
	i = f.ws(i + 1)
	if i < len(f.data) && f.data[i] == '}' {
		f.out = append(f.out, '}')
		return i + 1, nil
	}
	for {
		if i >= len(f.data) || f.data[i] != '"' {
			return i, ErrUnfilterable
		}
		end, esc, err := scanString(f.data, i)
		if err != nil {
			return i, ErrUnfilterable
		}
		rawKey := f.data[i:end]
		key := rawKey[1 : len(rawKey)-1]
		if esc {
			key = unescapeKey(rawKey)
		}
		i = f.ws(end)
		if i >= len(f.data) || f.data[i] != ':' {
			return i, ErrUnfilterable
		}
		i = f.ws(i + 1)
		child, documented := s.child(key)
		keep := documented || f.report
		if f.deny.denies(key, f.path) {
			keep = false
			f.denied++
		} else if !documented {
			f.ndrop++
			if f.collect && len(f.dropped) < maxDropped {
				f.path = append(f.path, pathSeg{key: key, idx: -1})
				f.dropped = append(f.dropped, segsPointer(f.path))
				f.path = f.path[:len(f.path)-1]
			}
		}
		if keep {
			if !first {
				f.out = append(f.out, ',')
			}
			first = false
			f.out = append(f.out, rawKey...)
			f.out = append(f.out, ':')
			f.path = append(f.path, pathSeg{key: key, idx: -1})
			i, err = f.value(i, child, depth+1)
			f.path = f.path[:len(f.path)-1]
		} else {
			i, err = f.skip(i, depth+1)
		}
		if err != nil {
			return i, err
		}
		i = f.ws(i)
		if i >= len(f.data) {
			return i, ErrUnfilterable
		}
		switch f.data[i] {
		case ',':
			i = f.ws(i + 1)
		case '}':
			f.out = append(f.out, '}')
			return i + 1, nil
		default:
			return i, ErrUnfilterable
		}
	}
}

func (f *filterer) array(i int, s *shape, depth int) (int, error) {
	f.out = append(f.out, '[')
	i = f.ws(i + 1)
	if i < len(f.data) && f.data[i] == ']' {
		f.out = append(f.out, ']')
		return i + 1, nil
	}
	items := s.item()
	for n := 0; ; n++ {
		if n > 0 {
			f.out = append(f.out, ',')
		}
		var err error
		f.path = append(f.path, pathSeg{idx: n})
		i, err = f.value(i, items, depth+1)
		f.path = f.path[:len(f.path)-1]
		if err != nil {
			return i, err
		}
		i = f.ws(i)
		if i >= len(f.data) {
			return i, ErrUnfilterable
		}
		switch f.data[i] {
		case ',':
			i = f.ws(i + 1)
		case ']':
			f.out = append(f.out, ']')
			return i + 1, nil
		default:
			return i, ErrUnfilterable
		}
	}
}

// skip steps over a value without copying it, still checking its syntax.
func (f *filterer) skip(i, depth int) (int, error) {
	mark := len(f.out)
	save := f.deny
	f.deny = nil
	rep := f.report
	f.report = true
	dropped, ndrop := f.dropped, f.ndrop
	end, err := f.value(i, nil, depth)
	f.deny, f.report, f.dropped, f.ndrop = save, rep, dropped, ndrop
	f.out = f.out[:mark]
	return end, err
}

func itoa(i int) string { return strconv.Itoa(i) }
