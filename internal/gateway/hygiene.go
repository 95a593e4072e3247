package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/registry"
	"github.com/gatehouse/gatehouse/internal/validate"
)

// Problems of the validate stage and of response filtering.
var (
	ProbValidation       = Problem{Type: ProblemBase + "validation", Title: "Request does not match the API's schema", Status: http.StatusBadRequest}
	ProbUnsupportedMedia = Problem{Type: ProblemBase + "unsupported-media-type", Title: "Unsupported content type", Status: http.StatusUnsupportedMediaType}
	ProbUpstreamError    = Problem{Type: ProblemBase + "upstream-error", Title: "Upstream error", Status: http.StatusBadGateway}
	ProbUnfilterable     = Problem{Type: ProblemBase + "response-unfilterable", Title: "Response could not be checked", Status: http.StatusBadGateway}
)

// LogUpstreamBody turns an upstream error body into the string that is
// logged. It is a hook so the redaction engine can be put in front of it;
// by default the (already truncated) body is logged as text.
var LogUpstreamBody = func(body []byte) string { return string(body) }

// maxLoggedErrorBody bounds what of an upstream 5xx body reaches the log.
const maxLoggedErrorBody = 2048

// validateRequest is stage 8. It returns false when it answered.
func (g *Gateway) validateRequest(w http.ResponseWriter, r *http.Request, c *call, op *Operation) bool {
	v := op.validator
	res := v.Check(r, &c.params)
	if res.Status == 0 {
		return true
	}
	if v.Mode() == validate.Report {
		c.drift = true
		g.log.Warn("request violates spec (report mode)", "request_id", c.requestID, "api", c.api, "operation", c.operation,
			"stage", "validate", "reason", res.Reason, "violations", len(res.Violations), "first", firstPointer(res.Violations))
		return true
	}
	switch res.Status {
	case http.StatusRequestEntityTooLarge:
		g.deny(w, c, ProbBodyTooLarge, "validate", res.Reason, "The request body exceeds the size this operation accepts.")
	case http.StatusUnsupportedMediaType:
		g.deny(w, c, ProbUnsupportedMedia, "validate", res.Reason, "This operation does not accept this content type.")
	default:
		p := ProbValidation
		p.Errors = res.Violations
		g.deny(w, c, p, "validate", res.Reason, "See errors for each violation.")
	}
	return false
}

func firstPointer(vs []validate.Violation) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0].Pointer
}

// responsePlan is what one operation does to responses on their way out.
type responsePlan struct {
	api, op      string
	filter       *validate.ResponseFilter // nil: bodies pass untouched
	strip        headerMatcher
	maxBytes     int64
	oversizeFail bool
	log          *slog.Logger
}

// headerMatcher matches response header names: exact names and Prefix-*.
type headerMatcher struct {
	exact    []string // canonical
	prefixes []string // canonical prefixes
}

// alwaysStripped are headers that tell an attacker what runs behind.
var alwaysStripped = []string{"Server", "X-Powered-By", "X-Aspnet-Version", "X-Aspnetmvc-Version", "X-Runtime", "X-Generator"}

func newHeaderMatcher(lists ...[]string) headerMatcher {
	m := headerMatcher{exact: append([]string(nil), alwaysStripped...)}
	for _, l := range lists {
		for _, h := range l {
			if p, ok := strings.CutSuffix(h, "*"); ok {
				m.prefixes = append(m.prefixes, http.CanonicalHeaderKey(p))
			} else {
				m.exact = append(m.exact, http.CanonicalHeaderKey(h))
			}
		}
	}
	return m
}

func (m *headerMatcher) scrub(h http.Header) {
	for _, k := range m.exact {
		delete(h, k)
	}
	if len(m.prefixes) == 0 {
		return
	}
	for k := range h {
		for _, p := range m.prefixes {
			if len(k) >= len(p) && strings.EqualFold(k[:len(p)], p) {
				delete(h, k)
				break
			}
		}
	}
}

