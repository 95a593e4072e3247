package gateway

// Stage 3 of the pipeline, the WAF proper: the OWASP Core Rule Set run by
// Coraza (internal/waf) over each request of an API or operation that has
// a waf policy. Instances are built once per distinct policy at compile
// time through the Gateway's waf.Cache, so a reload reuses them.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/waf"
)

// WAFTesting switches on test-only behaviour; the zero value is production.
type WAFTesting struct {
	// CRSRegression builds every WAF with waf.RegressionProfile, the CRS
	// settings the CRS's own regression suite expects.
	CRSRegression bool
	// VerdictHeader reports the matched rule IDs and the score in the
	// response headers X-Gatehouse-Waf-Rules and X-Gatehouse-Waf-Score. It
	// reveals the rule set's workings to the caller: tests only.
	VerdictHeader bool
}

// SetWAFTesting sets test-only behaviour. Call it before Compile.
func (g *Gateway) SetWAFTesting(t WAFTesting) { g.wafTesting = t }

// wafPolicy turns an API's waf block and an operation's override into a
// waf.Config. Fields the override sets replace the API's; its exclusions add
// to the API's.
func wafPolicy(w *config.WAF, opID string) waf.Config {
	if w == nil {
		return waf.Config{Mode: waf.ModeOff}
	}
	p := w.WAFPolicy
	if o, ok := w.Operations[opID]; ok {
		if o.Mode != "" {
			p.Mode = o.Mode
		}
		if o.Paranoia != 0 {
			p.Paranoia = o.Paranoia
		}
		if o.InboundThreshold != 0 {
			p.InboundThreshold = o.InboundThreshold
		}
		if o.BodyLimit != 0 {
			p.BodyLimit = o.BodyLimit
		}
		p.ExcludeRules = append(append([]int(nil), p.ExcludeRules...), o.ExcludeRules...)
		p.ExcludeTags = append(append([]string(nil), p.ExcludeTags...), o.ExcludeTags...)
	}
	if p.Mode == "" {
		p.Mode = string(waf.ModeBlock) // a waf block without a mode means it is on
	}
	return waf.Config{
		Mode: waf.Mode(p.Mode), Paranoia: p.Paranoia, InboundThreshold: p.InboundThreshold,
		ExcludeRuleIDs: p.ExcludeRules, ExcludeTags: p.ExcludeTags, BodyLimit: p.BodyLimit,
	}
}

// wafFields maps waf.Config field names to the config file's keys.
var wafFields = map[string]string{"exclude_rule_ids": "exclude_rules"}

// buildWAFs compiles the WAF of every operation of one API (operations with
// equal policies share an instance) and reports bad policies at the line of
// the offending key. It returns nil for operations whose WAF is off.
func (g *Gateway) buildWAFs(rt *Runtime, rep *config.Reporter, ac config.API, ptr string, opIDs []string) map[string]*waf.WAF {
	if ac.WAF == nil {
		return nil
	}
	known := make(map[string]bool, len(opIDs))
	for _, id := range opIDs {
		known[id] = true
	}
	for id := range ac.WAF.Operations {
		if !known[id] {
			rep.Errorf(ptr+"/waf/operations/"+escapeJSONPointer(id), "no operation %q in the API's spec", id)
		}
	}
	out := make(map[string]*waf.WAF, len(opIDs))
	reported := map[string]bool{}
	for _, id := range opIDs {
		cfg := wafPolicy(ac.WAF, id)
		if g.wafTesting.CRSRegression {
			cfg = waf.RegressionProfile(cfg)
		}
		w, err := g.wafs.Get(cfg)
		if err != nil {
			// Point at the override when the operation has one, else at
			// the API's policy; each problem once.
			base := ptr + "/waf"
			if _, ok := ac.WAF.Operations[id]; ok {
				base += "/operations/" + escapeJSONPointer(id)
			}
			fes := waf.FieldErrors(err)
			if len(fes) == 0 {
				rep.Errorf(base, "%v", err)
				continue
			}
			for _, fe := range fes {
				at := wafPointer(ac.WAF, id, base, fe)
				msg := fmt.Sprintf("%s: %s", strings.TrimPrefix(at, ptr+"/waf/"), fe.Msg)
				if reported[at+msg] {
					continue
				}
				reported[at+msg] = true
				rep.Errorf(at, "%s", fe.Msg)
			}
			continue
		}
		rt.wafConfigs = append(rt.wafConfigs, cfg)
		if w.Config().Mode != waf.ModeOff {
			out[id] = w
		}
	}
	return out
}

