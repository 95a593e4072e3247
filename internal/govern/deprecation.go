// Package govern keeps the governance view of live traffic: who still calls
// deprecated API versions, and the alerts that raises as a sunset nears.
package govern

import (
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Caller identifies one consumer of one API version.
type Caller struct {
	API      string `json:"api"`
	Version  string `json:"version"`
	Consumer string `json:"consumer"`
	Partner  string `json:"partner,omitempty"`
}

// Usage is what the tracker knows about a caller of a deprecated version.
type Usage struct {
	Caller
	Calls     int64     `json:"calls"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Sunset is the version's sunset, zero when none is set.
	Sunset time.Time `json:"sunset,omitzero"`
}

// TrackerOptions tune a Tracker.
type TrackerOptions struct {
	// AlertWindow: a partner calling a version whose sunset is this close
	// raises an alert (default 30 days).
	AlertWindow time.Duration
	// AlertEvery re-raises the alert for the same partner and version at
	// most this often (default 24 h).
	AlertEvery time.Duration
	// MaxCallers bounds the table (default 10,000); callers beyond it are
	// counted in the metric only.
	MaxCallers int
}

// maxPartnerLabels bounds the metric's partner label: partner names come
// from verified credentials, but an IdP claim could still carry many.
const maxPartnerLabels = 1000

// Tracker counts calls to deprecated versions per consumer and partner.
// It is safe for concurrent use and bounded in memory.
type Tracker struct {
	opts TrackerOptions
	log  *slog.Logger

	calls  *prometheus.CounterVec
	alerts *prometheus.CounterVec

	onAlert atomic.Pointer[func(c Caller, sunset time.Time, daysLeft int)]

	mu       sync.Mutex
	usage    map[Caller]*Usage
	dropped  int64
	alerted  map[Caller]time.Time // key has Consumer empty: per partner
	partners map[string]struct{}
}

// NewTracker registers its collectors on reg (nil: not registered).
func NewTracker(reg prometheus.Registerer, log *slog.Logger, o TrackerOptions) *Tracker {
	if o.AlertWindow <= 0 {
		o.AlertWindow = 30 * 24 * time.Hour
	}
	if o.AlertEvery <= 0 {
		o.AlertEvery = 24 * time.Hour
	}
	if o.MaxCallers <= 0 {
		o.MaxCallers = 10_000
	}
	t := &Tracker{
		opts: o,
		log:  log,
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_deprecated_calls_total",
			Help: "Calls to deprecated API versions, by API, version and partner (\"\" for consumers without one).",
		}, []string{"api", "version", "partner"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_sunset_alerts_total",
			Help: "Alerts raised because a partner still calls an API version close to its sunset.",
		}, []string{"api", "version", "partner"}),
		usage:    map[Caller]*Usage{},
		alerted:  map[Caller]time.Time{},
		partners: map[string]struct{}{},
	}
	if reg != nil {
		reg.MustRegister(t.calls, t.alerts)
	}
	return t
}

// SetOnAlert hands every sunset alert to fn as well (the alert manager),
// in its own goroutine: alerts are rare and fn may write to the store.
func (t *Tracker) SetOnAlert(fn func(c Caller, sunset time.Time, daysLeft int)) {
	t.onAlert.Store(&fn)
}

// SetAlertWindow changes the alert window (config reload).
func (t *Tracker) SetAlertWindow(d time.Duration) {
	if d <= 0 {
		return
	}
	t.mu.Lock()
	t.opts.AlertWindow = d
	t.mu.Unlock()
}

// Observe records one call to a deprecated version at now. sunset is the
// version's sunset (zero when none).
func (t *Tracker) Observe(c Caller, sunset, now time.Time) {
	t.mu.Lock()
	label := c.Partner
	if _, ok := t.partners[label]; !ok {
		if len(t.partners) >= maxPartnerLabels {
			label = "other"
		} else {
			t.partners[label] = struct{}{}
		}
	}
	u := t.usage[c]
	if u == nil && len(t.usage) < t.opts.MaxCallers {
		u = &Usage{Caller: c, FirstSeen: now}
		t.usage[c] = u
	}
	if u != nil {
		u.Calls++
		u.LastSeen = now
		u.Sunset = sunset
	} else {
		t.dropped++
	}
	alert := false
	if c.Partner != "" && !sunset.IsZero() && sunset.Sub(now) <= t.opts.AlertWindow {
		key := Caller{API: c.API, Version: c.Version, Partner: c.Partner}
		if last, ok := t.alerted[key]; !ok || now.Sub(last) >= t.opts.AlertEvery {
			if ok || len(t.alerted) < t.opts.MaxCallers {
				t.alerted[key] = now
				alert = true
			}
		}
	}
	t.mu.Unlock()

	t.calls.WithLabelValues(c.API, c.Version, label).Inc()
	if alert {
		t.alerts.WithLabelValues(c.API, c.Version, label).Inc()
		days := int(sunset.Sub(now).Hours() / 24)
		t.log.Warn("partner still calls a deprecated API version close to its sunset",
			"alert", "sunset_approaching", "api", c.API, "version", c.Version, "partner", c.Partner,
			"consumer", c.Consumer, "sunset", sunset.Format(time.RFC3339), "days_left", days)
		if fn := t.onAlert.Load(); fn != nil {
			go (*fn)(c, sunset, days)
		}
	}
}

// Usage lists callers of deprecated versions, most recent first.
func (t *Tracker) Usage() []Usage {
	t.mu.Lock()
	out := make([]Usage, 0, len(t.usage))
	for _, u := range t.usage {
		out = append(out, *u)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LastSeen.Equal(out[j].LastSeen) {
			return out[i].LastSeen.After(out[j].LastSeen)
		}
		a, b := out[i].Caller, out[j].Caller
		return a.API+a.Version+a.Partner+a.Consumer < b.API+b.Version+b.Partner+b.Consumer
	})
	return out
}

// Dropped is how many calls found the table full.
func (t *Tracker) Dropped() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dropped
}
