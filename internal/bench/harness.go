// Package bench compares Gatehouse with a bare httputil.ReverseProxy on the
// same machine, upstream, transport and load, and reports the ratios the
// project's performance targets are stated in.
//
// One Run starts, as separate processes: a fast upstream, a bare reverse
// proxy (HTTP and TLS listeners) and `gatehouse serve` (HTTP and HTTPS
// listeners). It then drives the four targets in interleaved rounds with
// wrk (or a built-in Go load generator when wrk is not installed), so that
// machine noise hits both sides alike, and takes medians across rounds.
package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/devcert"
)

// Options configure a Run. Zero values take the defaults noted.
type Options struct {
	Gatehouse   string        // gatehouse binary (bin/gatehouse)
	Rounds      int           // interleaved rounds (5)
	Duration    time.Duration // measured window per target and round (3s)
	Warmup      time.Duration // unmeasured load before each window (1s); negative: none
	Connections int           // concurrent keep-alive connections (32)
	Threads     int           // wrk threads (2)
	// LoadGen is "auto" (wrk when on PATH, else built-in), "wrk" or "builtin".
	LoadGen string
	// Self is the executable re-run for the child roles; os.Executable()
	// by default. It must call RunRoleFromEnv first thing.
	Self string
	// TempDir is where the run's temp dir is made (os.TempDir()).
	TempDir string
	// Log receives progress lines (nil: discarded).
	Log io.Writer
}

