// Package audit keeps the tamper-evident audit trail: one record per request
// and per admin action, appended to JSON Lines segment files in which every
// record carries the SHA-256 of the one before it, with Ed25519-signed
// checkpoints (the signed-note format of golang.org/x/mod/sumdb/note) every
// N records or T seconds. docs/audit.md describes the format.
package audit

import (
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Record is one request as the gateway saw it. Credential IDs are
// identifiers, never secrets; Path has gone through a Redactor.
type Record struct {
	Time         time.Time
	RequestID    string
	Consumer     string
	Partner      string
	CredentialID string
	API          string
	Version      string
	Operation    string
	Method       string
	PathTemplate string
	Path         string // redacted path and query
	ClientIP     string
	UserAgent    string
	Status       int
	Latency      time.Duration
	BytesIn      int64
	BytesOut     int64
	Decision     string // allow, deny or error
	Stage        string // the stage that denied, or ""
	Reason       string // stable reason code, or ""
	WAFRules     []string
	Anomalies    []string
}

// AnomalySpecDrift flags a request that violated its operation's schema
// while validation ran in report mode (discovery's drift report counts them).
const AnomalySpecDrift = "spec_drift_request"

// AnomalySpecDriftResponse flags a response with fields its operation's
// schema does not document while filtering ran in report mode.
const AnomalySpecDriftResponse = "spec_drift_response"

// Redactor turns the request's escaped path and raw query into what the
// audit trail may keep. It is set when the gateway is wired; secrets and
// PII in paths and query strings must not reach the log.
type Redactor func(path, rawQuery string) string

// QueryNamesOnly is the default Redactor: the path as routed, and of the
// query only the parameter names, so a token or e-mail address passed as a
// query value is never written.
func QueryNamesOnly(path, rawQuery string) string {
	if rawQuery == "" {
		return path
	}
	var b strings.Builder
	b.Grow(len(path) + 1 + len(rawQuery))
	b.WriteString(path)
	b.WriteByte('?')
	first := true
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		name, _, _ := strings.Cut(kv, "=")
		if name == "" {
			continue
		}
		if !first {
			b.WriteByte('&')
		}
		first = false
		b.WriteString(name)
	}
	return b.String()
}

// Record types.
const (
	TypeRequest = "request"
	TypeAdmin   = "admin"
	TypeSystem  = "system"
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func getBuf() *[]byte { b := bufPool.Get().(*[]byte); *b = (*b)[:0]; return b }

func putBuf(b *[]byte) {
	if cap(*b) <= 64<<10 {
		bufPool.Put(b)
	}
}

// appendBody encodes r as the JSON object members that follow the chain
// fields, hand-rolled because it runs once per request.
func (r *Record) appendBody(b []byte) []byte {
	b = append(b, `"type":"request","time":"`...)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "request_id", r.RequestID)
	b = appendField(b, "consumer", r.Consumer)
	b = appendField(b, "partner", r.Partner)
	b = appendField(b, "credential_id", r.CredentialID)
	b = appendField(b, "api", r.API)
	b = appendField(b, "version", r.Version)
	b = appendField(b, "operation", r.Operation)
	b = appendField(b, "method", r.Method)
	b = appendField(b, "path_template", r.PathTemplate)
	b = appendField(b, "path", r.Path)
	b = appendField(b, "client_ip", r.ClientIP)
	b = appendField(b, "user_agent", r.UserAgent)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"latency_us":`...)
	b = strconv.AppendInt(b, r.Latency.Microseconds(), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, r.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, r.BytesOut, 10)
	b = appendField(b, "decision", r.Decision)
	b = appendField(b, "stage", r.Stage)
	b = appendField(b, "reason", r.Reason)
	b = appendList(b, "waf_rules", r.WAFRules)
	b = appendList(b, "anomalies", r.Anomalies)
	return append(b, '}')
}

// AdminRecord is one change made through the admin API or CLI.
type AdminRecord struct {
	Time      time.Time
	Actor     string // who: "admin-token", "cli:alice"
	Action    string // what: "POST /v1/keys/{id}/rotate"
	Target    string // the object acted on
	Status    int
	ClientIP  string
	RequestID string
	Before    []byte // JSON, or nil
	After     []byte // JSON, or nil
}

func (r *AdminRecord) appendBody(b []byte) []byte {
	b = append(b, `"type":"admin","time":"`...)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "actor", r.Actor)
	b = appendField(b, "action", r.Action)
	b = appendField(b, "target", r.Target)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = appendField(b, "client_ip", r.ClientIP)
	b = appendField(b, "request_id", r.RequestID)
	b = appendRaw(b, "before", r.Before)
	b = appendRaw(b, "after", r.After)
	return append(b, '}')
}

// systemBody is a record the writer itself adds, such as the notice of an
// unclean shutdown found at start.
func systemBody(b []byte, t time.Time, event, detail string) []byte {
	b = append(b, `"type":"system","time":"`...)
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "event", event)
	b = appendField(b, "detail", detail)
	return append(b, '}')
}

func appendField(b []byte, k, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, k...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

func appendList(b []byte, k string, vs []string) []byte {
	b = append(b, ',', '"')
	b = append(b, k...)
	b = append(b, `":[`...)
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, v)
	}
	return append(b, ']')
}

// appendRaw embeds pre-encoded JSON; the caller marshalled it with
// encoding/json, so it is valid. Empty means null.
func appendRaw(b []byte, k string, raw []byte) []byte {
	b = append(b, ',', '"')
	b = append(b, k...)
	b = append(b, '"', ':')
	if len(raw) == 0 {
		return append(b, "null"...)
	}
	return append(b, raw...)
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string. Control characters, quotes,
// backslashes and invalid UTF-8 are escaped so a hostile User-Agent cannot
// break a line or forge a field.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
