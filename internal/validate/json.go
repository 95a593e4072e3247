package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// JSON problems found before any schema is consulted. They are values, not
// messages: the caller maps them to a generic detail.
var (
	ErrSyntax       = errors.New("malformed JSON")
	ErrInvalidUTF8  = errors.New("invalid UTF-8")
	ErrTooDeep      = errors.New("JSON nested too deeply")
	ErrDuplicateKey = errors.New("duplicate JSON object key")
)

// ScanError is a problem in a JSON document, with the JSON pointer of where
// it was found (the object holding a duplicate key, the value too deep).
type ScanError struct {
	Err     error
	Pointer string
}

func (e *ScanError) Error() string { return e.Err.Error() + " at " + strconvQuote(e.Pointer) }
func (e *ScanError) Unwrap() error { return e.Err }

func strconvQuote(s string) string { return strconv.Quote(s) }

// ScanJSON checks that data is one well-formed JSON value in valid UTF-8,
// nested at most maxDepth deep, with no object holding the same key twice
// (after unescaping). Duplicate keys are a parser differential: the gateway
// would validate the first value while many backends use the last, so a
// body could pass validation carrying a different payload. It allocates
// nothing for documents without escaped or duplicate keys.
func ScanJSON(data []byte, maxDepth int) error {
	s := scanners.Get().(*scanner)
	s.data, s.max, s.keys, s.path = data, maxDepth, s.keys[:0], s.path[:0]
	defer func() {
		s.data = nil
		clear(s.keys[:cap(s.keys)]) // drop references to the body
		clear(s.path[:cap(s.path)])
		scanners.Put(s)
	}()
	i, err := s.value(s.ws(0), 1)
	if err != nil {
		return err
	}
	if s.ws(i) != len(data) {
		return &ScanError{Err: ErrSyntax, Pointer: ""}
	}
	return nil
}

var scanners = sync.Pool{New: func() any { return &scanner{keys: make([][]byte, 0, 32), path: make([]pathSeg, 0, 16)} }}

type scanner struct {
	data []byte
	max  int
	keys [][]byte // keys of the objects being scanned, innermost last
	path []pathSeg
}

type pathSeg struct {
	key []byte
	idx int // -1 for object keys
}

func (s *scanner) fail(err error) error {
	return &ScanError{Err: err, Pointer: segsPointer(s.path)}
}