func (o *Options) defaults() error {
	if o.Gatehouse == "" {
		o.Gatehouse = filepath.Join("bin", "gatehouse")
	}
	// Five short rounds rather than three long ones: on a shared 2-core
	// machine noise comes in bursts, and the median of five paired ratios
	// shrugs off two disturbed rounds where the median of three cannot.
	if o.Rounds == 0 {
		o.Rounds = 5
	}
	if o.Duration == 0 {
		o.Duration = 3 * time.Second
	}
	if o.Warmup == 0 {
		o.Warmup = time.Second
	}
	if o.Connections == 0 {
		o.Connections = 32
	}
	if o.Threads == 0 {
		o.Threads = 2
	}
	if o.LoadGen == "" {
		o.LoadGen = "auto"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	switch {
	case o.Rounds < 1 || o.Rounds > 50:
		return errors.New("rounds must be 1-50")
	case o.Duration < 100*time.Millisecond || o.Duration > 10*time.Minute:
		return errors.New("duration must be between 100ms and 10m")
	case o.Warmup > time.Minute:
		return errors.New("warmup must be at most 1m")
	case o.Connections < 1 || o.Connections > 10000:
		return errors.New("connections must be 1-10000")
	case o.Threads < 1 || o.Threads > 256:
		return errors.New("threads must be 1-256")
	}
	return nil
}

// target is one thing to drive: a proxy over one protocol.
type target struct {
	name, proxy, proto string // e.g. "gatehouse-tls", "gatehouse", "tls"
	url                string
	proc               *proc // the proxy process, for its CPU time
}

// benchPath is what every request asks for: an operation of the spec below.
const benchPath = "/bench/items/42"

const benchSpec = `openapi: 3.1.0
info: {title: gatehouse-bench, version: "1"}
paths:
  /items/{id}:
    get:
      operationId: getItem
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}}
      responses:
        "200": {description: the item}
`

// Run performs the whole benchmark and returns its report. Every process
// and file it creates is gone when it returns, also when ctx is cancelled.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	loadgen, wrkPath, err := pickLoadGen(o.LoadGen)
	if err != nil {
		return nil, err
	}
	gh, err := filepath.Abs(o.Gatehouse)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(gh); err != nil || st.IsDir() {
		return nil, fmt.Errorf("gatehouse binary %s not found: run `make build` or pass -gatehouse", o.Gatehouse)
	}
	self := o.Self
	if self == "" {
		if self, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find own executable for the child processes: %w", err)
		}
	}

	dir, err := os.MkdirTemp(o.TempDir, "gatehouse-bench-")
	if err != nil {
		return nil, err
	}
	var procs []*proc
	defer func() {
		// Proxies first, then the upstream they talk to; then the files.
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(10 * time.Second)
		}
		_ = os.RemoveAll(dir)
	}()

	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	certPEM, keyPEM, err := devcert.Generate(time.Now())
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)

	fmt.Fprintf(o.Log, "gatehouse-bench: starting upstream, bare proxy and gatehouse in %s\n", dir)
	up, line, err := startProc("upstream", filepath.Join(dir, "upstream.log"), self, nil,
		[]string{RoleEnv + "=upstream"}, true, 15*time.Second)
	if err != nil {
		return nil, err
	}
	procs = append(procs, up)
	upAddrs, err := announced(line)
	if err != nil {
		return nil, err
	}
	upstreamURL := "http://" + upAddrs["http"]

	bare, line, err := startProc("bare proxy", filepath.Join(dir, "bare.log"), self, nil,
		[]string{RoleEnv + "=bare", envUpstream + "=" + upstreamURL, envCert + "=" + certFile, envKey + "=" + keyFile},
		true, 15*time.Second)
	if err != nil {
		return nil, err
	}
	procs = append(procs, bare)
	bareAddrs, err := announced(line)
	if err != nil {
		return nil, err
	}

	// Gatehouse needs fixed ports in its config. They are picked free just
	// before it starts; if another process grabs one in between, try again.
	var gp *proc
	var ghHTTP, ghHTTPS, ghAdmin string
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(3)
		if err != nil {
			return nil, err
		}
		ghHTTP, ghHTTPS, ghAdmin = ports[0], ports[1], ports[2]
		cfgFile, err := writeGatehouseConfig(dir, upstreamURL, ghHTTP, ghHTTPS, ghAdmin, certFile, keyFile)
		if err != nil {
			return nil, err
		}
		gp, _, err = startProc("gatehouse", filepath.Join(dir, "gatehouse.log"), gh,
			[]string{"serve", "--config", cfgFile}, nil, false, 0)
		if err != nil {
			return nil, err
		}
		err = waitReady(ctx, gp, "http://"+ghAdmin+"/readyz", 30*time.Second)
		if err == nil {
			procs = append(procs, gp)
			break
		}
		gp.stop(5 * time.Second)
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return nil, err
		}
	}

	metricsURL := "http://" + ghAdmin + "/metrics"
	targets := []target{
		{"bare-http", "bare", "http", "http://" + bareAddrs["http"] + benchPath, bare},
		{"gatehouse-http", "gatehouse", "http", "http://" + ghHTTP + benchPath, gp},
		{"bare-tls", "bare", "tls", "https://" + bareAddrs["https"] + benchPath, bare},
		{"gatehouse-tls", "gatehouse", "tls", "https://" + ghHTTPS + benchPath, gp},
	}
	for _, t := range targets {
		if err := probe(ctx, t.url, roots); err != nil {
			return nil, fmt.Errorf("%s does not answer 200 with the upstream's body, so there is nothing to measure: %w\n%s",
				t.name, err, t.proc.logTail(10))
		}
	}

	rep = &Report{Settings: Settings{
		LoadGen: loadgen, Connections: o.Connections, Threads: o.Threads, Rounds: o.Rounds,
		DurationSeconds: o.Duration.Seconds(), WarmupSeconds: max(o.Warmup, 0).Seconds(),
		NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(), Path: benchPath, BodyBytes: len(UpstreamBody),
	}}
	if loadgen == "wrk" {
		rep.Settings.DurationSeconds = float64(max(int((o.Duration+time.Second-1)/time.Second), 1))
	}
	fmt.Fprintf(o.Log, "gatehouse-bench: %s, %d connections, %d rounds × %s per target (+%s warmup each)\n",
		loadgen, o.Connections, o.Rounds, o.Duration, max(o.Warmup, 0))

	drive := func(t target, d time.Duration) (loadResult, error) {
		s := loadSpec{URL: t.url, Connections: o.Connections, Threads: o.Threads, Duration: d, RootCAs: roots}
		if loadgen == "wrk" {
			return runWrk(ctx, wrkPath, s)
		}
		return runBuiltin(ctx, s), ctx.Err()
	}
	for round := 1; round <= o.Rounds; round++ {
		for _, t := range roundOrder(targets, round) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if t.proc.exited() {
				return nil, fmt.Errorf("%s process exited during the benchmark (%v)\n%s", t.proc.name, t.proc.waitErr, t.proc.logTail(20))
			}
			if o.Warmup > 0 {
				if _, err := drive(t, o.Warmup); err != nil {
					return nil, err
				}
			}
			var ghBefore ghCounts
			if t.proxy == "gatehouse" {
				if ghBefore, err = scrapeGatehouse(ctx, metricsURL); err != nil {
					return nil, fmt.Errorf("read gatehouse metrics: %w", err)
				}
			}
			ours := []int{os.Getpid(), up.pid(), bare.pid(), gp.pid()}
			before := snapCPU(ours, t.proc.pid())
			res, err := drive(t, o.Duration)
			if err != nil {
				return nil, err
			}
			after := snapCPU(ours, t.proc.pid())
			r := RunResult{
				Round: round, Target: t.name, Proxy: t.proxy, Protocol: t.proto,
				Requests: res.Requests, Errors: res.Errors, Non200: res.Non200, RPS: res.RPS,
				P50ms: ms(res.P50), P99ms: ms(res.P99), Problems: res.Problems,
			}
			if before.ok && after.ok && res.Requests > 0 {
				r.CPUusPerReq = float64((after.proxy - before.proxy).Microseconds()) / float64(res.Requests)
				if total := after.total - before.total; total > 0 {
					other := (after.busy - before.busy) - (after.ours - before.ours) - res.GenCPU
					r.OtherCPUPercent = max(0, 100*float64(other)/float64(total))
				}
			}
			if t.proxy == "gatehouse" {
				ghAfter, err := scrapeGatehouse(ctx, metricsURL)
				if err != nil {
					return nil, fmt.Errorf("read gatehouse metrics: %w", err)
				}
				if n := ghAfter.notOK - ghBefore.notOK; n > r.Non200 {
					r.Problems = append(r.Problems, fmt.Sprintf("gatehouse counted %d responses that were neither 2xx nor client disconnects", n))
					r.Non200 = n
				}
				// Only the requests in flight when the generator stopped can
				// end in a disconnect; more than that is something else.
				if n := ghAfter.clientGone - ghBefore.clientGone; n > int64(o.Connections) {
					r.Problems = append(r.Problems, fmt.Sprintf("gatehouse counted %d 4xx responses (client disconnects?), more than the %d connections in flight", n, o.Connections))
					r.Non200 += n
				}
			}
			if res.Requests == 0 && res.Errors == 0 {
				r.Errors = 1
				r.Problems = append(r.Problems, "no request completed")
			}
			rep.Runs = append(rep.Runs, r)
			fmt.Fprintf(o.Log, "  round %d/%d  %-15s %8.0f req/s  p50 %6.3fms  p99 %7.3fms  cpu %5.1fµs/req  other load %4.1f%%  %d requests, %d errors, %d non-200\n",
				round, o.Rounds, t.name, r.RPS, r.P50ms, r.P99ms, r.CPUusPerReq, r.OtherCPUPercent, r.Requests, r.Errors, r.Non200)
			for _, p := range r.Problems {
				fmt.Fprintf(o.Log, "      %s\n", p)
			}
		}
	}
	rep.summarize()
	return rep, nil
}

