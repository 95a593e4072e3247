// Package bench compares Gatehouse with a bare httputil.ReverseProxy on the
// same machine, upstream and load, and reports the ratios the
// project's performance targets are stated in.
//
// One Run starts, as separate processes: a fast upstream, a bare reverse
// proxy (HTTP and TLS listeners) and `gatehouse serve` (HTTP and HTTPS
// listeners). It then drives the targets in interleaved rounds with wrk (or
// a built-in Go load generator when wrk is not installed), so that machine
// noise hits both sides alike, and takes medians across rounds. Each
// Gatehouse target is paired with a bare-proxy window run back to back with
// it: plain HTTP, TLS, and (unless Options.NoAuth) HTTP with an API key and
// HTTP with an RS256 JWT, both checked against a required scope (auth.go).
package bench

import (
	"context"
	"crypto/rand"
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
	"regexp"
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
	// NoAuth leaves out the API-key and JWT targets (and the identity
	// config they need).
	NoAuth bool
	// Redis, when set, adds the gatehouse-ratelimit-redis target: a second
	// Gatehouse whose rate limits live in this Redis (a fresh key prefix,
	// deleted keys expire by themselves within a second).
	Redis string
	// NoAudit leaves out the audit-buffered and audit-durable targets.
	NoAudit bool
	// Only, when set, keeps just the pairs whose Gatehouse target name it
	// matches (with their bare windows).
	Only *regexp.Regexp
	// ProfileDir, when set, has the main Gatehouse process write a CPU
	// profile there (gatehouse.pprof) for the whole run.
	ProfileDir string
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

// target is one thing to drive: a proxy over one protocol, with or
// without a credential.
type target struct {
	name, proxy, proto string // e.g. "gatehouse-tls", "gatehouse", "tls"
	url                string
	proc               *proc  // the proxy process, for its CPU time
	metrics            string // its /metrics URL when not the main Gatehouse's
	// rateLimited targets must answer with RateLimit headers.
	rateLimited bool
	// cred returns the credential header sent with every request (nil:
	// none). It is called per window, so a token can be renewed.
	cred func() (header, error)
	// otherScope is a credential of the same kind without the scope the
	// operation requires, which must be refused with 403.
	otherScope func() (header, error)
	// pair is the comparison a window belongs to, named by its Gatehouse
	// target (set by roundOrder).
	pair string
	// method and body (POST with a JSON body for the validate target),
	// extra headers sent with every request, and check, which judges the
	// probe's 200 body instead of comparing it with UpstreamBody
	// (hygiene.go).
	method, body string
	extra        []header
	check        func([]byte) error
}

// pairing is one comparison: a Gatehouse target and the bare target its
// windows are paired with, run back to back in every round.
type pairing struct{ bare, gh target }

// benchPath is what every request of the plain targets asks for: the
// operation benchOpPath of the spec below, under the /bench API. The auth
// targets ask for the same operation under their own base paths.
const (
	benchOpPath = "/items/42"
	benchPath   = "/bench" + benchOpPath
)

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
	var auth *authSetup
	defer func() {
		// Proxies first, then the upstream and JWKS they talk to; then the
		// files.
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(10 * time.Second)
		}
		auth.close()
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
	if !o.NoAuth {
		if auth, err = newAuthSetup(dir); err != nil {
			return nil, fmt.Errorf("set up the auth targets: %w", err)
		}
	}

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

	naive, line, err := startProc("naive WAF proxy", filepath.Join(dir, "naive-waf.log"), self, nil,
		[]string{RoleEnv + "=naive-waf", envUpstream + "=" + upstreamURL}, true, 30*time.Second)
	if err != nil {
		return nil, err
	}
	procs = append(procs, naive)
	naiveAddrs, err := announced(line)
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
		cfgFile, err := writeGatehouseConfig(dir, upstreamURL, ghHTTP, ghHTTPS, ghAdmin, certFile, keyFile, auth, "")
		if err != nil {
			return nil, err
		}
		if auth != nil && auth.apiKey == "" {
			// Into the store Gatehouse is about to open, closed again first.
			if err := auth.issueKey(ctx, cfgFile); err != nil {
				return nil, err
			}
		}
		args := []string{"serve", "--config", cfgFile}
		if o.ProfileDir != "" {
			args = append(args, "--cpuprofile", filepath.Join(o.ProfileDir, "gatehouse.pprof"))
		}
		gp, _, err = startProc("gatehouse", filepath.Join(dir, "gatehouse.log"), gh, args, nil, false, 0)
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
	// The Redis rate-limit target runs in a Gatehouse of its own: redis: is
	// gateway-wide.
	var gpRedis *proc
	var rdHTTP, rdAdmin string
	if o.Redis != "" {
		rdDir := filepath.Join(dir, "redis")
		if err := os.MkdirAll(rdDir, 0o700); err != nil {
			return nil, err
		}
		for attempt := 1; ; attempt++ {
			ports, err := freePorts(3)
			if err != nil {
				return nil, err
			}
			rdHTTP, rdAdmin = ports[0], ports[2]
			cfgFile, err := writeGatehouseConfig(rdDir, upstreamURL, ports[0], ports[1], ports[2], certFile, keyFile, nil, o.Redis)
			if err != nil {
				return nil, err
			}
			gpRedis, _, err = startProc("gatehouse (redis)", filepath.Join(rdDir, "gatehouse.log"), gh,
				[]string{"serve", "--config", cfgFile}, nil, false, 0)
			if err != nil {
				return nil, err
			}
			err = waitReady(ctx, gpRedis, "http://"+rdAdmin+"/readyz", 30*time.Second)
			if err == nil {
				procs = append(procs, gpRedis)
				break
			}
			gpRedis.stop(5 * time.Second)
			if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
				return nil, err
			}
		}
	}
	var auditTargets []target
	if !o.NoAudit {
		for _, mode := range auditModes {
			ap, httpAddr, adminAddr, err := startAuditGatehouse(ctx, dir, gh, upstreamURL, certFile, keyFile, mode)
			if err != nil {
				return nil, fmt.Errorf("start the audit-%s target: %w", mode, err)
			}
			procs = append(procs, ap)
			auditTargets = append(auditTargets, target{name: "audit-" + mode, proxy: "gatehouse", proto: "http",
				url: "http://" + httpAddr + benchPath, proc: ap, metrics: "http://" + adminAddr + "/metrics"})
		}
	}
	bareHTTP := target{name: "bare-http", proxy: "bare", proto: "http", url: "http://" + bareAddrs["http"] + benchPath, proc: bare}
	bareTLS := target{name: "bare-tls", proxy: "bare", proto: "tls", url: "https://" + bareAddrs["https"] + benchPath, proc: bare}
	pairs := []pairing{
		{bareHTTP, target{name: "gatehouse-http", proxy: "gatehouse", proto: "http", url: "http://" + ghHTTP + benchPath, proc: gp}},
		{bareTLS, target{name: "gatehouse-tls", proxy: "gatehouse", proto: "tls", url: "https://" + ghHTTPS + benchPath, proc: gp}},
	}
	// The WAF rows: Gatehouse with the CRS against the bare proxy, and
	// against the bare proxy inside Coraza's WrapHandler (see waf.go).
	bareWAF := bareHTTP
	bareWAF.name = "bare-http+waf-path"
	naiveWAF := target{name: "naive-waf-p1", proxy: "bare", proto: "http", url: "http://" + naiveAddrs["http"] + wafPath, proc: naive}
	ghWAF := target{name: "gatehouse-waf-p1", proxy: "gatehouse", proto: "http", url: "http://" + ghHTTP + wafPath, proc: gp}
	ghWAFNaive := ghWAF
	ghWAFNaive.name = "gatehouse-waf-p1-vs-naive"
	pairs = append(pairs, pairing{bareWAF, ghWAF}, pairing{naiveWAF, ghWAFNaive})
	pairs = append(pairs, hygienePairs(bareHTTP, ghHTTP, gp)...)
	if auth != nil {
		// Each auth target's bare windows send the same credential header
		// to the same bare proxy, which passes it through unread (as
		// Gatehouse does after checking it): both sides move the same bytes
		// to the upstream, and the ratio is what checking costs. A baseline
		// without the ~700-byte token would charge Gatehouse for the size
		// of the request.
		keyCred := func() (header, error) { return header{"X-API-Key", auth.apiKey}, nil }
		jwtCred := func() (header, error) {
			tok, err := auth.bearer()
			return header{"Authorization", "Bearer " + tok}, err
		}
		bareKey, bareJWT := bareHTTP, bareHTTP
		bareKey.name, bareKey.cred = "bare-http+apikey", keyCred
		bareJWT.name, bareJWT.cred = "bare-http+jwt", jwtCred
		pairs = append(pairs,
			pairing{bareKey, target{name: "gatehouse-apikey", proxy: "gatehouse", proto: "http",
				url: "http://" + ghHTTP + apiKeyBasePath + benchOpPath, proc: gp, cred: keyCred,
				otherScope: func() (header, error) { return header{"X-API-Key", auth.otherKey}, nil }}},
			pairing{bareJWT, target{name: "gatehouse-jwt", proxy: "gatehouse", proto: "http",
				url: "http://" + ghHTTP + jwtBasePath + benchOpPath, proc: gp, cred: jwtCred,
				otherScope: func() (header, error) {
					tok, _, err := auth.mint(otherScope)
					return header{"Authorization", "Bearer " + tok}, err
				}}})
	}
	// Rate limits on, high enough that nothing is refused: the cost of a
	// decision (and its headers) per request, by client IP.
	bareRL := bareHTTP
	bareRL.name = "bare-http+rl-local"
	pairs = append(pairs, pairing{bareRL, target{name: "gatehouse-ratelimit-local", proxy: "gatehouse", proto: "http",
		url: "http://" + ghHTTP + rateLimitBasePath + benchOpPath, proc: gp, rateLimited: true}})
	if gpRedis != nil {
		bareRD := bareHTTP
		bareRD.name = "bare-http+rl-redis"
		pairs = append(pairs, pairing{bareRD, target{name: "gatehouse-ratelimit-redis", proxy: "gatehouse", proto: "http",
			url: "http://" + rdHTTP + rateLimitBasePath + benchOpPath, proc: gpRedis, rateLimited: true,
			metrics: "http://" + rdAdmin + "/metrics"}})
	}
	for _, t := range auditTargets {
		b := bareHTTP
		b.name = "bare-http+" + t.name
		pairs = append(pairs, pairing{b, t})
	}
	if o.Only != nil {
		kept := pairs[:0]
		for _, p := range pairs {
			if o.Only.MatchString(p.gh.name) {
				kept = append(kept, p)
			}
		}
		if len(kept) == 0 {
			return nil, fmt.Errorf("-only %q matches no target", o.Only)
		}
		pairs = kept
	}
	rep = &Report{Settings: Settings{
		LoadGen: loadgen, Connections: o.Connections, Threads: o.Threads, Rounds: o.Rounds,
		DurationSeconds: o.Duration.Seconds(), WarmupSeconds: max(o.Warmup, 0).Seconds(),
		NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(), Path: benchPath, BodyBytes: len(UpstreamBody),
		Auth: auth != nil,
	}}
	probed := map[string]bool{}
	for _, p := range pairs {
		for _, t := range []target{p.bare, p.gh} {
			if probed[t.name] {
				continue
			}
			probed[t.name] = true
			hdrs, err := t.headers()
			if err != nil {
				return nil, err
			}
			probeErr := error(nil)
			if t.method != "" || t.check != nil || len(t.extra) > 0 {
				probeErr = probeRequest(ctx, t, roots, hdrs)
			} else {
				probeErr = probe(ctx, t.url, roots, hdrs)
			}
			if err := probeErr; err != nil {
				return nil, fmt.Errorf("%s does not answer 200 with the upstream's body, so there is nothing to measure: %w\n%s",
					t.name, err, t.proc.logTail(10))
			}
			if t.rateLimited {
				if err := probeRateLimited(ctx, t.url); err != nil {
					return nil, fmt.Errorf("%s: %w", t.name, err)
				}
			}
			if t.otherScope == nil {
				continue // not a Gatehouse auth target
			}
			// Without its credential the same request must be refused, or
			// the target measures nothing an unauthenticated one does not.
			status, challenge, err := probeStatus(ctx, t.url, roots, nil)
			if err != nil {
				return nil, fmt.Errorf("%s without a credential: %w", t.name, err)
			}
			if status != http.StatusUnauthorized || challenge == "" {
				return nil, fmt.Errorf("%s answers %d (WWW-Authenticate %q) without a credential, want 401 with a challenge: auth is not on",
					t.name, status, challenge)
			}
			// And a credential without the required scope gets 403: the
			// scope check is on the measured path too.
			other, err := t.otherScope()
			if err != nil {
				return nil, err
			}
			scopeStatus, _, err := probeStatus(ctx, t.url, roots, []header{other})
			if err != nil {
				return nil, fmt.Errorf("%s with a credential lacking %s: %w", t.name, benchScope, err)
			}
			if scopeStatus != http.StatusForbidden {
				return nil, fmt.Errorf("%s answers %d to a credential lacking scope %s, want 403: the scope check is not on",
					t.name, scopeStatus, benchScope)
			}
			rep.AuthProbes = append(rep.AuthProbes, AuthProbe{Target: t.name, Header: hdrs[0].Name,
				WithStatus: http.StatusOK, WithoutStatus: status, Challenge: challenge, OtherScopeStatus: scopeStatus})
		}
	}
	if loadgen == "wrk" {
		rep.Settings.DurationSeconds = float64(max(int((o.Duration+time.Second-1)/time.Second), 1))
	}
	fmt.Fprintf(o.Log, "gatehouse-bench: %s, %d connections, %d rounds × %s per target (+%s warmup each)\n",
		loadgen, o.Connections, o.Rounds, o.Duration, max(o.Warmup, 0))

	drive := func(t target, d time.Duration) (loadResult, error) {
		hdrs, err := t.headers()
		if err != nil {
			return loadResult{}, err
		}
		s := loadSpec{URL: t.url, Connections: o.Connections, Threads: o.Threads, Duration: d, RootCAs: roots,
			Headers: append(append([]header(nil), t.extra...), hdrs...), Method: t.method, Body: t.body}
		if loadgen == "wrk" {
			return runWrk(ctx, wrkPath, s)
		}
		return runBuiltin(ctx, s), ctx.Err()
	}
	for round := 1; round <= o.Rounds; round++ {
		for _, t := range roundOrder(pairs, round) {
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
			mURL := metricsURL
			if t.metrics != "" {
				mURL = t.metrics
			}
			if t.proxy == "gatehouse" {
				if ghBefore, err = scrapeGatehouse(ctx, mURL); err != nil {
					return nil, fmt.Errorf("read gatehouse metrics: %w", err)
				}
			}
			ours := []int{os.Getpid(), up.pid(), bare.pid(), gp.pid(), naive.pid()}
			if gpRedis != nil {
				ours = append(ours, gpRedis.pid())
			}
			for _, at := range auditTargets {
				ours = append(ours, at.proc.pid())
			}
			before := snapCPU(ours, t.proc.pid())
			res, err := drive(t, o.Duration)
			if err != nil {
				return nil, err
			}
			after := snapCPU(ours, t.proc.pid())
			r := RunResult{
				Round: round, Target: t.name, Proxy: t.proxy, Protocol: t.proto, Pair: t.pair,
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
				ghAfter, err := scrapeGatehouse(ctx, mURL)
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
			fmt.Fprintf(o.Log, "  round %d/%d  %-18s %8.0f req/s  p50 %6.3fms  p99 %7.3fms  cpu %5.1fµs/req  other load %4.1f%%  %d requests, %d errors, %d non-200\n",
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

// roundOrder interleaves the targets: each Gatehouse window sits next to
// the bare window it is paired with, and which side goes first alternates
// per round (ABBA), so a slow drift (thermal, a background job) does not
// favour one side. Every window is tagged with its pair's Gatehouse target.
func roundOrder(ps []pairing, round int) []target {
	out := make([]target, 0, 2*len(ps))
	for _, p := range ps {
		a, b := p.bare, p.gh
		a.pair, b.pair = p.gh.name, p.gh.name
		if round%2 == 0 {
			a, b = b, a
		}
		out = append(out, a, b)
	}
	return out
}

// headers returns the credential header to send, if any.
func (t target) headers() ([]header, error) {
	if t.cred == nil {
		return nil, nil
	}
	h, err := t.cred()
	if err != nil {
		return nil, fmt.Errorf("%s credential: %w", t.name, err)
	}
	return []header{h}, nil
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

func writeGatehouseConfig(dir, upstream, httpAddr, httpsAddr, adminAddr, cert, key string, auth *authSetup, redisURL string) (string, error) {
	spec := filepath.Join(dir, "spec.yaml")
	if err := os.WriteFile(spec, []byte(benchSpec), 0o600); err != nil {
		return "", err
	}
	// Under /bench the operation is public: the pipeline as it stands,
	// without credentials to verify. The auth APIs (auth != nil) follow.
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
	cfg += wafAPIConfig(spec, upstream)
	cfg += fmt.Sprintf(`  - name: ratelimited
    version: v1
    owner: {team: bench}
    spec: %q
    upstream: %s
    route: {base_path: %s}
    policies:
      - {operation: "*", public: true}
    limits:
      - {per: ip, rate: 1000000000/s}
`, spec, upstream, rateLimitBasePath)
	hy, err := hygieneConfigAPIs(dir, upstream)
	if err != nil {
		return "", err
	}
	cfg += hy
	if auth != nil {
		cfg += auth.configAPIs(spec, upstream) + auth.configSections()
	}
	if redisURL != "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		// A generous decision timeout: this measures a healthy Redis, and on
		// a shared machine a stray 100 ms scheduling delay would otherwise
		// trip the failure policy (tested elsewhere) and show up as 503s.
		cfg += fmt.Sprintf("redis: %q\nlimits: {redis_key_prefix: \"gh-bench-%x:\", redis_timeout: 1s}\n", redisURL, b)
	}
	file := filepath.Join(dir, "gatehouse.yaml")
	return file, os.WriteFile(file, []byte(cfg), 0o600)
}

// rateLimitBasePath is the API with a rate limit on.
const rateLimitBasePath = "/rl"

// probeRateLimited checks the target answers with the RateLimit headers:
// the limit is on the measured path.
func probeRateLimited(ctx context.Context, url string) error {
	client := probeClient(nil)
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("RateLimit-Policy") == "" || resp.Header.Get("RateLimit") == "" {
		return fmt.Errorf("GET %s: status %d without RateLimit headers: the rate limit is not on", url, resp.StatusCode)
	}
	return nil
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

// probeClient is a client for one-off checks: trusts roots, follows no
// redirect.
func probeClient(roots *x509.CertPool) *http.Client {
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// get does one GET with hdrs and returns the status, the WWW-Authenticate
// challenge and (the first 64 KiB of) the body.
func get(ctx context.Context, client *http.Client, url string, hdrs []header) (int, string, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", nil, err
	}
	for _, h := range hdrs {
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body, err
}

// probeAttempts bounds probe's retries, 200 ms apart: connection errors
// and 503 (a JWT issuer whose keys are still being fetched) are retried.
const probeAttempts = 25

// probe checks that a target answers 200 with the upstream's exact body.
func probe(ctx context.Context, url string, roots *x509.CertPool, hdrs []header) error {
	client := probeClient(roots)
	defer client.CloseIdleConnections()
	var last error
	for range probeAttempts {
		status, _, body, err := get(ctx, client, url, hdrs)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			last = err
		case status == http.StatusServiceUnavailable:
			last = fmt.Errorf("status %d: %s", status, strings.TrimSpace(string(body)))
		case status != http.StatusOK:
			return fmt.Errorf("GET %s: status %d: %s", url, status, strings.TrimSpace(string(body)))
		case string(body) != UpstreamBody:
			return fmt.Errorf("GET %s: body is not the upstream's: %.200s", url, body)
		default:
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("GET %s: %w", url, last)
}

// probeStatus returns the status and challenge a target answers with hdrs.
func probeStatus(ctx context.Context, url string, roots *x509.CertPool, hdrs []header) (int, string, error) {
	client := probeClient(roots)
	defer client.CloseIdleConnections()
	status, challenge, _, err := get(ctx, client, url, hdrs)
	return status, challenge, err
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