var (
	nosniff      = []string{"nosniff"}
	noStore      = []string{"no-store"}
	identityEnc  = []string{"identity"}
	problemCT    = []string{"application/problem+json"}
	problemCSP   = []string{"default-src 'none'; frame-ancestors 'none'"}
	responseBufs = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}
)

// newResponsePlan compiles an operation's response handling.
func newResponsePlan(cfg *config.Config, ac config.API, doc *validate.Document, opID, method, path string, log *slog.Logger) *responsePlan {
	p := &responsePlan{
		api: ac.Name, op: opID, log: log,
		strip:        newHeaderMatcher(cfg.Response.StripHeaders, ac.Response.StripHeaders),
		maxBytes:     ac.Response.MaxBytes,
		oversizeFail: ac.Response.Oversize == config.OversizeFail,
	}
	deny := validate.NewDenyList(cfg.Response.DenyFields, ac.Response.DenyFields)
	p.filter = validate.NewResponseFilter(doc, method, path, validate.ParseMode(ac.Response.FilterFor(opID)), deny)
	if p.maxBytes <= 0 {
		p.maxBytes = config.DefaultResponseMaxBytes
	}
	return p
}

// operationProxy is the API's ReverseProxy with this operation's response
// handling: a shallow copy, so the transport and pools stay shared.
func (up *upstream) operationProxy(p *responsePlan) *httputil.ReverseProxy {
	rp := *up.proxy
	if p.filter != nil {
		// Ask for an identity-encoded body so filtering needs no
		// decompression; a backend that compresses anyway is handled in
		// modify (gzip) or treated as unfilterable.
		rp.Rewrite = func(pr *httputil.ProxyRequest) {
			up.rewrite(pr)
			h := pr.Out.Header
			h["Accept-Encoding"] = identityEnc
			// A byte range of a JSON document cannot be filtered, and
			// passing it would let Range read around the filter.
			delete(h, "Range")
			delete(h, "If-Range")
		}
	}
	rp.ModifyResponse = p.modify
	return &rp
}

// modify runs on every upstream response: header scrubbing, security
// headers, 5xx replacement, body filtering.
func (p *responsePlan) modify(resp *http.Response) error {
	h := resp.Header
	p.strip.scrub(h)
	h["X-Content-Type-Options"] = nosniff
	var reqID string
	authenticated := false
	if resp.Request != nil {
		rh := resp.Request.Header
		if v := rh["X-Request-Id"]; len(v) > 0 {
			reqID = v[0]
		}
		// The pipeline sets this header only for an authenticated caller
		// (and strips client-sent copies), so it marks a principal.
		_, authenticated = rh["X-Gatehouse-Consumer"]
	}
	if authenticated {
		// Responses to authenticated calls are personal: no shared cache
		// may keep them.
		h["Cache-Control"] = noStore
	}
	if resp.StatusCode >= 500 {
		p.replaceServerError(resp, reqID)
		return nil
	}
	if p.filter == nil || resp.Body == nil || resp.Body == http.NoBody || resp.StatusCode == http.StatusNoContent ||
		resp.StatusCode == http.StatusNotModified || (resp.Request != nil && resp.Request.Method == http.MethodHead) {
		return nil
	}
	ct := h.Get("Content-Type")
	labelled := validate.IsJSON(ct)
	if !labelled && ct != "" && !strings.HasPrefix(strings.ToLower(ct), "text/plain") {
		return nil
	}
	// An unlabelled or text/plain body is filtered too if it turns out to
	// be JSON: a backend that mislabels its JSON must not slip past.
	return p.filterBody(resp, ct, labelled, reqID)
}

// replaceServerError swaps an upstream 5xx body (stack traces, SQL errors,
// internal host names) for a generic problem; the original, truncated, goes
// to the log only.
func (p *responsePlan) replaceServerError(resp *http.Response, reqID string) {
	var logged []byte
	if resp.Body != nil {
		logged, _ = io.ReadAll(io.LimitReader(resp.Body, maxLoggedErrorBody))
		_ = resp.Body.Close()
	}
	if len(logged) > 0 {
		if resp.Header.Get("Content-Encoding") != "" {
			logged = []byte("(compressed body not logged)")
		}
		p.log.Warn("upstream server error", "request_id", reqID, "api", p.api, "operation", p.op,
			"status", resp.StatusCode, "body", LogUpstreamBody(logged))
	}
	prob := ProbUpstreamError
	prob.Status = resp.StatusCode
	setProblem(resp, prob, "The upstream service failed to process the request.", reqID)
}

