package validate

import (
	"encoding/json"
	"strconv"
)

// decodeJSON turns a document ScanJSON has accepted into the generic values
// kin-openapi validates (map[string]any, []any, string, float64, bool,
// nil), as encoding/json would, without its second validity pass and
// reflection. Only well-formed input reaches it.
func decodeJSON(data []byte) (any, error) {
	d := decoder{data: data}
	v, _, err := d.value(d.ws(0))
	return v, err
}

type decoder struct{ data []byte }

func (d *decoder) ws(i int) int {
	for i < len(d.data) {
		switch d.data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func (d *decoder) value(i int) (any, int, error) {
	switch c := d.data[i]; c {
	case '{':
		m := map[string]any{}
		i = d.ws(i + 1)
		if d.data[i] == '}' {
			return m, i + 1, nil
		}
		for {
			k, end, err := d.str(i)
			if err != nil {
				return nil, i, err
			}
			i = d.ws(end)
			i = d.ws(i + 1) // ':'
			v, end, err := d.value(i)
			if err != nil {
				return nil, i, err
			}
			m[k] = v
			i = d.ws(end)
			if d.data[i] == '}' {
				return m, i + 1, nil
			}
			i = d.ws(i + 1) // ','
		}
	case '[':
		a := []any{}
		i = d.ws(i + 1)
		if d.data[i] == ']' {
			return a, i + 1, nil
		}
		for {
			v, end, err := d.value(i)
			if err != nil {
				return nil, i, err
			}
			a = append(a, v)
			i = d.ws(end)
			if d.data[i] == ']' {
				return a, i + 1, nil
			}
			i = d.ws(i + 1)
		}
	case '"':
		return d.strValue(i)
	case 't':
		return true, i + 4, nil
	case 'f':
		return false, i + 5, nil
	case 'n':
		return nil, i + 4, nil
	default:
		end, err := scanNumber(d.data, i)
		if err != nil {
			return nil, i, err
		}
		f, err := strconv.ParseFloat(string(d.data[i:end]), 64)
		if err != nil {
			// Out of float64 range: encoding/json refuses it too.
			return nil, i, ErrSyntax
		}
		return f, end, nil
	}
}

func (d *decoder) strValue(i int) (any, int, error) {
	s, end, err := d.str(i)
	return s, end, err
}

func (d *decoder) str(i int) (string, int, error) {
	end, esc, err := scanString(d.data, i)
	if err != nil {
		return "", i, err
	}
	if !esc {
		return string(d.data[i+1 : end-1]), end, nil
	}
	var s string
	if err := json.Unmarshal(d.data[i:end], &s); err != nil {
		return "", i, ErrSyntax
	}
	return s, end, nil
}
