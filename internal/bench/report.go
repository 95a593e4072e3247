package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// Targets from the performance issue: Gatehouse over plain HTTP keeps at
// least 90% of a bare reverse proxy's throughput and at most 1.2× its p99.
// From the identity issue: with API-key or JWT (RS256) authentication and a
// scope check it keeps at least 85% of the bare proxy's throughput.
const (
	TargetThroughputRatio     = 0.90
	TargetP99Ratio            = 1.2
	TargetAuthThroughputRatio = 0.85
	// From the traffic-control issue: a local rate limit keeps 90%, a
	// Redis one (a round trip per request) 60%.
	TargetRedisLimitThroughputRatio = 0.60
)

// comparisons are the Gatehouse targets in report order, each compared
// with the bare target of its protocol, and how the report labels them.
var comparisons = []struct{ target, label string }{
	{"gatehouse-http", "HTTP"},
	{"gatehouse-apikey", "API key"},
	{"gatehouse-jwt", "JWT"},
	{"gatehouse-tls", "TLS"},
	{"gatehouse-waf-p1", "WAF p1 vs bare"},
	{"gatehouse-waf-p1-vs-naive", "WAF p1 vs Coraza WrapHandler"},
	{"gatehouse-ratelimit-local", "rate limit (local)"},
	{"gatehouse-ratelimit-redis", "rate limit (Redis)"},
	{"gatehouse-validate", "validate"},
	{"gatehouse-filter", "filter"},
	{"audit-buffered", "audit buffered"},
	{"audit-durable", "audit durable"},
}

// Report is the outcome of a Run; it marshals to the -json output.
type Report struct {
	Settings Settings        `json:"settings"`
	Runs     []RunResult     `json:"runs"`
	Targets  []TargetSummary `json:"targets"`
	Ratios   []Ratio         `json:"ratios"`
	Checks   []Check         `json:"checks"`
	// AuthProbes are the checks, made before any measured window, that
	// each auth target answers 200 with its credential and 401 without.
	AuthProbes []AuthProbe `json:"auth_probes,omitempty"`
	// Failures counts transport errors and non-200 responses over every
	// measured run. Any failure makes the measurement worthless.
	Failures int64 `json:"failures"`
	Valid    bool  `json:"valid"`
}

// Settings describe how the numbers were obtained.
type Settings struct {
	LoadGen         string  `json:"loadgen"`
	Connections     int     `json:"connections"`
	Threads         int     `json:"threads"`
	Rounds          int     `json:"rounds"`
	DurationSeconds float64 `json:"duration_seconds"`
	WarmupSeconds   float64 `json:"warmup_seconds"`
	NumCPU          int     `json:"num_cpu"`
	GoVersion       string  `json:"go_version"`
	Path            string  `json:"path"`
	BodyBytes       int     `json:"body_bytes"`
	// Auth is set when the API-key and JWT targets ran.
	Auth bool `json:"auth"`
}

// AuthProbe is what an auth target answered before the measurement.
type AuthProbe struct {
	Target        string `json:"target"`
	Header        string `json:"header"` // the credential's header name
	WithStatus    int    `json:"with_credential_status"`
	WithoutStatus int    `json:"without_credential_status"`
	Challenge     string `json:"challenge"` // WWW-Authenticate of the refusal
	// OtherScopeStatus is the answer (403) to a credential of the same
	// kind that lacks the required scope.
	OtherScopeStatus int `json:"other_scope_status"`
}

// RunResult is one measured window against one target.
type RunResult struct {
	Round    int    `json:"round"`
	Target   string `json:"target"`
	Proxy    string `json:"proxy"`    // bare or gatehouse
	Protocol string `json:"protocol"` // http or tls
	// Pair is the Gatehouse target whose comparison the window belongs
	// to: a bare window is paired with the Gatehouse window beside it.
	Pair     string  `json:"pair,omitempty"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	Non200   int64   `json:"non_200"`
	RPS      float64 `json:"rps"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	// CPUusPerReq is the proxy process's CPU time (user+system) per
	// request in the window, 0 where /proc is unavailable.
	CPUusPerReq float64 `json:"cpu_us_per_req"`
	// OtherCPUPercent is the share of the machine's CPU capacity that
	// processes outside the benchmark used during the window (noise).
	OtherCPUPercent float64  `json:"other_cpu_percent"`
	Problems        []string `json:"problems,omitempty"`
}