// setProblem replaces resp with a problem document, keeping its status
// (and Retry-After: a 503's hint is still true).
func setProblem(resp *http.Response, prob Problem, detail, reqID string) {
	prob.Detail, prob.RequestID = detail, reqID
	body, _ := json.Marshal(prob)
	h := resp.Header
	retry := h["Retry-After"]
	for k := range h {
		if k != "X-Request-Id" && k != "Cache-Control" && k != "X-Content-Type-Options" {
			delete(h, k)
		}
	}
	if retry != nil {
		h["Retry-After"] = retry
	}
	h["Content-Type"] = problemCT
	h["Content-Security-Policy"] = problemCSP
	h["X-Content-Type-Options"] = nosniff
	h["Cache-Control"] = noStore
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	resp.StatusCode = prob.Status
	resp.Status = ""
	resp.ContentLength = int64(len(body))
	resp.TransferEncoding = nil
	resp.Trailer = nil
	resp.Body = io.NopCloser(bytes.NewReader(body))
}

// pooledBody returns its buffer to the pool when ReverseProxy closes it.
type pooledBody struct {
	bytes.Reader
	buf *[]byte
}

func (b *pooledBody) Close() error {
	if b.buf != nil {
		*b.buf = (*b.buf)[:0]
		if cap(*b.buf) <= 1<<20 {
			responseBufs.Put(b.buf)
		}
		b.buf = nil
	}
	return nil
}

var errTooLarge = errors.New("response larger than the filter buffers")