// cpuSnap is a reading of CPU clocks taken around a measured window.
type cpuSnap struct {
	busy, total time.Duration // the whole machine
	ours        time.Duration // the harness and its children (not wrk)
	proxy       time.Duration // the proxy under test
	ok          bool
}

func snapCPU(ours []int, proxyPID int) cpuSnap {
	var s cpuSnap
	var ok bool
	if s.busy, s.total, ok = systemCPU(); !ok {
		return s
	}
	for _, pid := range ours {
		d, ok := procCPU(pid)
		if !ok {
			return s
		}
		s.ours += d
		if pid == proxyPID {
			s.proxy = d
		}
	}
	s.ok = true
	return s
}

// roundOrder interleaves the targets: each proxy's HTTP and TLS run sit
// next to the other proxy's, and which side goes first alternates per
// round (ABBA), so a slow drift (thermal, a background job) does not favour
// one side.
func roundOrder(ts []target, round int) []target {
	out := append([]target(nil), ts...)
	if round%2 == 0 {
		for i := 0; i+1 < len(out); i += 2 {
			out[i], out[i+1] = out[i+1], out[i]
		}
	}
	return out
}

func pickLoadGen(want string) (name, wrkPath string, err error) {
	switch want {
	case "builtin":
		return "builtin", "", nil
	case "wrk", "auto":
		p, err := exec.LookPath("wrk")
		if err == nil {
			return "wrk", p, nil
		}
		if want == "wrk" {
			return "", "", errors.New("wrk is not installed (apt-get install wrk), or use -loadgen builtin")
		}
		return "builtin", "", nil
	default:
		return "", "", fmt.Errorf("unknown load generator %q (auto, wrk or builtin)", want)
	}
}

