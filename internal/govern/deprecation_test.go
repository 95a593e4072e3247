package govern

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestTrackerCountsAndAlerts(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	tr := NewTracker(reg, slog.New(slog.NewTextHandler(&logs, nil)), TrackerOptions{AlertWindow: 30 * 24 * time.Hour})
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	far := now.AddDate(1, 0, 0)
	near := now.AddDate(0, 0, 10)

	acme := Caller{API: "orders", Version: "v1", Consumer: "acme-billing", Partner: "acme"}
	solo := Caller{API: "orders", Version: "v1", Consumer: "solo-app"}
	// Far from the sunset: counted, no alert.
	tr.Observe(acme, far, now)
	tr.Observe(acme, far, now.Add(time.Minute))
	tr.Observe(solo, near, now) // no partner: counted, never a partner alert
	if n := sum(tr.alerts); n != 0 {
		t.Fatalf("alerts far from sunset: %v", n)
	}
	// Near the sunset: one alert, deduplicated for a day.
	for i := range 5 {
		tr.Observe(acme, near, now.Add(time.Duration(i)*time.Hour))
	}
	if n := value(tr.alerts.WithLabelValues("orders", "v1", "acme")); n != 1 {
		t.Errorf("alerts near sunset = %v, want 1 (deduplicated)", n)
	}
	tr.Observe(acme, near, now.Add(25*time.Hour))
	if n := value(tr.alerts.WithLabelValues("orders", "v1", "acme")); n != 2 {
		t.Errorf("alerts a day later = %v, want 2", n)
	}
	if !strings.Contains(logs.String(), "alert=sunset_approaching") || !strings.Contains(logs.String(), "partner=acme") {
		t.Errorf("alert not logged: %s", logs.String())
	}
	if n := value(tr.calls.WithLabelValues("orders", "v1", "acme")); n != 8 {
		t.Errorf("acme calls metric = %v, want 8", n)
	}
	us := tr.Usage()
	if len(us) != 2 || us[0].Caller != acme || us[0].Calls != 8 || us[1].Calls != 1 || !us[0].FirstSeen.Equal(now) {
		t.Errorf("usage = %+v", us)
	}
}

// TestTrackerBounded: a flood of distinct consumers (say, from an IdP that
// mints a client per session) cannot grow the table or the metric without
// bound.
func TestTrackerBounded(t *testing.T) {
	tr := NewTracker(prometheus.NewRegistry(), slog.New(slog.DiscardHandler), TrackerOptions{MaxCallers: 100})
	now := time.Now()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				c := Caller{API: "orders", Version: "v1", Consumer: string(rune('a'+w)) + strings.Repeat("x", i%7) + string(rune(i)), Partner: "p" + string(rune(i))}
				tr.Observe(c, now.Add(time.Hour), now)
			}
		}()
	}
	wg.Wait()
	if n := len(tr.Usage()); n != 100 {
		t.Errorf("table holds %d callers, want the cap 100", n)
	}
	if tr.Dropped() == 0 {
		t.Error("overflow not counted")
	}
	if n := count(tr.calls); n > maxPartnerLabels+1 {
		t.Errorf("metric has %d series, want at most %d", n, maxPartnerLabels+1)
	}
}

func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func collect(v *prometheus.CounterVec) []prometheus.Metric {
	ch := make(chan prometheus.Metric, 4096)
	v.Collect(ch)
	close(ch)
	var out []prometheus.Metric
	for m := range ch {
		out = append(out, m)
	}
	return out
}

func sum(v *prometheus.CounterVec) float64 {
	total := 0.0
	for _, m := range collect(v) {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			panic(err)
		}
		total += d.GetCounter().GetValue()
	}
	return total
}

func count(v *prometheus.CounterVec) int { return len(collect(v)) }