// TargetSummary holds a target's medians across rounds and its totals.
type TargetSummary struct {
	Target      string  `json:"target"`
	Proxy       string  `json:"proxy"`
	Protocol    string  `json:"protocol"`
	RPS         float64 `json:"rps"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	CPUusPerReq float64 `json:"cpu_us_per_req"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	Non200      int64   `json:"non_200"`
	// MaxOtherCPUPercent is the noisiest of the target's windows.
	MaxOtherCPUPercent float64 `json:"max_other_cpu_percent"`
}

// Ratio is gatehouse / bare for one Gatehouse target (plain HTTP, TLS, API
// key, JWT) against the bare proxy over the same protocol. Each value is
// the median of the per-round ratios: a round's bare and Gatehouse windows
// run back to back, so pairing them cancels drift in the machine's load
// that a ratio of overall medians would pick up.
type Ratio struct {
	Target     string  `json:"target"`
	Protocol   string  `json:"protocol"`
	Throughput float64 `json:"throughput"`
	P50        float64 `json:"p50"`
	P99        float64 `json:"p99"`
	CPU        float64 `json:"cpu"`
	// The per-round ratios the medians come from, in round order.
	ThroughputRounds []float64 `json:"throughput_rounds"`
	P99Rounds        []float64 `json:"p99_rounds"`
}

// Check is one performance target and whether it was met.
type Check struct {
	Name     string  `json:"name"`
	Target   string  `json:"target"`
	Protocol string  `json:"protocol"`
	Value    float64 `json:"value"`
	Op       string  `json:"op"` // ">=" or "<="
	Limit    float64 `json:"limit"`
	Pass     bool    `json:"pass"`
	// Informational checks are not targets, only shown for comparison.
	Informational bool `json:"informational,omitempty"`
}

