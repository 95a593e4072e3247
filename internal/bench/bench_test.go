package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the harness's child processes
// (upstream and bare proxy), exactly as the gatehouse-bench command does.
func TestMain(m *testing.M) {
	RunRoleFromEnv()
	os.Exit(m.Run())
}

// TestHarnessEndToEnd runs the whole harness, tiny: a Gatehouse built from
// this tree, one round of 300 ms per window with the built-in generator,
// the API-key and JWT targets included.
func TestHarnessEndToEnd(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH; cannot build bin/gatehouse for the end-to-end benchmark test")
	}
	dir := t.TempDir()
	gh := filepath.Join(dir, "gatehouse")
	build := exec.Command(goBin, "build", "-o", gh, "github.com/gatehouse/gatehouse/cmd/gatehouse")
	// The environment is inherited as is (no -trimpath, cgo as configured),
	// so the build shares the cache `go test ./...` has already filled.
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build gatehouse: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var log strings.Builder
	rep, err := Run(ctx, Options{
		Gatehouse: gh, Rounds: 1, Duration: 300 * time.Millisecond, Warmup: -1,
		Connections: 4, LoadGen: "builtin", TempDir: dir, Log: &log,
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	t.Log(log.String())
	var names []string
	for _, s := range rep.Targets {
		names = append(names, s.Target)
	}
	if got := strings.Join(names, ","); got != "bare-http,gatehouse-http,bare-http+apikey,gatehouse-apikey,bare-http+jwt,gatehouse-jwt,bare-tls,gatehouse-tls,"+
		"bare-http+rl-local,gatehouse-ratelimit-local,bare-http+waf-path,gatehouse-waf-p1,naive-waf-p1,gatehouse-waf-p1-vs-naive,"+
		"bare-http+validate,gatehouse-validate,bare-http+filter,gatehouse-filter,bare-http+audit-buffered,audit-buffered,bare-http+audit-durable,audit-durable" {
		t.Fatalf("targets: %s", got)
	}
	// Each auth target answered 200 with its credential (the probe before
	// measuring, and every measured response) and 401 without.
	wantProbes := map[string]string{"gatehouse-apikey": "X-API-Key", "gatehouse-jwt": "Authorization"}
	if len(rep.AuthProbes) != len(wantProbes) {
		t.Errorf("auth probes: %+v", rep.AuthProbes)
	}
	for _, p := range rep.AuthProbes {
		if wantProbes[p.Target] != p.Header || p.WithStatus != 200 || p.WithoutStatus != 401 || p.Challenge == "" || p.OtherScopeStatus != 403 {
			t.Errorf("auth probe %+v: want 200 with %s, 401 with a challenge without, 403 without the scope", p, wantProbes[p.Target])
		}
	}
	if !rep.Settings.Auth {
		t.Error("settings do not record the auth targets")
	}
	// One window per target, each tagged with its comparison.
	pairs := map[string]string{}
	for _, run := range rep.Runs {
		pairs[run.Target] = run.Pair
	}
	if len(rep.Runs) != 22 || pairs["bare-http+jwt"] != "gatehouse-jwt" || pairs["bare-http+apikey"] != "gatehouse-apikey" ||
		pairs["bare-http"] != "gatehouse-http" || pairs["bare-tls"] != "gatehouse-tls" || pairs["bare-http+rl-local"] != "gatehouse-ratelimit-local" ||
		pairs["bare-http+waf-path"] != "gatehouse-waf-p1" || pairs["naive-waf-p1"] != "gatehouse-waf-p1-vs-naive" ||
		pairs["bare-http+validate"] != "gatehouse-validate" || pairs["bare-http+filter"] != "gatehouse-filter" ||
		pairs["bare-http+audit-buffered"] != "audit-buffered" || pairs["bare-http+audit-durable"] != "audit-durable" {
		t.Errorf("want 22 windows in 11 pairs, got %d: %v", len(rep.Runs), pairs)
	}
	for _, s := range rep.Targets {
		if s.Requests <= 0 || s.Errors != 0 || s.Non200 != 0 {
			t.Errorf("%s: %d requests, %d errors, %d non-200; want >0, 0, 0", s.Target, s.Requests, s.Errors, s.Non200)
		}
	}
	if !rep.Valid || rep.Failures != 0 {
		t.Errorf("report not valid: %d failures", rep.Failures)
	}
	var ratios []string
	for _, ra := range rep.Ratios {
		ratios = append(ratios, ra.Target)
		if len(ra.ThroughputRounds) != 1 || ra.Throughput <= 0 {
			t.Errorf("ratio %+v: want one paired round", ra)
		}
	}
	if got := strings.Join(ratios, ","); got != "gatehouse-http,gatehouse-apikey,gatehouse-jwt,gatehouse-tls,gatehouse-waf-p1,gatehouse-waf-p1-vs-naive,gatehouse-ratelimit-local,gatehouse-validate,gatehouse-filter,audit-buffered,audit-durable" || len(rep.Checks) != 22 {
		t.Errorf("want HTTP, API key, JWT, TLS, WAF, rate-limit, validate, filter and audit ratios and 22 checks, got %s, %+v", got, rep.Checks)
	}
	for _, c := range rep.Checks {
		if c.Name == "throughput ratio" && ((c.Target == "gatehouse-validate" && c.Limit != TargetValidateThroughputRatio) ||
			(c.Target == "gatehouse-filter" && c.Limit != TargetFilterThroughputRatio) ||
			((c.Target == "gatehouse-validate" || c.Target == "gatehouse-filter") && c.Informational)) {
			t.Errorf("hygiene throughput check %+v", c)
		}
		if c.Name == "throughput ratio" && (c.Target == "gatehouse-apikey" || c.Target == "gatehouse-jwt") &&
			(c.Limit != TargetAuthThroughputRatio || c.Informational) {
			t.Errorf("auth throughput check %+v: want a %.2f target", c, TargetAuthThroughputRatio)
		}
		if c.Name == "throughput ratio" && c.Target == "gatehouse-waf-p1-vs-naive" && (c.Limit != TargetWAFNaiveRatio || c.Informational) {
			t.Errorf("WAF throughput check %+v: want a %.2f target", c, TargetWAFNaiveRatio)
		}
	}
	var table strings.Builder
	rep.WriteTable(&table)
	for _, want := range []string{"gatehouse-http", "bare-tls", "gatehouse-apikey", "gatehouse-jwt", "bare-http+jwt", "API key", "JWT",
		"throughput ratio", "p99 ratio", "WAF p1 vs Coraza WrapHandler", "401 without", "403 without scope items:read", "0 errors"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	// Every child process is gone and the run's temp dir removed.
	if m, _ := filepath.Glob(filepath.Join(dir, "gatehouse-bench-*")); len(m) != 0 {
		t.Errorf("temp dir left behind: %v", m)
	}
}

const wrkSample = `Running 5s test @ http://127.0.0.1:41000/bench/items/42
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.41ms    1.90ms  40.12ms   89.90%
    Req/Sec     6.90k   612.34     8.01k    71.00%
  Latency Distribution
     50%    2.08ms
     75%    2.73ms
     90%    3.71ms
     99%   11.47ms
  68713 requests in 5.00s, 21.29MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  13741.39
Transfer/sec:      4.26MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkSample)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 68713 || r.RPS != 13741.39 || r.Elapsed != 5*time.Second {
		t.Errorf("totals: %+v", r)
	}
	if r.P50 != 2080*time.Microsecond || r.P99 != 11470*time.Microsecond {
		t.Errorf("p50 %v p99 %v", r.P50, r.P99)
	}
	if r.Errors != 3 || r.Non200 != 7 || len(r.Problems) != 3 {
		t.Errorf("errors %d non200 %d problems %q", r.Errors, r.Non200, r.Problems)
	}

	clean := strings.NewReplacer("     50%    2.08ms", "     50%  812.00us",
		"  Socket errors: connect 0, read 2, write 0, timeout 1\n", "",
		"  Non-2xx or 3xx responses: 7\n", "").Replace(wrkSample)
	r, err = parseWrk(clean)
	if err != nil {
		t.Fatal(err)
	}
	if r.P50 != 812*time.Microsecond || r.Errors != 0 || r.Non200 != 0 || len(r.Problems) != 0 {
		t.Errorf("clean run: %+v", r)
	}

	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Error("garbage parsed without error")
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.quantile(c.q)
		if d := got - c.want; d < -c.want/100 || d > c.want/100 {
			t.Errorf("q%.2f = %v, want %v ±1%%", c.q, got, c.want)
		}
	}
	var other histogram
	other.record(time.Hour)
	h.merge(&other)
	if h.total != 1001 || h.quantile(1) != time.Hour {
		t.Errorf("merge: total %d max %v", h.total, h.quantile(1))
	}
	var empty histogram
	if empty.quantile(0.99) != 0 {
		t.Error("empty histogram quantile not 0")
	}
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 1 << 20, 1<<63 + 12345} {
		if b := bucketOf(v); b < 0 || b >= buckets {
			t.Errorf("bucketOf(%d) = %d out of range", v, b)
		}
	}
}

func TestRoundOrderAlternates(t *testing.T) {
	bare := target{name: "bare-http"}
	ps := []pairing{
		{bare, target{name: "gatehouse-http"}},
		{target{name: "bare-tls"}, target{name: "gatehouse-tls"}},
		{bare, target{name: "gatehouse-jwt"}},
	}
	names := func(ts []target) string {
		var s []string
		for _, t := range ts {
			s = append(s, t.name+"/"+t.pair)
		}
		return strings.Join(s, ",")
	}
	if got := names(roundOrder(ps, 1)); got != "bare-http/gatehouse-http,gatehouse-http/gatehouse-http,"+
		"bare-tls/gatehouse-tls,gatehouse-tls/gatehouse-tls,bare-http/gatehouse-jwt,gatehouse-jwt/gatehouse-jwt" {
		t.Errorf("round 1: %s", got)
	}
	if got := names(roundOrder(ps, 2)); got != "gatehouse-http/gatehouse-http,bare-http/gatehouse-http,"+
		"gatehouse-tls/gatehouse-tls,bare-tls/gatehouse-tls,gatehouse-jwt/gatehouse-jwt,bare-http/gatehouse-jwt" {
		t.Errorf("round 2: %s", got)
	}
}

func TestSummarizeMediansAndChecks(t *testing.T) {
	r := &Report{}
	for round, rps := range [][2]float64{{100, 95}, {120, 80}, {110, 100}} {
		r.Runs = append(r.Runs,
			RunResult{Round: round + 1, Target: "gatehouse-http", Proxy: "gatehouse", Protocol: "http", Requests: 1, RPS: rps[1], P99ms: 1.3},
			RunResult{Round: round + 1, Target: "bare-http", Proxy: "bare", Protocol: "http", Requests: 1, RPS: rps[0], P99ms: 1.0})
	}
	r.summarize()
	if r.Targets[0].Target != "bare-http" || r.Targets[0].RPS != 110 || r.Targets[1].RPS != 95 {
		t.Fatalf("targets %+v", r.Targets)
	}
	// Paired per round: 0.95, 0.67, 0.91 → median 0.91 (a ratio of the
	// overall medians, 95/110 = 0.86, would blame Gatehouse for round 2's
	// slump, which hit both sides).
	ra := r.Ratios[0]
	if len(ra.ThroughputRounds) != 3 || ra.Throughput < 0.909 || ra.Throughput > 0.91 {
		t.Errorf("throughput ratio %+v", ra)
	}
	if len(r.Checks) != 2 || !r.Checks[0].Pass || r.Checks[1].Pass || r.Met() || !r.Valid {
		t.Errorf("checks %+v valid %v", r.Checks, r.Valid)
	}
	r.Runs[0].Non200 = 1
	r.summarize()
	if r.Valid || r.Failures != 1 {
		t.Errorf("a non-200 must invalidate the report: %+v", r)
	}
}

// The auth targets pair with bare windows of their own: each ratio uses
// only the bare window beside it, and has its own 0.85 target.
func TestSummarizeAuthPairs(t *testing.T) {
	r := &Report{}
	for round := 1; round <= 3; round++ {
		r.Runs = append(r.Runs,
			RunResult{Round: round, Target: "bare-http", Proxy: "bare", Protocol: "http", Pair: "gatehouse-http", Requests: 1, RPS: 100, P99ms: 1},
			RunResult{Round: round, Target: "gatehouse-http", Proxy: "gatehouse", Protocol: "http", Pair: "gatehouse-http", Requests: 1, RPS: 95, P99ms: 1},
			RunResult{Round: round, Target: "bare-http+apikey", Proxy: "bare", Protocol: "http", Pair: "gatehouse-apikey", Requests: 1, RPS: 200, P99ms: 1},
			RunResult{Round: round, Target: "gatehouse-apikey", Proxy: "gatehouse", Protocol: "http", Pair: "gatehouse-apikey", Requests: 1, RPS: 180, P99ms: 2},
			RunResult{Round: round, Target: "gatehouse-jwt", Proxy: "gatehouse", Protocol: "http", Pair: "gatehouse-jwt", Requests: 1, RPS: 80, P99ms: 1},
			RunResult{Round: round, Target: "bare-http", Proxy: "bare", Protocol: "http", Pair: "gatehouse-jwt", Requests: 1, RPS: 100, P99ms: 1}) // pairing follows Pair, not the name
	}
	r.summarize()
	if len(r.Targets) != 5 || r.Targets[0].Target != "bare-http" || r.Targets[0].Requests != 6 || r.Targets[2].Target != "bare-http+apikey" ||
		r.Targets[4].Target != "gatehouse-jwt" {
		t.Fatalf("targets %+v", r.Targets)
	}
	want := map[string]float64{"gatehouse-http": 0.95, "gatehouse-apikey": 0.90, "gatehouse-jwt": 0.80}
	if len(r.Ratios) != 3 {
		t.Fatalf("ratios %+v", r.Ratios)
	}
	for _, ra := range r.Ratios {
		if d := ra.Throughput - want[ra.Target]; d < -1e-9 || d > 1e-9 || len(ra.ThroughputRounds) != 3 || ra.Protocol != "http" {
			t.Errorf("ratio %+v, want throughput %.2f", ra, want[ra.Target])
		}
	}
	pass := map[string]bool{}
	for _, c := range r.Checks {
		if c.Name == "throughput ratio" {
			pass[c.Target] = c.Pass
		}
		if c.Target == "gatehouse-apikey" && c.Name == "p99 ratio" && !c.Informational {
			t.Errorf("auth p99 is for comparison only: %+v", c)
		}
	}
	if !pass["gatehouse-http"] || !pass["gatehouse-apikey"] || pass["gatehouse-jwt"] || r.Met() {
		t.Errorf("checks %+v", r.Checks)
	}
	var table strings.Builder
	r.WriteTable(&table)
	for _, want := range []string{"API key throughput ratio", "JWT     throughput ratio ≥ 0.85:  0.800  MISS"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestParseRequestCounts(t *testing.T) {
	const text = `# HELP gatehouse_requests_total Requests handled.
# TYPE gatehouse_requests_total counter
gatehouse_requests_total{api="bench",decision="allow",operation="getItem",status_class="2xx"} 1234
gatehouse_requests_total{api="bench",decision="allow",operation="getItem",status_class="3xx"} 2
gatehouse_requests_total{api="",decision="deny",operation="",status_class="4xx"} 3
gatehouse_request_duration_seconds_count{api="bench",operation="getItem"} 1239
`
	c, err := parseRequestCounts(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if c.ok != 1234 || c.clientGone != 0 || c.notOK != 5 {
		t.Errorf("got %+v, want ok 1234 notOK 5", c)
	}
	c, err = parseRequestCounts(strings.NewReader(`gatehouse_requests_total{api="bench",decision="allow",operation="getItem",status_class="4xx"} 7` + "\n"))
	if err != nil || c.clientGone != 7 || c.notOK != 0 {
		t.Errorf("allowed 4xx (499 client gone): got %+v, %v", c, err)
	}
}
