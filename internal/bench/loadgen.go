package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// loadSpec says what to drive and how hard.
type loadSpec struct {
	URL         string
	Connections int
	Threads     int // wrk only
	Duration    time.Duration
	RootCAs     *x509.CertPool // trusted for https targets (the built-in generator verifies)
	// Headers are sent with every request (a credential for the auth
	// targets), in order.
	Headers []header
	// Method (GET when empty) and Body are the request's.
	Method, Body string
}

// header is one request header field.
type header struct{ Name, Value string }

// loadResult is what one measured run produced.
type loadResult struct {
	Requests int64         // completed responses (any status)
	Non200   int64         // responses that were not 200 (wrk: not 2xx/3xx)
	Errors   int64         // transport errors, timeouts
	Elapsed  time.Duration // the measured window
	RPS      float64
	P50, P99 time.Duration
	// Problems are sample error messages and unexpected statuses.
	Problems []string
	// GenCPU is the CPU time a separate load-generator process used (wrk);
	// 0 for the built-in one, which runs in the harness's own process.
	GenCPU time.Duration
}

// maxRequestsPerConn bounds the built-in generator's loop by count as well
// as by time (far above anything reachable in a benchmark window).
const maxRequestsPerConn = 10_000_000

// runBuiltin is the fallback load generator: Connections workers, each with
// its own keep-alive HTTP/1.1 connection (the same protocol wrk speaks),
// requesting URL back to back for Duration. Latencies go into a histogram
// per worker, merged at the end.
//
// At the end of the window no new request starts, but those in flight
// finish: cancelling them would make the proxies log client disconnects
// (499) that are not failures, and muddle Gatehouse's own counters, which
// the harness checks. A hard deadline still bounds every request.
func runBuiltin(ctx context.Context, s loadSpec) loadResult {
	ctx, cancel := context.WithTimeout(ctx, s.Duration+15*time.Second)
	defer cancel()
	deadline := time.Now().Add(s.Duration)
	type workerOut struct {
		h                        histogram
		requests, non200, errors int64
		statuses                 map[int]int64
		errs                     []string
	}
	outs := make([]*workerOut, s.Connections)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range outs {
		o := &workerOut{statuses: map[int]int64{}}
		outs[i] = o
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{
				Proxy:                 nil,
				DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
				TLSClientConfig:       &tls.Config{RootCAs: s.RootCAs},
				TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1, as wrk
				MaxIdleConnsPerHost:   1,
				MaxConnsPerHost:       1,
				DisableCompression:    true,
				ResponseHeaderTimeout: 10 * time.Second,
			}
			defer tr.CloseIdleConnections()
			method := s.Method
			if method == "" {
				method = http.MethodGet
			}
			req, err := http.NewRequestWithContext(ctx, method, s.URL, nil)
			if err != nil {
				o.errors++
				o.errs = append(o.errs, err.Error())
				return
			}
			for _, h := range s.Headers {
				req.Header.Add(h.Name, h.Value)
			}
			for n := 0; n < maxRequestsPerConn && time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				if s.Body != "" {
					req.Body, req.ContentLength = io.NopCloser(strings.NewReader(s.Body)), int64(len(s.Body))
				}
				t0 := time.Now()
				// RoundTrip, not http.Client: no redirect following (a 3xx
				// must count as a failure) and no per-request timer.
				resp, err := tr.RoundTrip(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				d := time.Since(t0)
				if ctx.Err() != nil {
					break // interrupted, or the hard deadline: stop quietly
				}
				if err != nil {
					o.errors++
					if len(o.errs) < 3 {
						o.errs = append(o.errs, err.Error())
					}
					// Don't spin on a dead target; the window bounds this.
					time.Sleep(10 * time.Millisecond)
					continue
				}
				o.requests++
				if resp.StatusCode != http.StatusOK {
					o.non200++
					o.statuses[resp.StatusCode]++
				}
				o.h.record(d)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start) // the window plus the last requests' completion

	var h histogram
	res := loadResult{Elapsed: elapsed}
	statuses := map[int]int64{}
	seen := map[string]bool{}
	for _, o := range outs {
		h.merge(&o.h)
		res.Requests += o.requests
		res.Non200 += o.non200
		res.Errors += o.errors
		for c, n := range o.statuses {
			statuses[c] += n
		}
		for _, e := range o.errs {
			if !seen[e] && len(res.Problems) < 5 {
				seen[e] = true
				res.Problems = append(res.Problems, "error: "+e)
			}
		}
	}
	codes := make([]int, 0, len(statuses))
	for c := range statuses {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	for _, c := range codes {
		res.Problems = append(res.Problems, fmt.Sprintf("status %d: %d responses", c, statuses[c]))
	}
	if elapsed > 0 {
		res.RPS = float64(res.Requests) / elapsed.Seconds()
	}
	res.P50, res.P99 = h.quantile(0.50), h.quantile(0.99)
	return res
}