func segsPointer(path []pathSeg) string {
	if len(path) == 0 {
		return ""
	}
	var b strings.Builder
	for _, p := range path {
		b.WriteByte('/')
		if p.idx >= 0 {
			b.WriteString(strconv.Itoa(p.idx))
		} else {
			b.WriteString(escapePointer(string(p.key)))
		}
	}
	return b.String()
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

func escapePointer(s string) string {
	if strings.ContainsAny(s, "~/") {
		return pointerEscaper.Replace(s)
	}
	return s
}

func (s *scanner) ws(i int) int {
	for i < len(s.data) {
		switch s.data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func (s *scanner) value(i, depth int) (int, error) {
	if i >= len(s.data) {
		return i, s.fail(ErrSyntax)
	}
	switch c := s.data[i]; {
	case c == '{':
		if depth > s.max {
			return i, s.fail(ErrTooDeep)
		}
		return s.object(i, depth)
	case c == '[':
		if depth > s.max {
			return i, s.fail(ErrTooDeep)
		}
		return s.array(i, depth)
	case c == '"':
		end, _, err := scanString(s.data, i)
		if err != nil {
			return i, s.fail(err)
		}
		return end, nil
	default:
		end, err := scanScalar(s.data, i)
		if err != nil {
			return i, s.fail(err)
		}
		return end, nil
	}
}

func (s *scanner) object(i, depth int) (int, error) {
	base := len(s.keys)
	defer func() { s.keys = s.keys[:base] }()
	i = s.ws(i + 1)
	if i < len(s.data) && s.data[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(s.data) || s.data[i] != '"' {
			return i, s.fail(ErrSyntax)
		}
		end, esc, err := scanString(s.data, i)
		if err != nil {
			return i, s.fail(err)
		}
		key := s.data[i+1 : end-1]
		if esc {
			key = unescapeKey(s.data[i:end])
		}
		for _, k := range s.keys[base:] {
			if bytes.Equal(k, key) {
				s.path = append(s.path, pathSeg{key: key, idx: -1})
				err := s.fail(ErrDuplicateKey)
				s.path = s.path[:len(s.path)-1]
				return i, err
			}
		}
		if len(s.keys)-base > 256 {
			// Objects this wide are rare in requests; a quadratic check
			// over thousands of keys would be a CPU lever for an attacker.
			return i, s.fail(ErrTooDeep)
		}
		s.keys = append(s.keys, key)
		i = s.ws(end)
		if i >= len(s.data) || s.data[i] != ':' {
			return i, s.fail(ErrSyntax)
		}
		s.path = append(s.path, pathSeg{key: key, idx: -1})
		i, err = s.value(s.ws(i+1), depth+1)
		s.path = s.path[:len(s.path)-1]
		if err != nil {
			return i, err
		}
		i = s.ws(i)
		if i >= len(s.data) {
			return i, s.fail(ErrSyntax)
		}
		switch s.data[i] {
		case ',':
			i = s.ws(i + 1)
		case '}':
			return i + 1, nil
		default:
			return i, s.fail(ErrSyntax)
		}
	}
}

func (s *scanner) array(i, depth int) (int, error) {
	i = s.ws(i + 1)
	if i < len(s.data) && s.data[i] == ']' {
		return i + 1, nil
	}
	for n := 0; ; n++ {
		var err error
		s.path = append(s.path, pathSeg{idx: n})
		i, err = s.value(i, depth+1)
		s.path = s.path[:len(s.path)-1]
		if err != nil {
			return i, err
		}
		i = s.ws(i)
		if i >= len(s.data) {
			return i, s.fail(ErrSyntax)
		}
		switch s.data[i] {
		case ',':
			i = s.ws(i + 1)
		case ']':
			return i + 1, nil
		default:
			return i, s.fail(ErrSyntax)
		}
	}
}

// unescapeKey decodes a quoted JSON string (already checked well-formed).
func unescapeKey(quoted []byte) []byte {
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return quoted
	}
	return []byte(s)
}

// scanString checks the string starting at data[i] (a quote) and returns
// the index after its closing quote and whether it holds escapes.
func scanString(data []byte, i int) (end int, escaped bool, err error) {
	i++
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			return i + 1, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(data) {
				return i, escaped, ErrSyntax
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) || !isHex4(data[i+2:i+6]) {
					return i, escaped, ErrSyntax
				}
				i += 6
			default:
				return i, escaped, ErrSyntax
			}
		case c < 0x20:
			return i, escaped, ErrSyntax
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				return i, escaped, ErrInvalidUTF8
			}
			i += size
		}
	}
	return i, escaped, ErrSyntax
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// scanScalar checks a number or literal at data[i].
func scanScalar(data []byte, i int) (int, error) {
	for _, lit := range [...]string{"true", "false", "null"} {
		if bytes.HasPrefix(data[i:], []byte(lit)) {
			return i + len(lit), nil
		}
	}
	return scanNumber(data, i)
}

func scanNumber(data []byte, i int) (int, error) {
	start := i
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && '1' <= data[i] && data[i] <= '9':
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
	default:
		if i < len(data) && data[i] >= utf8.RuneSelf && !utf8.Valid(data[i:min(i+4, len(data))]) {
			return start, ErrInvalidUTF8
		}
		return start, ErrSyntax
	}
	if i < len(data) && data[i] == '.' {
		i++
		d := i
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
		if i == d {
			return start, ErrSyntax
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		d := i
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
		if i == d {
			return start, ErrSyntax
		}
	}
	return i, nil
}
