package limit

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// batcher coalesces concurrent decisions into Redis pipelines: while one
// pipeline is in flight, the decisions that arrive wait, and the first of
// them then sends them all at once. Under load that is one write, one read
// and one Redis wake-up for many decisions instead of one each, which on a
// machine Redis shares with the gateway is most of what a decision costs.
// An idle gateway sends each decision alone, with no added wait.
//
// No goroutine runs it: the caller whose decision finds no pipeline in
// flight leads, runs one pipeline (its own decision and everything queued
// behind it) and hands the lead to the next waiter, so no caller serves
// others' decisions for longer than one round trip.
type batcher struct {
	r    *Redis
	pipe func() redis.Pipeliner

	mu      sync.Mutex
	busy    bool
	pending []*call

	pipelines, decisions atomic.Int64 // for tests and stats
}

// maxBatch bounds one pipeline; more waiters go in the next one.
const maxBatch = 128

type call struct {
	keys []string
	args []any
	out  []int64
	err  error
	lead bool
	done chan struct{} // one token: the result is in, or lead
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// run decides c, in a pipeline with whatever else is waiting.
func (b *batcher) run(c *call) {
	b.mu.Lock()
	b.pending = append(b.pending, c)
	if b.busy {
		b.mu.Unlock()
		<-c.done
		if !c.lead {
			return
		}
		c.lead = false
		b.mu.Lock()
	}
	b.busy = true
	n := min(len(b.pending), maxBatch)
	batch := make([]*call, n)
	copy(batch, b.pending)
	b.pending = append(b.pending[:0], b.pending[n:]...)
	b.mu.Unlock()

	b.exec(batch)

	b.mu.Lock()
	if len(b.pending) > 0 {
		next := b.pending[0]
		next.lead = true
		next.done <- struct{}{}
	} else {
		b.busy = false
	}
	b.mu.Unlock()
	for _, o := range batch {
		if o != c {
			o.done <- struct{}{}
		}
	}
}

// exec runs one pipeline of EVALSHA, loading the script once if Redis has
// lost it (a restart or SCRIPT FLUSH).
func (b *batcher) exec(batch []*call) {
	b.pipelines.Add(1)
	b.decisions.Add(int64(len(batch)))
	ctx, cancel := context.WithTimeout(context.Background(), b.r.timeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		p := b.pipe()
		cmds := make([]*redis.Cmd, len(batch))
		for i, c := range batch {
			cmds[i] = p.EvalSha(ctx, b.r.script.Hash(), c.keys, c.args...)
		}
		_, _ = p.Exec(ctx)
		noScript := false
		for i, c := range batch {
			c.out, c.err = cmds[i].Int64Slice()
			if c.err != nil && strings.HasPrefix(c.err.Error(), "NOSCRIPT") {
				noScript = true
			}
		}
		if !noScript || attempt > 0 {
			return
		}
		if err := b.r.script.Load(ctx, b.r.client).Err(); err != nil {
			for _, c := range batch {
				c.err = err
			}
			return
		}
	}
}