// Met reports whether every non-informational target passed.
func (r *Report) Met() bool {
	for _, c := range r.Checks {
		if !c.Informational && !c.Pass {
			return false
		}
	}
	return true
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratio is a/b, or 0 when b is 0 (JSON has no NaN).
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func (r *Report) summarize() {
	r.Failures = 0
	byTarget := map[string]*TargetSummary{}
	var order []string
	samples := map[string]*[4][]float64{}
	for _, run := range r.Runs {
		s, ok := byTarget[run.Target]
		if !ok {
			s = &TargetSummary{Target: run.Target, Proxy: run.Proxy, Protocol: run.Protocol}
			byTarget[run.Target] = s
			samples[run.Target] = &[4][]float64{}
			order = append(order, run.Target)
		}
		s.Requests += run.Requests
		s.Errors += run.Errors
		s.Non200 += run.Non200
		v := samples[run.Target]
		v[0] = append(v[0], run.RPS)
		v[1] = append(v[1], run.P50ms)
		v[2] = append(v[2], run.P99ms)
		v[3] = append(v[3], run.CPUusPerReq)
		s.MaxOtherCPUPercent = max(s.MaxOtherCPUPercent, run.OtherCPUPercent)
		r.Failures += run.Errors + run.Non200
	}
	// Keep the canonical target order whatever order the rounds ran in.
	canonical := []string{"bare-http", "gatehouse-http", "bare-http+apikey", "gatehouse-apikey", "bare-http+jwt", "gatehouse-jwt",
		"bare-tls", "gatehouse-tls", "bare-http+rl-local", "gatehouse-ratelimit-local", "bare-http+rl-redis", "gatehouse-ratelimit-redis",
		"bare-http+waf-path", "gatehouse-waf-p1", "naive-waf-p1", "gatehouse-waf-p1-vs-naive",
		"bare-http+validate", "gatehouse-validate", "bare-http+filter", "gatehouse-filter",
		"bare-http+audit-buffered", "audit-buffered", "bare-http+audit-durable", "audit-durable"}
	slices.SortStableFunc(order, func(a, b string) int {
		return rank(canonical, a) - rank(canonical, b)
	})
	r.Targets = nil
	for _, name := range order {
		s, v := byTarget[name], samples[name]
		s.RPS, s.P50ms, s.P99ms, s.CPUusPerReq = median(v[0]), median(v[1]), median(v[2]), median(v[3])
		r.Targets = append(r.Targets, *s)
	}
	r.Ratios, r.Checks = nil, nil
	for _, cmp := range comparisons {
		ra, ok := r.pairedRatio(cmp.target)
		if !ok {
			continue
		}
		r.Ratios = append(r.Ratios, ra)
		// Plain HTTP has both targets; API key and JWT a throughput target
		// (their p99 is shown for comparison); TLS is for comparison only.
		tput, tputInfo, p99Info := TargetThroughputRatio, false, false
		switch cmp.target {
		case "gatehouse-tls":
			tputInfo, p99Info = true, true
		case "gatehouse-apikey", "gatehouse-jwt":
			tput, p99Info = TargetAuthThroughputRatio, true
		case "gatehouse-waf-p1":
			// What the CRS costs over a bare proxy: reported, no target.
			tputInfo, p99Info = true, true
		case "gatehouse-waf-p1-vs-naive":
			tput, p99Info = TargetWAFNaiveRatio, true
		case "gatehouse-ratelimit-local":
			p99Info = true
		case "gatehouse-ratelimit-redis":
			tput, p99Info = TargetRedisLimitThroughputRatio, true
		case "gatehouse-validate":
			tput, p99Info = TargetValidateThroughputRatio, true
		case "gatehouse-filter":
			tput, p99Info = TargetFilterThroughputRatio, true
		case "audit-buffered":
			p99Info = true // the target is throughput (≥ 0.90×); p99 is shown
		case "audit-durable":
			// Durable mode waits for an fsync per group commit: its cost is
			// reported (throughput, added p50/p99), not held to a target.
			tputInfo, p99Info = true, true
		}
		r.Checks = append(r.Checks,
			Check{Name: "throughput ratio", Target: ra.Target, Protocol: ra.Protocol, Value: ra.Throughput, Op: ">=", Limit: tput,
				Pass: ra.Throughput >= tput, Informational: tputInfo},
			Check{Name: "p99 ratio", Target: ra.Target, Protocol: ra.Protocol, Value: ra.P99, Op: "<=", Limit: TargetP99Ratio,
				Pass: ra.P99 <= TargetP99Ratio, Informational: p99Info})
	}
	r.Valid = r.Failures == 0 && len(r.Runs) > 0
}

// rank is name's position in canonical, unknown names last.
func rank(canonical []string, name string) int {
	if i := slices.Index(canonical, name); i >= 0 {
		return i
	}
	return len(canonical)
}

// pairOf is the comparison a run belongs to; runs without Pair (reports
// from before the auth targets) pair by protocol.
func pairOf(run *RunResult) string {
	if run.Pair != "" {
		return run.Pair
	}
	return "gatehouse-" + run.Protocol
}

// pairedRatio computes gatehouse/bare per round for one Gatehouse target
// and takes the medians.
func (r *Report) pairedRatio(ghTarget string) (Ratio, bool) {
	type pair struct{ bare, gh *RunResult }
	byRound := map[int]*pair{}
	var rounds []int
	proto := ""
	for i := range r.Runs {
		run := &r.Runs[i]
		if pairOf(run) != ghTarget {
			continue
		}
		proto = run.Protocol
		p := byRound[run.Round]
		if p == nil {
			p = &pair{}
			byRound[run.Round] = p
			rounds = append(rounds, run.Round)
		}
		if run.Proxy == "bare" {
			p.bare = run
		} else {
			p.gh = run
		}
	}
	slices.Sort(rounds)
	ra := Ratio{Target: ghTarget, Protocol: proto}
	var p50, cpu []float64
	for _, n := range rounds {
		p := byRound[n]
		if p.bare == nil || p.gh == nil {
			continue
		}
		ra.ThroughputRounds = append(ra.ThroughputRounds, ratio(p.gh.RPS, p.bare.RPS))
		ra.P99Rounds = append(ra.P99Rounds, ratio(p.gh.P99ms, p.bare.P99ms))
		p50 = append(p50, ratio(p.gh.P50ms, p.bare.P50ms))
		cpu = append(cpu, ratio(p.gh.CPUusPerReq, p.bare.CPUusPerReq))
	}
	if len(ra.ThroughputRounds) == 0 {
		return ra, false
	}
	ra.Throughput, ra.P99 = median(ra.ThroughputRounds), median(ra.P99Rounds)
	ra.P50, ra.CPU = median(p50), median(cpu)
	return ra, true
}

// NoisyThreshold is the share of CPU used by other processes during a
// window above which the report warns that the numbers are disturbed.
const NoisyThreshold = 10.0

// WriteTable prints the report for people.
func (r *Report) WriteTable(w io.Writer) {
	s := r.Settings
	fmt.Fprintf(w, "\nGatehouse vs bare httputil.ReverseProxy — GET %s (%d-byte JSON upstream)\n", s.Path, s.BodyBytes)
	fmt.Fprintf(w, "load: %s, %d connections, %d threads, %d rounds × %gs (+%gs warmup), %d CPUs, %s\n",
		s.LoadGen, s.Connections, s.Threads, s.Rounds, s.DurationSeconds, s.WarmupSeconds, s.NumCPU, s.GoVersion)
	if s.Auth {
		fmt.Fprintf(w, "auth: gatehouse-apikey GET %s%s with X-API-Key, gatehouse-jwt GET %s%s with Authorization: Bearer\n"+
			"      (RS256, verified once, then from Gatehouse's token cache); both need scope %s. Their bare windows\n"+
			"      (bare-http+apikey, bare-http+jwt) send the same header, which the bare proxy passes through unread\n",
			apiKeyBasePath, benchOpPath, jwtBasePath, benchOpPath, benchScope)
		for _, p := range r.AuthProbes {
			fmt.Fprintf(w, "      checked first: %s answers %d with %s, %d without (WWW-Authenticate: %s), %d without scope %s\n",
				p.Target, p.WithStatus, p.Header, p.WithoutStatus, p.Challenge, p.OtherScopeStatus, benchScope)
		}
	}
	fmt.Fprintf(w, "medians across rounds; cpu/req is the proxy process's own CPU time per request\n\n")

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\treq/s\tp50\tp99\tcpu/req\trequests\terrors\tnon-200\tother load (max)\t")
	noisiest := 0.0
	for _, t := range r.Targets {
		fmt.Fprintf(tw, "%s\t%.0f\t%.3fms\t%.3fms\t%s\t%d\t%d\t%d\t%.1f%%\t\n",
			t.Target, t.RPS, t.P50ms, t.P99ms, cpuString(t.CPUusPerReq), t.Requests, t.Errors, t.Non200, t.MaxOtherCPUPercent)
		noisiest = max(noisiest, t.MaxOtherCPUPercent)
	}
	tw.Flush()

	fmt.Fprintln(w, "\ngatehouse / bare: median of per-round ratios (each round's two windows run back to back)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tthroughput\tp50\tp99\tcpu/req\tthroughput per round\tp99 per round\t")
	for _, ra := range r.Ratios {
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t%s\t\n", label(ra.Target, ra.Protocol),
			ra.Throughput, ra.P50, ra.P99, ra.CPU, joinRatios(ra.ThroughputRounds), joinRatios(ra.P99Rounds))
	}
	tw.Flush()

	fmt.Fprintln(w, "\ntargets:")
	for _, c := range r.Checks {
		verdict := "MISS"
		if c.Pass {
			verdict = "PASS"
		}
		note := ""
		if c.Informational {
			note = "  (informational, no target)"
			verdict = "(" + verdict + ")"
		}
		fmt.Fprintf(w, "  %-7s %-16s %s %.2f: %6.3f  %s%s\n", label(c.Target, c.Protocol), c.Name, opSymbol(c.Op), c.Limit, c.Value, verdict, note)
	}
	if r.Failures > 0 {
		fmt.Fprintf(w, "\nINVALID: %d failed requests (errors or non-200 responses) were measured; the numbers above are worthless:\n", r.Failures)
		for _, run := range r.Runs {
			if run.Errors+run.Non200 > 0 {
				fmt.Fprintf(w, "  round %d %s: %d errors, %d non-200", run.Round, run.Target, run.Errors, run.Non200)
				for _, p := range run.Problems {
					fmt.Fprintf(w, "; %s", p)
				}
				fmt.Fprintln(w)
			}
		}
	} else {
		fmt.Fprintln(w, "\nevery measured response was 200 (0 errors)")
	}
	if noisiest > NoisyThreshold {
		fmt.Fprintf(w, "NOISY: other processes used up to %.0f%% of the machine's CPU during measured windows; "+
			"ratios are paired per round to absorb this, but rerun on a quiet machine before trusting a MISS or PASS near the line\n", noisiest)
	}
}

func joinRatios(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, " ")
}

func cpuString(us float64) string {
	if us == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1fµs", us)
}

// label names a comparison in the table.
func label(ghTarget, proto string) string {
	for _, c := range comparisons {
		if c.target == ghTarget {
			return c.label
		}
	}
	if ghTarget != "" {
		return ghTarget
	}
	return protoName(proto)
}

func protoName(p string) string {
	if p == "tls" {
		return "TLS"
	}
	return "HTTP"
}

func opSymbol(op string) string {
	if op == ">=" {
		return "≥"
	}
	return "≤"
}