// freePorts reserves n loopback ports by binding and releasing them. Gatehouse
// needs fixed ports in its config; the window for a collision is tiny.
func freePorts(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

func writeGatehouseConfig(dir, upstream, httpAddr, httpsAddr, adminAddr, cert, key string) (string, error) {
	spec := filepath.Join(dir, "spec.yaml")
	if err := os.WriteFile(spec, []byte(benchSpec), 0o600); err != nil {
		return "", err
	}
	// The one operation is public: the benchmark measures the pipeline as
	// it stands, without credentials to verify.
	cfg := fmt.Sprintf(`version: 1
listen:
  http: %s
  allow_plaintext: true
  https: %s
  tls: {cert: %q, key: %q}
admin: {listen: %s}
store: {sqlite: %q}
apis:
  - name: bench
    version: v1
    owner: {team: bench}
    spec: %q
    upstream: %s
    route: {base_path: /bench}
    policies:
      - {operation: "*", public: true}
`, httpAddr, httpsAddr, cert, key, adminAddr, filepath.Join(dir, "gh.db"), spec, upstream)
	file := filepath.Join(dir, "gatehouse.yaml")
	return file, os.WriteFile(file, []byte(cfg), 0o600)
}

// waitReady polls Gatehouse's /readyz until it answers 200.
func waitReady(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("gatehouse exited at start (%v):\n%s", p.waitErr, p.logTail(30))
		}
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("gatehouse not ready at %s after %s:\n%s", url, timeout, p.logTail(30))
}

// probe checks that a target answers 200 with the upstream's exact body.
func probe(ctx context.Context, url string, roots *x509.CertPool) error {
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	defer client.CloseIdleConnections()
	var last error
	for range 3 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			last = err
			time.Sleep(200 * time.Millisecond)
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		switch {
		case err != nil:
			last = err
		case resp.StatusCode != http.StatusOK:
			return fmt.Errorf("GET %s: status %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
		case string(body) != UpstreamBody:
			return fmt.Errorf("GET %s: body is not the upstream's: %.200s", url, body)
		default:
			return nil
		}
	}
	return fmt.Errorf("GET %s: %w", url, last)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
