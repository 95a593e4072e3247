package waf

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/experimental"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types"
)

// WAF is one compiled rule set. It is safe for concurrent use; build it once
// per distinct Config at config load (see Cache), never per request.
type WAF struct {
	cfg Config
	waf coraza.WAF // nil when Mode is off

	closeOnce sync.Once
	closeErr  error

	verdicts verdictCache // recent verdicts of bodyless requests
}

// Verdict is the WAF's answer for one request. Verdicts of repeated requests
// are shared (see verdictCache): treat RuleIDs as read-only. A refusal is a value, not an
// error: the pipeline turns Block into a generic 403 problem and puts RuleIDs
// and Score in the audit record.
type Verdict struct {
	// Block is true when the request must be refused (block mode only).
	Block bool
	// Status is the HTTP status the refusing rule asked for: 403 for an
	// anomaly-score block, 400 for a body its parser rejected.
	// 0 when Block is false. The response should not reveal which.
	Status int
	// RuleIDs are the CRS detection rules that matched, ascending, without
	// the CRS bookkeeping rules (setup, paranoia skips, score evaluation).
	RuleIDs []int
	// Score is the inbound anomaly score at the configured paranoia level.
	Score int
	// Matched is true when any detection rule matched, blocking or not.
	Matched bool
	// Err is set when Coraza failed to process the request (an
	// infrastructure failure, not a detection). In block mode such a request
	// is refused (fail closed, Status 500); in detect mode it passes.
	Err error
	// AllRuleIDs is every rule that matched, bookkeeping rules such as the
	// blocking evaluation 949110 included, ascending. Filled only under
	// RegressionProfile, for the CRS regression suite's assertions.
	AllRuleIDs []int
}

// New compiles the Core Rule Set for cfg: 75-90 ms and 12 MiB for the first
// instance in a process, about 15 ms and 1.7 MiB for each further one (see
// the package doc). Call it at config load, never per request, and share
// instances with equal configs through Cache. ModeOff is free.
func New(cfg Config) (*WAF, error) {
	n, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	return newNormalized(n)
}

func newNormalized(n Config) (*WAF, error) {
	w := &WAF{cfg: n}
	if n.Mode == ModeOff {
		return w, nil
	}
	cw, err := coraza.NewWAF(coraza.NewWAFConfig().
		WithRootFS(coreruleset.FS).
		WithDirectives(n.directives()))
	if err != nil {
		return nil, fmt.Errorf("build waf (mode %s, paranoia %d): %w", n.Mode, n.Paranoia, err)
	}
	w.waf = cw
	return w, nil
}

// Config returns the normalized config the instance was built from.
func (w *WAF) Config() Config { return w.cfg }

// Close releases the instance's share of Coraza's process-wide cache of
// compiled expressions. It is safe while requests are still being inspected
// (their rules keep the expressions they use) and safe to call twice; call it
// when a reload drops the instance, or the cache only ever grows.
func (w *WAF) Close() error {
	if w == nil || w.waf == nil {
		return nil
	}
	w.closeOnce.Do(func() {
		if c, ok := w.waf.(experimental.WAFCloser); ok {
			w.closeErr = c.Close()
		}
	})
	return w.closeErr
}

// Inspect runs the request phases (1: URI and headers, 2: query arguments and
// body) over r. body is the request body the caller has already read and
// bounded (the caller re-installs it for the upstream); its first
// Config.BodyLimit bytes are inspected whatever its Content-Type (JSON, XML
// and forms parsed into arguments, anything else as URL-encoded text). clientIP is the address the listener
// trusted (after proxy headers), not r.RemoteAddr.
//
// Response phases never run. Inspect does not modify r.
func (w *WAF) Inspect(r *http.Request, clientIP string, body []byte) Verdict {
	if w == nil || w.waf == nil {
		return Verdict{}
	}
	uri := r.RequestURI // as the client sent it, before any rewriting or re-encoding
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	proto := r.Proto
	if proto == "" {
		proto = "HTTP/1.1"
	}
	var key [32]byte
	cacheable := len(body) == 0 && !w.cfg.regression
	if cacheable {
		key = requestKey(r, uri, proto, clientIP)
		if v, ok := w.verdicts.get(key); ok {
			return v
		}
	}
	v := w.inspect(r, uri, proto, clientIP, body)
	if cacheable {
		w.verdicts.put(key, v)
	}
	return v
}

