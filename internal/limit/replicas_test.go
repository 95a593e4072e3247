package limit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The cross-replica test re-executes this test binary as three child
// processes, each a "gateway replica" with its own Redis client, sharing
// one Redis and the same limit keys.
const (
	replicaEnv       = "GATEHOUSE_LIMIT_REPLICA"
	replicaResultTag = "REPLICA-RESULT "
	replicaWorkers   = 4
	replicaMaxCalls  = 200_000 // per replica: the load is bounded in count as well as time
)

type replicaLimit struct {
	Key  string
	Rule Rule
}

type replicaParams struct {
	Prefix   string
	Limits   []replicaLimit
	Start    time.Time // every replica begins at this instant
	Duration time.Duration
}

// replicaCall is one decision as Redis made it: limit index, Redis time
// (µs) and the answer.
type replicaCall struct {
	L       int   `json:"l"`
	Now     int64 `json:"t"`
	Allowed bool  `json:"a"`
}

type replicaReport struct {
	Calls  []replicaCall
	Errors int
	Late   time.Duration // how late this replica started
}

// TestReplicaProcess is the child side; it runs only when re-executed.
func TestReplicaProcess(t *testing.T) {
	raw := os.Getenv(replicaEnv)
	if raw == "" {
		t.Skip("helper process of TestCrossReplicaAccuracy; runs only when re-executed by it")
	}
	var p replicaParams
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		t.Fatal(err)
	}
	r, err := NewRedis(newRedisClient(t, "", testTimeout), p.Prefix, RedisOptions{Timeout: testTimeout})
	if err != nil {
		t.Fatal(err)
	}
	// Warm the pool so the first calls do not pay for dials.
	var warm sync.WaitGroup
	for range replicaWorkers {
		warm.Go(func() { r.Allow(context.Background(), "warmup", Rule{Rate: 1, Period: time.Second}) })
	}
	warm.Wait()
	time.Sleep(time.Until(p.Start))
	rep := replicaReport{Late: time.Since(p.Start)}
	end := p.Start.Add(p.Duration)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range replicaWorkers {
		wg.Go(func() {
			var calls []replicaCall
			errs := 0
			res := make([]Result, 1)
			for i := w; len(calls)+errs < replicaMaxCalls/replicaWorkers && time.Now().Before(end); i++ {
				l := i % len(p.Limits)
				ok, now, err := r.allowMulti(context.Background(),
					[]Check{{Key: p.Limits[l].Key, Rule: p.Limits[l].Rule}}, res)
				if err != nil {
					errs++
					continue
				}
				calls = append(calls, replicaCall{L: l, Now: now, Allowed: ok})
			}
			mu.Lock()
			rep.Calls = append(rep.Calls, calls...)
			rep.Errors += errs
			mu.Unlock()
		})
	}
	wg.Wait()
	out, _ := json.Marshal(rep)
	fmt.Printf("%s%s\n", replicaResultTag, out)
}

