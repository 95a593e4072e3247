package discover

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// DefaultFlushInterval is how often observations are written to the store.
const DefaultFlushInterval = 30 * time.Second

// DefaultRetention keeps a year of history and then some, so orphan
// reports can look back a full year.
const DefaultRetention = 400 * 24 * time.Hour

// flushTimeout bounds one write to the store.
const flushTimeout = 10 * time.Second

// Flusher periodically moves an Observer's counts into the store. A failed
// write keeps the batch and retries it with the next one; what waits is
// bounded by the observer's template cap.
type Flusher struct {
	Observer *Observer
	// Bodies, when set, adds the sampled request body schemas.
	Bodies   *BodySampler
	Store    store.DiscoveryStore
	Interval time.Duration
	// Retention: endpoints not seen for this long are deleted from the
	// store (checked once a day; default DefaultRetention).
	Retention time.Duration
	Log       *slog.Logger

	mu       sync.Mutex
	pending  []store.DiscoveredEndpoint
	failures atomic.Int64
}

// Failures is the number of flushes the store refused.
func (f *Flusher) Failures() int64 { return f.failures.Load() }

// Run flushes every Interval until ctx ends, then once more.
func (f *Flusher) Run(ctx context.Context) {
	every := f.Interval
	if every <= 0 {
		every = DefaultFlushInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var lastPurge time.Time
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
			_ = f.Flush(fctx)
			cancel()
			return
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, flushTimeout)
			_ = f.Flush(fctx)
			if time.Since(lastPurge) > 24*time.Hour {
				lastPurge = time.Now()
				f.purge(fctx)
			}
			cancel()
		}
	}
}

// Flush writes what was observed since the last successful flush.
func (f *Flusher) Flush(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	batch := append(f.pending, f.Observer.Drain()...)
	f.pending = nil
	if len(batch) == 0 {
		return nil
	}
	if f.Bodies != nil {
		f.Bodies.Apply(batch)
	}
	if err := f.Store.UpsertDiscovery(ctx, batch); err != nil {
		if limit := f.Observer.maxTemplates(); len(batch) > limit {
			batch = batch[len(batch)-limit:] // the newest survive
		}
		f.pending = batch
		f.failures.Add(1)
		if f.Log != nil {
			f.Log.Warn("discovery flush failed; retrying with the next", "endpoints", len(batch), "error", err.Error())
		}
		return err
	}
	return nil
}

func (o *Observer) maxTemplates() int {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.opts.MaxTemplates
}

func (f *Flusher) purge(ctx context.Context) {
	keep := f.Retention
	if keep <= 0 {
		keep = DefaultRetention
	}
	if _, err := f.Store.PurgeDiscovery(ctx, time.Now().Add(-keep)); err != nil && f.Log != nil {
		f.Log.Warn("discovery purge failed", "error", err.Error())
	}
}
