// Package detect runs streaming anomaly detectors over the gateway's
// request events and turns their findings into deduplicated alerts.
//
// The pipeline hands every finished request to Engine.Observe, which only
// enqueues it (a bounded queue; when full the event is dropped and counted,
// never blocking a request). One goroutine runs every detector in event
// order, so detectors keep plain maps without locks. Detectors judge by the
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
	// QueueSize bounds events waiting for the detectors (default 8192).
	QueueSize int
	// Detectors replaces the default set (tests).
	Detectors []Detector
	Log       *slog.Logger
	// OnFinding receives every finding, in the engine goroutine.
	OnFinding func(Finding)
}

// Engine runs the detectors.
type Engine struct {
	dets    []Detector
	reports []func(Finding) // one per detector, built once: no closure per event
	at      time.Time       // the event being processed (under mu)
	queue   chan Event
	log     *slog.Logger
	onFind  func(Finding)
	dropped atomic.Int64
	seen    atomic.Int64
	mu      sync.Mutex // serialises Process (Run vs direct replay)
}

// NewEngine returns an engine; call Run to start consuming.
func NewEngine(o Options) *Engine {
	if o.QueueSize <= 0 {
		o.QueueSize = 8192
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Detectors == nil {
		o.Detectors = Defaults(Thresholds{})
	}
	en := &Engine{dets: o.Detectors, queue: make(chan Event, o.QueueSize), log: o.Log, onFind: o.OnFinding}
	for _, d := range en.dets {
		name := d.Name()
		en.reports = append(en.reports, func(f Finding) {
			if f.Detector == "" {
				f.Detector = name
			}
			if f.At.IsZero() {
				f.At = en.at
			}
			if en.onFind != nil {
				en.onFind(f)
			}
		})
	}
	return en
}

// Observe enqueues e without blocking; a full queue drops it.
func (en *Engine) Observe(e Event) {
	select {
	case en.queue <- e:
	default:
		en.dropped.Add(1)
	}
}

// Dropped is how many events a full queue dropped.
func (en *Engine) Dropped() int64 { return en.dropped.Load() }

// Seen is how many events the detectors processed.
func (en *Engine) Seen() int64 { return en.seen.Load() }

// Run consumes the queue until ctx is done.
func (en *Engine) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-en.queue:
			en.Process(&e)
		}
	}
}

// Process runs every detector on e synchronously (Run's loop; replays).
func (en *Engine) Process(e *Event) {
	en.mu.Lock()
	defer en.mu.Unlock()
	en.seen.Add(1)
	en.at = e.Time
	for i, d := range en.dets {
		d.Observe(e, en.reports[i])
	}
}
