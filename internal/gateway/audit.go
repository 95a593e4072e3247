package gateway

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
)

// auditHook connects the pipeline to the audit writer.
//
// When a record is committed: in durable mode at the moment the response
// status is known and before any response header leaves (statusWriter's
// WriteHeader, reached by ReverseProxy after the upstream answered and by
// WriteProblem for denials), so latency is time to first byte and bytes out
// is the Content-Length when one is declared. If the write fails the client
// gets 503 instead of the response: nothing is served unrecorded. In
// buffered mode the record is queued at the end of ServeHTTP with the full
// latency and byte counts.
type auditHook struct {
	w       *audit.Writer
	redact  audit.Redactor
	durable bool
}

// SetAudit wires the audit writer; call before serving. A nil redact keeps
// the path and only the query's parameter names.
func (g *Gateway) SetAudit(w *audit.Writer, redact audit.Redactor) {
	if w == nil {
		g.audit = nil
		return
	}
	if redact == nil {
		redact = audit.QueryNamesOnly
	}
	g.audit = &auditHook{w: w, redact: redact, durable: w.Mode() == audit.Durable}
}

// auditUnavailable reports whether durable mode must refuse new work
// because the log cannot be written.
func (g *Gateway) auditUnavailable() bool {
	return g.audit != nil && g.audit.durable && !g.audit.w.Stats().Healthy
}

// writeAudit builds and writes the record for c. It returns false when the
// record could not be written in durable mode.
func (g *Gateway) writeAudit(c *call, sw *statusWriter, status int, bytesOut int64) bool {
	a := g.audit
	c.audited = true
	r := c.req
	rec := audit.Record{
		Time: c.start, RequestID: c.requestID, API: c.api, Operation: c.operation,
		ClientIP: c.clientIP, Status: status, Latency: time.Since(c.start), BytesOut: bytesOut,
		Stage: c.denyStage, Reason: c.denyReason, Decision: "allow",
	}
	if r != nil {
		rec.Method = r.Method
		rec.UserAgent = r.Header.Get("User-Agent")
		if r.ContentLength > 0 {
			rec.BytesIn = r.ContentLength
		}
		path := c.path
		if path == "" {
			path, _ = rawPath(r)
		}
		rawQuery := ""
		if r.URL != nil {
			rawQuery = r.URL.RawQuery
		}
		rec.Path = a.redact(path, rawQuery)
	}
	if op := c.op; op != nil {
		rec.Version = op.API.Config.Version
		rec.PathTemplate = op.Template
	}
	if p := c.principal; p != nil {
		rec.Consumer, rec.Partner, rec.CredentialID = p.Consumer, p.Partner, p.CredentialID
	}
	if len(c.wafRules) > 0 {
		rec.WAFRules = make([]string, len(c.wafRules))
		for i, id := range c.wafRules {
			rec.WAFRules[i] = strconv.Itoa(id)
		}
	}
	if c.wafScore > 0 {
		// The CRS inbound anomaly score is the one anomaly known while the
		// request is recorded; the streaming detectors raise alerts later.
		rec.Anomalies = []string{"waf_" + c.wafAction + "_score_" + strconv.Itoa(c.wafScore)}
	}
	if c.drift {
		rec.Anomalies = append(rec.Anomalies, audit.AnomalySpecDrift)
	}
	if c.driftResponse {
		rec.Anomalies = append(rec.Anomalies, audit.AnomalySpecDriftResponse)
	}
	switch {
	case c.denyStage != "":
		rec.Decision = "deny"
	case c.upstreamErr != "":
		rec.Decision, rec.Reason = "error", "upstream_"+c.upstreamErr
	}
	if err := a.w.WriteRequest(&rec); err != nil {
		if a.durable {
			return false
		}
		// Buffered mode serves on; the writer counts the failure and the
		// audit health metric drops, which is what alerting watches.
	}
	return true
}

// commitBeforeHeaders is durable mode's commit point (see auditHook).
func (s *statusWriter) commitBeforeHeaders(code int) bool {
	c := s.call
	n := int64(-1)
	if cl := s.ResponseWriter.Header().Get("Content-Length"); cl != "" {
		n = parseContentLength(cl)
	}
	if n < 0 {
		n = 0
	}
	if s.g.writeAudit(c, s, code, n) {
		return true
	}
	// Fail closed: the response the upstream (or a stage) produced is
	// replaced by a 503 and everything written after is dropped.
	h := s.ResponseWriter.Header()
	for k := range h {
		if k != "X-Request-Id" {
			delete(h, k)
		}
	}
	c.denyStage, c.denyReason = "audit", "unavailable"
	s.failed, s.wrote, s.status = true, true, http.StatusServiceUnavailable
	WriteProblem(s.ResponseWriter, ProbUnavailable, "The request could not be recorded and was not served.", c.requestID)
	return false
}

func parseContentLength(s string) int64 {
	var n int64
	for i := 0; i < len(s); i++ {
		d := s[i]
		if d < '0' || d > '9' || n > 1<<50 {
			return -1
		}
		n = n*10 + int64(d-'0')
	}
	return n
}

// auditAtEnd writes the record if the commit point did not: every record
// in buffered mode, and in durable mode a handler that wrote nothing.
func (g *Gateway) auditAtEnd(c *call, sw *statusWriter, status int) {
	if g.audit == nil || c.audited {
		return
	}
	if !g.writeAudit(c, sw, status, sw.bytes) && !sw.wrote {
		c.denyStage, c.denyReason = "audit", "unavailable"
		sw.failed, sw.wrote, sw.status = true, true, http.StatusServiceUnavailable
		WriteProblem(sw.ResponseWriter, ProbUnavailable, "The request could not be recorded and was not served.", c.requestID)
	}
}
