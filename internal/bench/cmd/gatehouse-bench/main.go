// Command gatehouse-bench compares Gatehouse with a bare
// httputil.ReverseProxy (see package bench). `make bench` runs it after
// building bin/gatehouse:
//
//	go run ./internal/bench/cmd/gatehouse-bench                 # wrk if installed
//	go run ./internal/bench/cmd/gatehouse-bench -loadgen builtin -rounds 3 -json
//	go run ./internal/bench/cmd/gatehouse-bench -auth=false      # no API-key/JWT rows
//
// Exit status: 0 when the run was valid (even if a target was missed,
// unless -strict), 1 when any measured request failed, a flag value is out
// of range or the run could not be completed, 2 for stray arguments, 130
// when interrupted.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/internal/bench"
)

func main() {
	// The same binary serves as the upstream and the bare proxy.
	bench.RunRoleFromEnv()

	var o bench.Options
	var asJSON, strict, auth, auditTargets bool
	flag.StringVar(&o.Gatehouse, "gatehouse", "bin/gatehouse", "gatehouse binary to benchmark")
	flag.IntVar(&o.Rounds, "rounds", 5, "interleaved rounds over the targets")
	flag.DurationVar(&o.Duration, "duration", 3*time.Second, "measured window per target and round (wrk rounds up to whole seconds)")
	flag.DurationVar(&o.Warmup, "warmup", time.Second, "unmeasured load before each window (0: none)")
	flag.IntVar(&o.Connections, "connections", 32, "concurrent keep-alive connections")
	flag.IntVar(&o.Threads, "threads", 2, "wrk threads")
	flag.StringVar(&o.LoadGen, "loadgen", "auto", "load generator: auto (wrk if installed), wrk, builtin")
	flag.BoolVar(&asJSON, "json", false, "print the report as JSON on stdout (progress still goes to stderr)")
	flag.BoolVar(&strict, "strict", false, "exit 1 when a performance target is missed")
	flag.BoolVar(&auth, "auth", true, "also measure API-key and JWT (RS256) authentication with a scope check")
	redisDefault := os.Getenv("GATEHOUSE_BENCH_REDIS")
	if redisDefault == "" {
		redisDefault = os.Getenv("GATEHOUSE_TEST_REDIS")
	}
	flag.StringVar(&o.Redis, "redis", redisDefault, "Redis URL for the gatehouse-ratelimit-redis target (default $GATEHOUSE_BENCH_REDIS or $GATEHOUSE_TEST_REDIS; empty: left out)")
	flag.BoolVar(&auditTargets, "audit", true, "also measure the audit trail in buffered and durable mode (own Gatehouse processes)")
	var only string
	flag.StringVar(&only, "only", "", "regexp: measure only the Gatehouse targets it matches (and their bare pairs)")
	flag.StringVar(&o.ProfileDir, "profile", "", "directory for a CPU profile of the main Gatehouse process (gatehouse.pprof)")
	flag.Parse()
	if only != "" {
		re, err := regexp.Compile(only)
		if err != nil {
			fmt.Fprintf(os.Stderr, "gatehouse-bench: -only: %v\n", err)
			os.Exit(2)
		}
		o.Only = re
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "gatehouse-bench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if o.Warmup == 0 {
		o.Warmup = -1 // an explicit -warmup 0 means none, not the default
	}
	o.Log = os.Stderr
	o.NoAuth = !auth
	o.NoAudit = !auditTargets

	// Ctrl-C or SIGTERM cancels the run; Run stops every child and removes
	// its temp dir before returning. A second Ctrl-C kills us outright, and
	// the children follow (their stdin closes; the kernel sends SIGTERM).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	rep, err := bench.Run(ctx, o)
	stop()
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "gatehouse-bench: interrupted; every process it started is stopped and its temp dir removed")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gatehouse-bench: %v\n", err)
		os.Exit(1)
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(os.Stderr, "gatehouse-bench: %v\n", err)
			os.Exit(1)
		}
	} else {
		rep.WriteTable(os.Stdout)
	}
	switch {
	case !rep.Valid:
		os.Exit(1)
	case strict && !rep.Met():
		os.Exit(1)
	}
}
