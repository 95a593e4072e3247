package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Header returns a copy of h fit for a log: values of secret headers are
// replaced by a mark (an Authorization scheme word is kept, so "Bearer" vs
// "Basic" still shows), other values go through Text.
func (r *Redactor) Header(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for name, vals := range h {
		nv := make([]string, len(vals))
		for i, v := range vals {
			nv[i] = r.HeaderValue(name, v)
		}
		out[name] = nv
	}
	return out
}

// HeaderValue redacts one value of header name.
func (r *Redactor) HeaderValue(name, v string) string {
	if !r.IsSecretHeader(name) {
		return r.Text(v)
	}
	l := strings.ToLower(name)
	if l == "authorization" || l == "proxy-authorization" {
		if sp := strings.IndexByte(v, ' '); sp > 0 && sp < 16 {
			cred := strings.TrimSpace(v[sp+1:])
			return v[:sp] + " " + r.Mark(credentialKind(cred), cred)
		}
	}
	kind := credentialKind(v)
	if kind == KindAuth {
		kind = KindHeader
	}
	return r.Mark(kind, v)
}

// credentialKind names what an Authorization credential is, so the mark
// says "jwt" or "apikey" (with the same hash as the token in free text).
func credentialKind(cred string) string {
	switch {
	case strings.HasPrefix(cred, "eyJ") && jwtEnd(cred, 0) == len(cred):
		return KindJWT
	case apiKeyEnd(cred, 0) == len(cred):
		return KindAPIKey
	}
	return KindAuth
}

// Query redacts a raw query string (without '?'), keeping its order and
// encoding: values of secret-named parameters are replaced; other values
// are decoded and, when Text finds something in them, replaced too.
func (r *Redactor) Query(raw string) string {
	if raw == "" {
		return raw
	}
	var b strings.Builder
	changed := false
	for i, part := range strings.Split(raw, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		name, val, hasEq := strings.Cut(part, "=")
		dname, err := url.QueryUnescape(name)
		if err != nil {
			dname = name
		}
		dval, err := url.QueryUnescape(val)
		if err != nil {
			dval = val
		}
		switch {
		case hasEq && val != "" && r.isFieldName(dname):
			b.WriteString(name + "=" + r.Mark(KindSecret, dval))
			changed = true
		case r.Contains(dval) || r.Contains(dname):
			b.WriteString(r.Text(dname))
			if hasEq {
				b.WriteString("=" + r.Text(dval))
			}
			changed = true
		default:
			b.WriteString(part)
		}
	}
	if !changed {
		return raw
	}
	return b.String()
}

// URL redacts a URL or request URI for a log: userinfo password, path
// segments holding secrets or personal data (compared decoded, so
// %40-encoded emails are found), the query and the fragment.
func (r *Redactor) URL(raw string) string {
	rest, frag, hasFrag := strings.Cut(raw, "#")
	rest, query, hasQuery := strings.Cut(rest, "?")
	if i := strings.Index(rest, "://"); i >= 0 {
		auth := rest[i+3:]
		if j := strings.IndexByte(auth, '/'); j >= 0 {
			auth = auth[:j]
		}
		if at := strings.LastIndexByte(auth, '@'); at >= 0 {
			user, pass, ok := strings.Cut(auth[:at], ":")
			if ok {
				rest = rest[:i+3] + user + ":" + r.Mark(KindSecret, pass) + rest[i+3+at:]
			}
		}
	}
	path := rest
	if dec, err := url.PathUnescape(rest); err == nil && r.Contains(dec) {
		path = r.Text(dec)
	} else {
		path = r.Text(rest)
	}
	out := path
	if hasQuery {
		out += "?" + r.Query(query)
	}
	if hasFrag {
		// Fragments carry OAuth implicit-flow tokens (#access_token=…).
		out += "#" + r.Query(frag)
	}
	return out
}

// MaxJSONBytes bounds what JSON will buffer; larger documents are replaced
// whole by a mark (see ErrTooLarge).
const MaxJSONBytes = 1 << 20

// maxJSONDepth bounds nesting so a hostile document cannot blow the stack.
const maxJSONDepth = 64

// ErrTooLarge is returned by JSON for documents over MaxJSONBytes.
var ErrTooLarge = errors.New("redact: JSON document too large")

// JSON redacts a JSON document: values of secret-named fields and of
// configured field paths become marks (whole subtrees for objects and
// arrays), every other string, and every number, goes through Text. Key
// order and structure are kept. Invalid JSON is an error: callers should
// then log Text of the bytes, or nothing.
func (r *Redactor) JSON(doc []byte) ([]byte, error) {
	if len(doc) > MaxJSONBytes {
		return nil, ErrTooLarge
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var out bytes.Buffer
	out.Grow(len(doc) + 32)
	if err := r.jsonValue(dec, &out, nil, 0, false); err != nil {
		return nil, fmt.Errorf("redact: json: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("redact: json: trailing data")
	}
	return out.Bytes(), nil
}

// jsonValue copies the next value from dec to out. hide replaces it (a
// secret field's value, whatever its type) by one mark string.
func (r *Redactor) jsonValue(dec *json.Decoder, out *bytes.Buffer, path []string, depth int, hide bool) error {
	if depth > maxJSONDepth {
		return errors.New("nesting too deep")
	}
	if hide {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		v := string(raw)
		var str string
		if json.Unmarshal(raw, &str) == nil {
			v = str // the same secret hashes alike in JSON and in text
		}
		return writeJSONString(out, r.Mark(KindSecret, v))
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			out.WriteByte('{')
			first := true
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				key, ok := kt.(string)
				if !ok {
					return errors.New("object key is not a string")
				}
				if !first {
					out.WriteByte(',')
				}
				first = false
				if err := writeJSONString(out, key); err != nil {
					return err
				}
				out.WriteByte(':')
				sub := append(path[:len(path):len(path)], key)
				h := r.isFieldName(key) || r.matchPath(sub)
				if err := r.jsonValue(dec, out, sub, depth+1, h); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil {
				return err
			}
			out.WriteByte('}')
		case '[':
			out.WriteByte('[')
			first := true
			for dec.More() {
				if !first {
					out.WriteByte(',')
				}
				first = false
				if err := r.jsonValue(dec, out, path, depth+1, false); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil {
				return err
			}
			out.WriteByte(']')
		}
	case string:
		return writeJSONString(out, r.Text(t))
	case json.Number:
		// Card numbers travel as JSON numbers too.
		if s := r.Text(t.String()); s != t.String() {
			return writeJSONString(out, s)
		}
		out.WriteString(t.String())
	case bool:
		if t {
			out.WriteString("true")
		} else {
			out.WriteString("false")
		}
	case nil:
		out.WriteString("null")
	}
	return nil
}

func writeJSONString(out *bytes.Buffer, s string) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	out.Write(b)
	return nil
}