func (w *WAF) inspect(r *http.Request, uri, proto, clientIP string, body []byte) Verdict {
	tx := w.waf.NewTransaction()
	defer func() {
		tx.ProcessLogging()
		// Close removes the temporary files Coraza writes for multipart file
		// parts; a failure to remove one is nothing the request can act on.
		_ = tx.Close()
	}()

	tx.ProcessConnection(clientIP, 0, "", 0)
	tx.ProcessURI(uri, r.Method, proto)
	for k, vs := range r.Header {
		for _, v := range vs {
			tx.AddRequestHeader(k, v)
		}
	}
	// net/http moves Host and Transfer-Encoding out of the header map; CRS
	// has rules on both (920280 missing Host, 920171 request smuggling).
	if r.Host != "" {
		tx.AddRequestHeader("Host", r.Host)
		tx.SetServerName(r.Host)
	}
	for _, te := range r.TransferEncoding {
		tx.AddRequestHeader("Transfer-Encoding", te)
	}

	if it := tx.ProcessRequestHeaders(); it != nil {
		return w.verdict(tx, it, nil)
	}
	// Every body is inspected, whatever its Content-Type says: JSON, XML
	// and forms are parsed into arguments, anything else (no Content-Type
	// included) is read as URL-encoded text, as CRS rule 901340 forces.
	// Skipping "uninteresting" types would let an attacker omit or mislabel
	// the type of a body the backend parses anyway.
	if len(body) > 0 {
		it, _, err := tx.WriteRequestBody(body)
		if err != nil || it != nil {
			return w.verdict(tx, it, err)
		}
	}
	it, err := tx.ProcessRequestBody()
	return w.verdict(tx, it, err)
}

func (w *WAF) verdict(tx types.Transaction, it *types.Interruption, err error) Verdict {
	var v Verdict
	for _, mr := range tx.MatchedRules() {
		md := mr.Rule()
		id := md.ID()
		if w.cfg.regression && id != 0 {
			v.AllRuleIDs = append(v.AllRuleIDs, id)
		}
		if id == 0 || md.Severity() == types.RuleSeverityUnset || isBookkeepingRule(id) {
			continue
		}
		v.RuleIDs = append(v.RuleIDs, id)
	}
	slices.Sort(v.AllRuleIDs)
	v.AllRuleIDs = slices.Compact(v.AllRuleIDs)
	if len(v.RuleIDs) > 1 {
		slices.Sort(v.RuleIDs)
		v.RuleIDs = slices.Compact(v.RuleIDs)
	}
	v.Score = w.anomalyScore(tx)
	v.Matched = len(v.RuleIDs) > 0 || v.Score > 0
	if it == nil {
		it = tx.Interruption()
	}
	if it != nil && w.cfg.Mode == ModeBlock {
		v.Block = true
		v.Status = it.Status
		if v.Status == 0 {
			v.Status = http.StatusForbidden
		}
	}
	if err != nil {
		v.Err = fmt.Errorf("waf inspect: %w", err)
		if w.cfg.Mode == ModeBlock && !v.Block {
			v.Block, v.Status = true, http.StatusInternalServerError
		}
	}
	return v
}

// anomalyScore adds up the per-paranoia-level scores CRS keeps in TX, the
// same sum REQUEST-949 compares with the threshold. Reading the per-level
// counters rather than tx.blocking_inbound_anomaly_score gives the right
// answer even when the transaction was interrupted before 949 added them up.
func (w *WAF) anomalyScore(tx types.Transaction) int {
	st, ok := tx.(plugintypes.TransactionState)
	if !ok {
		return 0
	}
	txv := st.Variables().TX()
	score := 0
	for pl := 1; pl <= w.cfg.Paranoia; pl++ {
		for _, s := range txv.Get(scoreVars[pl]) {
			if n, err := strconv.Atoi(s); err == nil {
				score += n
			}
		}
	}
	return score
}

var scoreVars = [...]string{1: "inbound_anomaly_score_pl1", 2: "inbound_anomaly_score_pl2", 3: "inbound_anomaly_score_pl3", 4: "inbound_anomaly_score_pl4"}

var _ io.Closer = (*WAF)(nil)
