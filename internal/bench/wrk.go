package bench

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runWrk drives the target with wrk and parses its --latency report.
func runWrk(ctx context.Context, wrk string, s loadSpec) (loadResult, error) {
	// wrk takes whole seconds.
	secs := max(int(math.Ceil(s.Duration.Seconds())), 1)
	threads := min(max(s.Threads, 1), s.Connections)
	args := []string{
		"-t" + strconv.Itoa(threads), "-c" + strconv.Itoa(s.Connections),
		"-d" + strconv.Itoa(secs) + "s", "--timeout", "5s", "--latency",
	}
	// shown is args for messages: header values are credentials.
	shown := slices.Clone(args)
	for _, h := range s.Headers {
		args = append(args, "-H", h.Name+": "+h.Value)
		shown = append(shown, "-H", h.Name+": [redacted]")
	}
	if s.Method != "" || s.Body != "" {
		script, err := wrkScript(s.Method, s.Body)
		if err != nil {
			return loadResult{}, err
		}
		defer os.Remove(script)
		args = append(args, "-s", script)
		shown = append(shown, "-s", script)
	}
	args = append(args, s.URL)
	shown = append(shown, s.URL)
	// A hung wrk must not hang the harness: it gets its window plus slack.
	wctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(wctx, wrk, args...)
	setProcAttrs(cmd)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGKILL) }
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return loadResult{}, ctx.Err()
		}
		return loadResult{}, fmt.Errorf("wrk %s: %v: %s%s", strings.Join(shown, " "), err, errb.String(), out.String())
	}
	res, err := parseWrk(out.String())
	if err != nil {
		return loadResult{}, fmt.Errorf("wrk output: %w\n%s", err, out.String())
	}
	res.GenCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return res, nil
}

var (
	wrkPercentile = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$`)
	wrkTotals     = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),`)
	wrkSocket     = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx     = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkRPS        = regexp.MustCompile(`(?m)^Requests/sec:\s+([\d.]+)`)
)

var wrkUnits = map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}

func wrkDuration(num, unit string) (time.Duration, error) {
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(f * float64(wrkUnits[unit])), nil
}

// parseWrk reads wrk 4's report. wrk counts responses outside 2xx/3xx as
// "Non-2xx or 3xx"; the harness's probes check that each target answers
// 200 with the upstream's body before any measured run.
func parseWrk(out string) (loadResult, error) {
	var r loadResult
	m := wrkTotals.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no request total")
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	var err error
	if r.Elapsed, err = wrkDuration(m[2], m[3]); err != nil {
		return r, err
	}
	if m := wrkRPS.FindStringSubmatch(out); m != nil {
		r.RPS, _ = strconv.ParseFloat(m[1], 64)
	} else if r.Elapsed > 0 {
		r.RPS = float64(r.Requests) / r.Elapsed.Seconds()
	}
	for _, m := range wrkPercentile.FindAllStringSubmatch(out, -1) {
		d, err := wrkDuration(m[2], m[3])
		if err != nil {
			return r, err
		}
		if m[1] == "50" {
			r.P50 = d
		} else {
			r.P99 = d
		}
	}
	if r.Requests > 0 && (r.P50 == 0 || r.P99 == 0) {
		return r, fmt.Errorf("no latency distribution (was --latency passed?)")
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		names := []string{"connect", "read", "write", "timeout"}
		for i, name := range names {
			n, _ := strconv.ParseInt(m[i+1], 10, 64)
			if n > 0 {
				r.Errors += n
				r.Problems = append(r.Problems, fmt.Sprintf("socket %s errors: %d", name, n))
			}
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.Non200, _ = strconv.ParseInt(m[1], 10, 64)
		if r.Non200 > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("non-2xx/3xx responses: %d", r.Non200))
		}
	}
	return r, nil
}

// wrkScript writes a Lua script setting wrk's method and body.
func wrkScript(method, body string) (string, error) {
	f, err := os.CreateTemp("", "gatehouse-bench-*.lua")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if method == "" {
		method = "GET"
	}
	_, err = fmt.Fprintf(f, "wrk.method = %q\nwrk.body = %q\n", method, body)
	return f.Name(), err
}