// filterBody buffers a JSON body (bounded), filters it and installs the
// result with a corrected Content-Length.
func (p *responsePlan) filterBody(resp *http.Response, ct string, labelled bool, reqID string) error {
	if !labelled {
		// Looked up as JSON in the spec; if it is not JSON it passes, and
		// so does one too large to check.
		ct = "application/json"
		if resp.ContentLength > p.maxBytes {
			return nil
		}
	}
	if resp.ContentLength > p.maxBytes {
		p.oversize(resp, nil, reqID)
		return nil
	}
	raw := responseBufs.Get().(*[]byte)
	buf := bytes.NewBuffer((*raw)[:0])
	_, err := buf.ReadFrom(io.LimitReader(resp.Body, p.maxBytes+1))
	data := buf.Bytes()
	*raw = data[:0]
	if err != nil {
		// The upstream failed mid-body: never pass a truncated document.
		// ReverseProxy hands the error to upstreamError, which counts it.
		responseBufs.Put(raw)
		return err
	}
	if int64(len(data)) > p.maxBytes {
		if !labelled {
			p.passPrefix(resp, data)
			return nil
		}
		p.oversize(resp, data, reqID)
		return nil
	}
	_ = resp.Body.Close()
	body := data
	enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	decoded := false
	switch enc {
	case "", "identity":
	case "gzip", "x-gzip":
		body, err = gunzipBounded(data, p.maxBytes)
		if err != nil {
			if !labelled || (errors.Is(err, errTooLarge) && !p.oversizeFail) {
				// Not JSON-labelled (so likely not JSON), or too large
				// with oversize: pass. The buffer stays with the body.
				if labelled {
					p.log.Warn("response too large to filter, passed unfiltered", "request_id", reqID, "api", p.api, "operation", p.op)
				}
				p.install(resp, raw, data, false)
				return nil
			}
			responseBufs.Put(raw)
			setProblem(resp, ProbUnfilterable, "The upstream response could not be checked.", reqID)
			return nil
		}
		decoded = true
	default:
		// An encoding the gateway cannot read (br, zstd, deflate) cannot be
		// filtered: the oversize policy decides, as for too large a body.
		if labelled && p.oversizeFail {
			responseBufs.Put(raw)
			p.log.Warn("response in an encoding the filter cannot read, refused", "request_id", reqID, "api", p.api, "operation", p.op)
			setProblem(resp, ProbUnfilterable, "The upstream response could not be checked.", reqID)
			return nil
		}
		if labelled {
			p.log.Warn("response in an encoding the filter cannot read, passed unfiltered", "request_id", reqID, "api", p.api, "operation", p.op)
		}
		p.install(resp, raw, data, false)
		return nil
	}
	out := responseBufs.Get().(*[]byte)
	// Dropping what the spec does not document is documented mode's
	// normal work: the pointers are logged at debug level only (report
	// mode logs them always, that being its purpose).
	debug := p.log.Enabled(context.Background(), slog.LevelDebug)
	filtered, o, ferr := p.filter.Filter((*out)[:0], body, resp.StatusCode, ct, debug)
	*out = filtered[:0]
	if ferr != nil {
		responseBufs.Put(out)
		if !labelled {
			p.install(resp, raw, data, false) // not JSON after all
			return nil
		}
		if p.filter.Mode() != validate.Enforce {
			p.log.Warn("response is not filterable JSON (passed)", "request_id", reqID, "api", p.api, "operation", p.op)
			p.install(resp, raw, data, false)
			return nil
		}
		responseBufs.Put(raw)
		p.log.Warn("response is not filterable JSON (refused)", "request_id", reqID, "api", p.api, "operation", p.op)
		setProblem(resp, ProbUnfilterable, "The upstream response could not be checked.", reqID)
		return nil
	}
	if o.Undocumented > 0 {
		if p.filter.Mode() == validate.Enforce {
			if debug {
				p.log.Debug("response fields not in the spec dropped", "request_id", reqID, "api", p.api, "operation", p.op,
					"status", resp.StatusCode, "count", o.Undocumented, "pointers", o.Dropped)
			}
		} else {
			p.log.Warn("response fields not in the spec (report mode, kept)", "request_id", reqID, "api", p.api, "operation", p.op,
				"status", resp.StatusCode, "count", o.Undocumented, "pointers", o.Dropped)
			if c, _ := resp.Request.Context().Value(callKey{}).(*call); c != nil {
				c.driftResponse = true
			}
		}
	}
	if !o.Changed {
		responseBufs.Put(out)
		if decoded {
			resp.Header.Del("Content-Encoding")
			p.install(resp, raw, append(data[:0:0], body...), true)
			return nil
		}
		p.install(resp, raw, data, false)
		return nil
	}
	responseBufs.Put(raw)
	resp.Header.Del("Content-Encoding")
	p.install(resp, out, filtered, true)
	return nil
}

// install sets body as the response body, its buffer returned to the pool
// when the proxy closes it.
func (p *responsePlan) install(resp *http.Response, buf *[]byte, body []byte, changed bool) {
	pb := &pooledBody{buf: buf}
	pb.Reset(body)
	resp.Body = pb
	resp.ContentLength = int64(len(body))
	resp.TransferEncoding = nil
	resp.Header["Content-Length"] = []string{strconv.Itoa(len(body))}
	if changed {
		// Validators of the upstream's representation no longer hold.
		delete(resp.Header, "Etag")
		delete(resp.Header, "Content-Md5")
		delete(resp.Header, "Digest")
	}
}

// oversize applies the API's policy to a JSON response the filter cannot
// buffer: fail closed with 502, or pass it on untouched (prefix + rest).
func (p *responsePlan) oversize(resp *http.Response, prefix []byte, reqID string) {
	if p.oversizeFail {
		_ = resp.Body.Close()
		p.log.Warn("response too large to filter, refused", "request_id", reqID, "api", p.api, "operation", p.op)
		setProblem(resp, ProbUnfilterable, "The upstream response was too large to check.", reqID)
		return
	}
	p.log.Warn("response too large to filter, passed unfiltered", "request_id", reqID, "api", p.api, "operation", p.op)
	p.passPrefix(resp, prefix)
}

