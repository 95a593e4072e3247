// Package detect runs streaming anomaly detectors over the gateway's
// request events and turns their findings into deduplicated alerts.
//
// The pipeline hands every finished request to Engine.Observe, which runs
// the detectors under one mutex (they keep plain maps) and passes findings
// to Run's goroutine through a bounded queue (when full a finding is
// dropped and counted, never blocking a request). Detectors judge by the
// event's own time, which makes a replay of recorded traffic deterministic:
// the tests replay synthetic attacks and benign traffic of the same length.
//
// Every per-key table is bounded (Options.MaxKeys); when one is full the
// least recently seen half is evicted, so a flood of distinct IPs costs a
// bounded amount of memory and, at worst, some missed detections for keys
// that were evicted.
package detect

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Event is one finished request as the detectors see it.
type Event struct {
	Time       time.Time
	Consumer   string
	Partner    string
	Credential string
	ClientIP   netip.Addr
	API        string
	Version    string
	Operation  string // empty when no route matched
	ObjectID   string // the first path parameter's value, if any
	Status     int
	Stage      string // pipeline stage that refused it, "" when allowed
	Reason     string
	BytesOut   int64
	Deprecated bool
}

// AuthFailure reports whether the gateway refused the caller's credential.
func (e *Event) AuthFailure() bool { return e.Stage == "authn" }

// Finding is what a detector reports; the Engine turns it into an alert.
type Finding struct {
	Detector string
	Severity string // low | medium | high | critical
	Subject  string // e.g. consumer:acme-billing, ip:203.0.113.9
	Summary  string
	Evidence map[string]any
	// Act names the subject an automatic response applies to.
	IP         netip.Addr
	Credential string
	At         time.Time
}

// Detector watches the event stream. Implementations are used by one
// goroutine only.
type Detector interface {
	Name() string
	Observe(e *Event, report func(Finding))
}

// Options tune the Engine.
type Options struct {
	// QueueSize bounds findings waiting for OnFinding (default 1024).
	QueueSize int
	// Detectors replaces the default set (tests).
	Detectors []Detector
	Log       *slog.Logger
	// OnFinding receives every finding: in Run's goroutine for events
	// given to Observe, synchronously for Process.
	OnFinding func(Finding)
}

// Engine runs the detectors. Observe runs them in the request's goroutine
// under a mutex held for a fraction of a microsecond: cheaper than waking
// a consumer goroutine for every request. Only findings, which are rare,
// cross to Run's goroutine, because OnFinding may write to the store.
type Engine struct {
	dets     []Detector
	reports  []func(Finding) // one per detector, built once: no closure per event
	findings chan Finding
	log      *slog.Logger
	onFind   func(Finding)
	dropped  atomic.Int64
	seen     atomic.Int64

	mu      sync.Mutex // guards the detectors' state and what follows
	cur     Event      // the event being processed (no copy escapes per call)
	pending []Finding
}

// NewEngine returns an engine; call Run to deliver Observe's findings.
func NewEngine(o Options) *Engine {
	if o.QueueSize <= 0 {
		o.QueueSize = 1024
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Detectors == nil {
		o.Detectors = Defaults(Thresholds{})
	}
	en := &Engine{dets: o.Detectors, findings: make(chan Finding, o.QueueSize), log: o.Log, onFind: o.OnFinding}
	for _, d := range en.dets {
		name := d.Name()
		en.reports = append(en.reports, func(f Finding) {
			if f.Detector == "" {
				f.Detector = name
			}
			if f.At.IsZero() {
				f.At = en.cur.Time
			}
			en.pending = append(en.pending, f)
		})
	}
	return en
}

// run processes e with en.mu held and returns the findings it raised,
// valid until the lock is released.
func (en *Engine) run(e *Event) []Finding {
	en.seen.Add(1)
	en.cur = *e
	en.pending = en.pending[:0]
	for i, d := range en.dets {
		d.Observe(&en.cur, en.reports[i])
	}
	return en.pending
}

// Observe runs the detectors on e and hands any finding to Run without
// blocking: when the findings queue is full the finding is dropped and
// counted.
func (en *Engine) Observe(e Event) {
	en.mu.Lock()
	for _, f := range en.run(&e) {
		select {
		case en.findings <- f:
		default:
			en.dropped.Add(1)
		}
	}
	en.mu.Unlock()
}

// Dropped is how many findings a full queue dropped.
func (en *Engine) Dropped() int64 { return en.dropped.Load() }

// Seen is how many events the detectors processed.
func (en *Engine) Seen() int64 { return en.seen.Load() }

// Run delivers Observe's findings to OnFinding until ctx is done.
func (en *Engine) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-en.findings:
			if en.onFind != nil {
				en.onFind(f)
			}
		}
	}
}

// Process runs every detector on e and delivers its findings to OnFinding
// before returning (replays and tests).
func (en *Engine) Process(e *Event) {
	en.mu.Lock()
	found := append([]Finding(nil), en.run(e)...)
	en.mu.Unlock()
	if en.onFind != nil {
		for _, f := range found {
			en.onFind(f)
		}
	}
}