// TestCrossReplicaAccuracy: three processes drive two limits through one
// Redis for 2 s, alternating between them:
//
//   - A: 200/s, burst 1 (the strictest: any instant without demand is
//     budget lost for good, so the nominal count depends on the load's
//     continuity, not only on the limiter);
//   - B: 200/s, burst 20 (absorbs the load's own gaps up to 100 ms).
//
// Proven for both: replaying every decision, in Redis time order, through
// the exact GCRA arithmetic gives the very same answers (zero deviation
// from the algorithm), and no 1-second window of Redis time admits more
// than rate + burst. For B, the total is within ±2% of burst + rate × span.
func TestCrossReplicaAccuracy(t *testing.T) {
	redisURL(t)
	if os.Getenv(replicaEnv) != "" {
		t.Skip("inside a replica")
	}
	const replicas = 3
	p := replicaParams{
		Prefix: testPrefix(t),
		Limits: []replicaLimit{
			{Key: "consumer:a", Rule: Rule{Rate: 200, Period: time.Second, Burst: 1}},
			{Key: "consumer:b", Rule: Rule{Rate: 200, Period: time.Second, Burst: 20}},
		},
		Duration: 2 * time.Second,
		// Children need time to start (a -race binary on a loaded 2-core
		// machine); a late one joins late, which the span accounts for.
		Start: time.Now().Add(1500 * time.Millisecond),
	}
	raw, _ := json.Marshal(p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type child struct {
		cmd            *exec.Cmd
		stdout, stderr bytes.Buffer
	}
	children := make([]*child, replicas)
	for i := range children {
		c := &child{cmd: exec.CommandContext(ctx, os.Args[0], "-test.run=^TestReplicaProcess$", "-test.count=1", "-test.v")}
		c.cmd.Env = append(os.Environ(), replicaEnv+"="+string(raw))
		c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children[i] = c
	}
	var calls []replicaCall
	for i, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("replica %d: %v\nstdout:\n%s\nstderr:\n%s", i, err, c.stdout.String(), c.stderr.String())
		}
		rep, ok := parseReplicaReport(c.stdout.String())
		if !ok {
			t.Fatalf("replica %d printed no result:\n%s", i, c.stdout.String())
		}
		if rep.Errors > 0 {
			t.Errorf("replica %d: %d errors", i, rep.Errors)
		}
		admitted := 0
		for _, c := range rep.Calls {
			if c.Allowed {
				admitted++
			}
		}
		t.Logf("replica %d: %d calls, %d admitted, started %v late", i, len(rep.Calls), admitted, rep.Late)
		calls = append(calls, rep.Calls...)
	}
	slices.SortStableFunc(calls, func(a, b replicaCall) int { return int(a.Now - b.Now) })

	for l, lim := range p.Limits {
		var mine []replicaCall
		for _, c := range calls {
			if c.L == l {
				mine = append(mine, c)
			}
		}
		if len(mine) == 0 {
			t.Fatalf("limit %d: no calls", l)
		}
		g, _ := lim.Rule.gcra(time.Microsecond)

		// Replay: same arithmetic, same times. Calls at one microsecond
		// are compared as a group (their order within it is unknown).
		var tat int64
		mismatches, admitted := 0, 0
		var admittedAt []int64
		for i := 0; i < len(mine); {
			j := i
			gotN, wantN := 0, 0
			for ; j < len(mine) && mine[j].Now == mine[i].Now; j++ {
				var res Result
				tat, res = g.decide(tat, mine[j].Now)
				if res.Allowed {
					wantN++
				}
				if mine[j].Allowed {
					gotN++
					admittedAt = append(admittedAt, mine[j].Now)
				}
			}
			if gotN != wantN {
				mismatches++
			}
			admitted += gotN
			i = j
		}
		span := time.Duration(mine[len(mine)-1].Now-mine[0].Now) * time.Microsecond
		nominal := float64(lim.Rule.Burst) + span.Seconds()*float64(lim.Rule.Rate)/lim.Rule.Period.Seconds()
		dev := (float64(admitted) - nominal) / nominal
		busiest := 0
		for i := range admittedAt {
			j, _ := slices.BinarySearch(admittedAt, admittedAt[i]+int64(time.Second/time.Microsecond))
			busiest = max(busiest, j-i)
		}
		t.Logf("limit %s (%d/s burst %d): %d calls, %d admitted over %v of Redis time; "+
			"replay mismatches %d; nominal %.1f, deviation %+.2f%%; busiest 1s window %d",
			lim.Key, lim.Rule.Rate, lim.Rule.Burst, len(mine), admitted, span.Round(time.Millisecond),
			mismatches, nominal, 100*dev, busiest)
		if mismatches != 0 {
			t.Errorf("limit %s: %d decisions differ from exact GCRA", lim.Key, mismatches)
		}
		if busiest > lim.Rule.Rate+lim.Rule.Burst {
			t.Errorf("limit %s: a 1s window admitted %d, over %d", lim.Key, busiest, lim.Rule.Rate+lim.Rule.Burst)
		}
		if len(mine) < 5*admitted {
			t.Errorf("limit %s: %d calls for %d admitted: the load did not saturate the limit", lim.Key, len(mine), admitted)
		}
		if dev > 0.02 {
			t.Errorf("limit %s: admitted %d, over %.1f +2%%", lim.Key, admitted, nominal)
		}
		if lim.Rule.Burst > 1 && dev < -0.02 {
			t.Errorf("limit %s: admitted %d, want %.1f ±2%%", lim.Key, admitted, nominal)
		}
	}
}

func parseReplicaReport(out string) (replicaReport, bool) {
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), replicaResultTag); ok {
			var rep replicaReport
			if json.Unmarshal([]byte(rest), &rep) == nil {
				return rep, true
			}
		}
	}
	return replicaReport{}, false
}