// passPrefix puts back what was buffered ahead of the unread rest.
func (p *responsePlan) passPrefix(resp *http.Response, prefix []byte) {
	if prefix != nil {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(append([]byte(nil), prefix...)), resp.Body), resp.Body}
	}
}

// gunzipBounded decompresses at most max bytes: a small gzip body must not
// expand into gigabytes in the gateway's memory.
func gunzipBounded(data []byte, max int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(zr, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > max {
		return nil, errTooLarge
	}
	return out, nil
}

// loadValidationDoc loads the API's spec with kin-openapi when validation
// or filtering needs schemas. A spec kin-openapi refuses is a config error
// at the spec's file (and line when known).
func loadValidationDoc(rep *config.Reporter, ac config.API, ptr string, spec *registry.Spec) (*validate.Document, bool) {
	// A mistyped operationId in an override would silently leave the
	// operation on the API's defaults.
	known := map[string]bool{}
	for _, o := range spec.Operations {
		known[o.ID] = true
	}
	bad := false
	for id := range ac.Validate.Operations {
		if !known[id] {
			rep.Errorf(ptr+"/validate/operations/"+id, "no operation %q in the spec %s", id, spec.File)
			bad = true
		}
	}
	for id := range ac.Response.Operations {
		if !known[id] {
			rep.Errorf(ptr+"/response/operations/"+id, "no operation %q in the spec %s", id, spec.File)
			bad = true
		}
	}
	if bad {
		return nil, false
	}
	if !needsSchemas(ac) {
		return nil, true
	}
	doc, err := validate.LoadDocument(spec.File, nil)
	if err != nil {
		var se *validate.SpecError
		if errors.As(err, &se) {
			rep.AtFile(se.File, se.Line, ptr+"/spec", "%s", se.Msg)
		} else {
			rep.Errorf(ptr+"/spec", "%v", err)
		}
		return nil, false
	}
	if doc.Invalid != nil {
		se := doc.Invalid
		if validationOn(ac) {
			rep.AtFile(se.File, se.Line, ptr+"/spec", "%s", se.Msg)
			return nil, false
		}
		rep.AtFile(se.File, se.Line, ptr+"/spec", "%s (response filtering still applies; request validation would refuse this spec)", se.Msg)
		rep.Problems[len(rep.Problems)-1].Warning = true
	}
	return doc, true
}

func validationOn(ac config.API) bool {
	if ac.Validate.Mode != config.ModeOff && ac.Validate.Mode != "" {
		return true
	}
	for _, o := range ac.Validate.Operations {
		if o.Mode != "" && o.Mode != config.ModeOff {
			return true
		}
	}
	return false
}

func needsSchemas(ac config.API) bool {
	if validationOn(ac) {
		return true
	}
	if ac.Response.Filter != config.ModeOff && ac.Response.Filter != "" {
		return true
	}
	for _, o := range ac.Response.Operations {
		if o.Filter != "" && o.Filter != config.ModeOff {
			return true
		}
	}
	return false
}

// compileHygiene builds an operation's request validator and response plan.
func (g *Gateway) compileHygiene(rep *config.Reporter, cfg *config.Config, ac config.API, ptr string, doc *validate.Document, o registry.Operation, op *Operation) {
	mode, strict := ac.Validate.For(o.ID)
	if m := validate.ParseMode(mode); m != validate.Off && doc != nil {
		v, err := validate.NewRequest(doc, o.Method, o.Path, validate.RequestOptions{
			Mode: m, Strict: strict, MaxDepth: ac.Validate.MaxDepth, MaxBodyBytes: ac.Validate.MaxBodyBytes,
		})
		if err != nil {
			rep.AtFile(doc.File, o.Line, ptr+"/spec", "%v", err)
		}
		op.validator = v
	}
	var d *validate.Document
	if validate.ParseMode(ac.Response.FilterFor(o.ID)) != validate.Off {
		d = doc
	}
	plan := newResponsePlan(cfg, ac, d, o.ID, o.Method, o.Path, g.log)
	op.proxy = op.upstream.operationProxy(plan)
	op.reportsResponses = plan.filter != nil && plan.filter.Mode() == validate.Report
}