// wafPointer finds the config key a field error is about: an exclusion's
// list entry in the API's policy or the operation's override.
func wafPointer(w *config.WAF, opID, base string, fe *waf.FieldError) string {
	field := fe.Field
	if f, ok := wafFields[field]; ok {
		field = f
	}
	apiBase := base
	if i := strings.Index(base, "/operations/"); i >= 0 {
		apiBase = base[:i]
	}
	if fe.Index < 0 {
		return base + "/" + field
	}
	// The merged list is the API's entries followed by the operation's.
	var nAPI int
	switch field {
	case "exclude_rules":
		nAPI = len(w.ExcludeRules)
	case "exclude_tags":
		nAPI = len(w.ExcludeTags)
	}
	if fe.Index < nAPI {
		return apiBase + "/" + field + "/" + strconv.Itoa(fe.Index)
	}
	return base + "/" + field + "/" + strconv.Itoa(fe.Index-nAPI)
}

func escapeJSONPointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// inspectWAF runs stage 3 for one request. It returns false when the
// request was refused (the response is written).
func (g *Gateway) inspectWAF(sw *statusWriter, r *http.Request, c *call, w *waf.WAF, maxBody int64) bool {
	cfg := w.Config()
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		limit := cfg.BodyLimit
		// Read one byte more than the limit to tell "exactly the limit"
		// from "longer"; never more than the listener accepts.
		src := http.MaxBytesReader(sw, r.Body, maxBody)
		buf, err := io.ReadAll(io.LimitReader(src, limit+1))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				g.deny(sw, c, ProbBodyTooLarge, "waf", "body_too_large", "The request body exceeds the size this API accepts.")
			} else {
				g.deny(sw, c, ProbBadRequest, "waf", "body_unreadable", "The request body could not be read.")
			}
			return false
		}
		if int64(len(buf)) > limit {
			if cfg.Mode == waf.ModeBlock {
				// Inspecting only a prefix would let an attacker pad the
				// payload past the limit; in block mode a body the WAF
				// cannot see whole is refused.
				g.deny(sw, c, ProbBodyTooLarge, "waf", "body_over_inspection_limit", "The request body exceeds the size this API inspects.")
				return false
			}
			// Detect mode: inspect the prefix, forward everything.
			body = buf[:limit]
			r.Body = readCloser{io.MultiReader(bytes.NewReader(buf), src), r.Body}
		} else {
			body = buf
			// The upstream gets exactly the bytes inspected.
			r.Body = readCloser{bytes.NewReader(buf), r.Body}
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
		}
	}
	// X-Real-Ip and a generated X-Request-Id are the gateway's own values,
	// not client input (the client's copies were stripped in stage 1): the
	// WAF does not inspect them, which also keeps a repeated request's
	// verdict cacheable (waf.verdictCache). A client-chosen request ID is
	// inspected unless it is plain hex, which can carry no payload.
	hdr := r.Header
	realIP, rid := hdr["X-Real-Ip"], hdr["X-Request-Id"]
	hideRID := len(rid) == 1 && isHex(rid[0])
	delete(hdr, "X-Real-Ip")
	if hideRID {
		delete(hdr, "X-Request-Id")
	}
	v := w.Inspect(r, c.clientIP, body)
	if realIP != nil {
		hdr["X-Real-Ip"] = realIP
	}
	if hideRID {
		hdr["X-Request-Id"] = rid
	}
	c.wafRules, c.wafScore = v.RuleIDs, v.Score
	if g.wafTesting.VerdictHeader {
		all := v.RuleIDs
		if v.AllRuleIDs != nil {
			all = v.AllRuleIDs
		}
		ids := make([]string, len(all))
		for i, id := range all {
			ids[i] = strconv.Itoa(id)
		}
		sw.Header().Set("X-Gatehouse-Waf-Rules", strings.Join(ids, ","))
		sw.Header().Set("X-Gatehouse-Waf-Score", strconv.Itoa(v.Score))
	}
	api := c.api
	switch {
	case v.Block:
		c.wafAction = "block"
		g.countWAF(api, c.wafAction, v.RuleIDs)
		reason := "waf_blocked"
		if v.Err != nil {
			// Coraza failed: fail closed, and say so in the log.
			reason = "waf_error"
			g.log.Warn("waf inspection failed", "request_id", c.requestID, "api", api, "error", v.Err.Error())
		}
		// The generic 403 every other refusal uses: no rule, score or
		// category, so a prober learns nothing about what tripped which rule.
		g.deny(sw, c, ProbForbidden, "waf", reason, "The request was refused by the gateway's security policy.")
		return false
	case v.Matched:
		c.wafAction = "detect"
		g.countWAF(api, c.wafAction, v.RuleIDs)
	}
	return true
}

func (g *Gateway) countWAF(api, action string, rules []int) {
	g.metrics.WAFDecisions.WithLabelValues(api, action).Inc()
	for _, id := range rules {
		// Rule IDs come from the embedded CRS: a bounded label set.
		g.metrics.WAFRuleMatches.WithLabelValues(strconv.Itoa(id)).Inc()
	}
}

// readCloser reads from the re-installed body and closes the original.
type readCloser struct {
	io.Reader
	orig io.Closer
}

func (rc readCloser) Close() error { return rc.orig.Close() }

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return s != ""
}
