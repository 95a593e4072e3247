package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/gateway"
	"github.com/gatehouse/gatehouse/internal/store"
)

// changeKey carries the before/after of an admin action from its handler to
// the audit wrapper.
type changeKey struct{}

type change struct {
	target        string
	before, after any
}

// noteChange tells the audit wrapper what the action changed. Values must
// hold no secret (credential views, never keys).
func noteChange(r *http.Request, target string, before, after any) {
	if c, ok := r.Context().Value(changeKey{}).(*change); ok {
		c.target, c.before, c.after = target, before, after
	}
}

// responseBuffer holds an admin response until its audit record is written:
// admin responses are small, and in durable mode an action is only
// acknowledged once it is on record.
type responseBuffer struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (b *responseBuffer) Header() http.Header { return b.h }
func (b *responseBuffer) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *responseBuffer) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// audited records every state-changing admin call (who, what, target,
// before/after) in the audit trail.
func (s *Server) audited(next http.Handler) http.Handler {
	if s.auditWrite == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		ch := &change{}
		buf := &responseBuffer{h: http.Header{}}
		start := time.Now()
		next.ServeHTTP(buf, r.WithContext(context.WithValue(r.Context(), changeKey{}, ch)))
		if buf.status == 0 {
			buf.status = http.StatusOK
		}
		action := r.Pattern
		if action == "" {
			action = r.Method + " " + r.URL.Path
		}
		rec := &audit.AdminRecord{Time: start, Actor: "admin-token", Action: action, Target: ch.target,
			Status: buf.status, ClientIP: remoteIP(r.RemoteAddr), Before: marshalOrNil(ch.before), After: marshalOrNil(ch.after)}
		if err := s.auditWrite(rec); err != nil {
			// The action has taken effect; say so, and that it is not on
			// record, rather than pretend it failed.
			buf.h.Set("Warning", `199 gatehouse "audit record not written"`)
		}
		for k, v := range buf.h {
			w.Header()[k] = v
		}
		w.WriteHeader(buf.status)
		_, _ = w.Write(buf.body.Bytes())
	})
}

func marshalOrNil(v any) []byte {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

func remoteIP(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i > 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}

// AuditQuery searches the audit index (store.AuditStore.QueryAudit).
type AuditQuery func(ctx context.Context, q store.AuditQuery) ([]store.AuditEntry, error)

// ParseAuditQuery reads the filters shared by GET /v1/audit and
// 'gatehouse logs query'.
func ParseAuditQuery(get func(string) string) (store.AuditQuery, error) {
	q := store.AuditQuery{Consumer: get("consumer"), Partner: get("partner"), API: get("api"), Decision: get("decision")}
	if v := get("status"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 599 {
			return q, fmt.Errorf("status: want an HTTP status code such as 403")
		}
		q.Status = n
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		v := get(f.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			d, derr := time.ParseDuration(v)
			if derr != nil || d < 0 {
				return q, fmt.Errorf("%s: want an RFC 3339 time or a duration ago such as 1h", f.name)
			}
			t = time.Now().Add(-d)
		}
		*f.dst = t
	}
	if v := get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return q, fmt.Errorf("limit: want 1 to 10000")
		}
		q.Limit = n
	}
	return q, nil
}

func (s *Server) getAudit(w http.ResponseWriter, r *http.Request) {
	qs := r.URL.Query()
	q, err := ParseAuditQuery(qs.Get)
	if err != nil {
		gateway.WriteProblem(w, probInvalid, err.Error(), "")
		return
	}
	entries, err := s.auditQuery(r.Context(), q)
	if err != nil {
		gateway.WriteProblem(w, gateway.ProbUnavailable, "The audit index is unavailable; the signed log on disk still has every record.", "")
		return
	}
	out := make([]json.RawMessage, 0, len(entries))
	for _, e := range entries {
		out = append(out, json.RawMessage(e.Record))
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": out})
}
