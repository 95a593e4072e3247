package detect

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strconv"
	"testing"
	"time"
)

var day0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// testThresholds shortens the unusual-hours warm-up so a 3-day replay
// covers it; every other threshold is the default.
var testThresholds = Thresholds{HoursWarmup: 36 * time.Hour}

type consumerProfile struct {
	name, partner string
	network       string // /24 the consumer calls from
	perMinute     float64
	hours         [2]int // active from hours[0] to hours[1] UTC
	ops           []string
	bytes         int64
}

// benignProfiles are three well-behaved consumers: a partner app with
// business hours, a partner batch client around the clock, and an internal
// service without a partner.
var benignProfiles = []consumerProfile{
	{"acme-billing", "acme", "203.0.113", 8, [2]int{6, 20}, []string{"listOrders", "getOrder", "createOrder"}, 1500},
	{"globex-sync", "globex", "198.51.100", 5, [2]int{0, 24}, []string{"listOrders", "getOrder"}, 2500},
	{"reports", "", "192.0.2", 3, [2]int{0, 24}, []string{"listOrders", "getOrder"}, 4000},
}

// benign generates days of ordinary traffic: Poisson-like per-minute
// counts with ±30% noise, random (not sequential) object IDs, 0.5% 404s
// and an occasional mistyped key.
func benign(days int, seed uint64) []Event {
	r := rand.New(rand.NewPCG(seed, 7))
	var evs []Event
	for m := 0; m < days*24*60; m++ {
		t0 := day0.Add(time.Duration(m) * time.Minute)
		for _, p := range benignProfiles {
			if h := t0.Hour(); h < p.hours[0] || h >= p.hours[1] {
				continue
			}
			n := int(p.perMinute * (0.7 + 0.6*r.Float64()))
			for range n {
				e := Event{Time: t0.Add(time.Duration(r.Int64N(int64(time.Minute)))), Consumer: p.name, Partner: p.partner,
					Credential: "k-" + p.name, API: "orders", Version: "v1", Status: 200,
					ClientIP: netip.MustParseAddr(fmt.Sprintf("%s.%d", p.network, 10+r.IntN(5))),
					BytesOut: p.bytes/2 + r.Int64N(p.bytes)}
				e.Operation = p.ops[r.IntN(len(p.ops))]
				if e.Operation == "getOrder" {
					e.ObjectID = strconv.Itoa(100000 + r.IntN(900000))
				}
				switch x := r.Float64(); {
				case x < 0.005:
					e.Status, e.Stage, e.Reason, e.Operation = 404, "route", "not_found", ""
				case x < 0.0055:
					e.Status, e.Stage, e.Reason = 401, "authn", "invalid_key"
				}
				evs = append(evs, e)
			}
		}
	}
	sortEvents(evs)
	return evs
}

func sortEvents(evs []Event) {
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
}

// at3 is a time on the third day of the replay.
func at3(h, m int) time.Time {
	return day0.Add(48*time.Hour + time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// attacks are injected, one scenario per replay, into the benign stream.
var attacks = map[string]func() []Event{
	DetTrafficSpike: func() []Event { // globex-sync fires 600 calls in one minute
		var out []Event
		for i := range 600 {
			out = append(out, Event{Time: at3(12, 0).Add(time.Duration(i) * 90 * time.Millisecond), Consumer: "globex-sync", Partner: "globex",
				Credential: "k-globex-sync", ClientIP: ip("198.51.100.11"), API: "orders", Version: "v1", Operation: "listOrders", Status: 200, BytesOut: 100})
		}
		return out
	},
	DetAuthFailures: func() []Event { // 50 guessed keys from one address in 30 s
		var out []Event
		for i := range 50 {
			out = append(out, Event{Time: at3(13, 0).Add(time.Duration(i) * 600 * time.Millisecond), ClientIP: ip("192.0.2.200"),
				API: "orders", Version: "v1", Operation: "listOrders", Status: 401, Stage: "authn", Reason: "unknown_key"})
		}
		return out
	},
	DetNewOperation: func() []Event { // globex-sync suddenly cancels orders
		return []Event{{Time: at3(14, 0), Consumer: "globex-sync", Partner: "globex", Credential: "k-globex-sync", ClientIP: ip("198.51.100.12"),
			API: "orders", Version: "v1", Operation: "cancelOrder", ObjectID: "555123", Status: 200, BytesOut: 200}}
	},
	DetNewNetwork: func() []Event { // acme's key used from somewhere else
		return []Event{{Time: at3(15, 0), Consumer: "acme-billing", Partner: "acme", Credential: "k-acme-billing", ClientIP: ip("100.64.7.9"),
			API: "orders", Version: "v1", Operation: "listOrders", Status: 200, BytesOut: 1500}}
	},
	DetEnumeration: func() []Event { // 100 probes for undeclared paths in 40 s
		var out []Event
		for i := range 100 {
			out = append(out, Event{Time: at3(16, 0).Add(time.Duration(i) * 400 * time.Millisecond), ClientIP: ip("192.0.2.201"),
				Status: 404, Stage: "route", Reason: "not_found"})
		}
		return out
	},
	DetIDWalk: func() []Event { // reports walks order IDs 1000..1020
		var out []Event
		for i := range 21 {
			out = append(out, Event{Time: at3(17, 0).Add(time.Duration(i) * time.Second), Consumer: "reports", Credential: "k-reports",
				ClientIP: ip("192.0.2.11"), API: "orders", Version: "v1", Operation: "getOrder", ObjectID: strconv.Itoa(1000 + i), Status: 200, BytesOut: 300})
		}
		return out
	},
	DetVolumeSpike: func() []Event { // ten 5 MiB answers in a minute
		var out []Event
		for i := range 10 {
			out = append(out, Event{Time: at3(18, 0).Add(time.Duration(i) * 5 * time.Second), Consumer: "globex-sync", Partner: "globex",
				Credential: "k-globex-sync", ClientIP: ip("198.51.100.10"), API: "orders", Version: "v1", Operation: "listOrders", Status: 200, BytesOut: 5 << 20})
		}
		return out
	},
	DetDeprecated: func() []Event {
		return []Event{{Time: at3(19, 0), Consumer: "reports", Credential: "k-reports", ClientIP: ip("192.0.2.12"),
			API: "orders", Version: "v0", Operation: "listOrders", Status: 200, BytesOut: 100, Deprecated: true}}
	},
	DetUnusualHours: func() []Event { // acme-billing at 03:30, it never works at night
		return []Event{{Time: at3(3, 30), Consumer: "acme-billing", Partner: "acme", Credential: "k-acme-billing", ClientIP: ip("203.0.113.10"),
			API: "orders", Version: "v1", Operation: "listOrders", Status: 200, BytesOut: 1500}}
	},
}

func replay(evs []Event) []Finding {
	var found []Finding
	en := NewEngine(Options{Detectors: Defaults(testThresholds), OnFinding: func(f Finding) { found = append(found, f) }})
	for i := range evs {
		en.Process(&evs[i])
	}
	return found
}

// TestReplays: on three days of benign traffic no detector fires; each
// attack, injected into the same three days, makes its detector fire about
// the attacker.
func TestReplays(t *testing.T) {
	base := benign(3, 42)
	fps := replay(base)
	perDetector := map[string]int{}
	for _, f := range fps {
		perDetector[f.Detector]++
	}
	t.Logf("benign replay: %d events over 3 days, %d false positives %v", len(base), len(fps), perDetector)
	for _, f := range fps {
		t.Errorf("false positive on benign traffic: %s %s: %s", f.Detector, f.Subject, f.Summary)
	}

	want := map[string]string{
		DetTrafficSpike: "consumer:globex-sync", DetAuthFailures: "ip:192.0.2.200", DetNewOperation: "consumer:globex-sync",
		DetNewNetwork: "partner:acme", DetEnumeration: "ip:192.0.2.201", DetIDWalk: "consumer:reports",
		DetVolumeSpike: "consumer:globex-sync", DetDeprecated: "consumer:reports", DetUnusualHours: "consumer:acme-billing",
	}
	for det, attack := range attacks {
		t.Run(det, func(t *testing.T) {
			evs := append(append([]Event(nil), base...), attack()...)
			sortEvents(evs)
			found := replay(evs)
			hit := false
			for _, f := range found {
				if f.Detector == det && f.Subject == want[det] {
					hit = true
					if f.Severity == "" || f.Summary == "" || len(f.Evidence) == 0 {
						t.Errorf("finding lacks severity, summary or evidence: %+v", f)
					}
				}
			}
			if !hit {
				t.Errorf("%s did not fire on its attack; findings: %+v", det, found)
			}
		})
	}
}

// TestThresholdEdges: bursts one short of the threshold stay quiet, at the
// threshold they fire, and spread beyond the window they stay quiet.
func TestThresholdEdges(t *testing.T) {
	th := Thresholds{}.withDefaults()
	gen := func(n int, spacing time.Duration, mk func(i int, t time.Time) Event) []Event {
		out := make([]Event, n)
		for i := range out {
			out[i] = mk(i, day0.Add(time.Duration(i)*spacing))
		}
		return out
	}
	authFail := func(_ int, t time.Time) Event {
		return Event{Time: t, ClientIP: ip("192.0.2.1"), Status: 401, Stage: "authn"}
	}
	notFound := func(_ int, t time.Time) Event {
		return Event{Time: t, ClientIP: ip("192.0.2.2"), Status: 404, Stage: "route"}
	}
	walkFrom := func(i int, t time.Time) Event {
		return Event{Time: t, ClientIP: ip("192.0.2.3"), Operation: "getOrder", API: "orders", ObjectID: strconv.Itoa(500 - i), Status: 200}
	}
	cases := []struct {
		name  string
		evs   []Event
		det   string
		fires bool
	}{
		{"auth failures one short", gen(th.AuthFailIP-1, time.Second, authFail), DetAuthFailures, false},
		{"auth failures at threshold", gen(th.AuthFailIP, time.Second, authFail), DetAuthFailures, true},
		{"auth failures spread over 2 min", gen(th.AuthFailIP, 5*time.Second, authFail), DetAuthFailures, false},
		{"404s one short", gen(th.Enum404-1, time.Second, notFound), DetEnumeration, false},
		{"404s at threshold", gen(th.Enum404, time.Second, notFound), DetEnumeration, true},
		{"ID walk one short", gen(th.IDWalk-1, time.Second, walkFrom), DetIDWalk, false},
		{"ID walk downwards at threshold", gen(th.IDWalk, time.Second, walkFrom), DetIDWalk, true},
		{"ID walk too slow", gen(th.IDWalk, 10*time.Second, walkFrom), DetIDWalk, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fired := 0
			for _, f := range replay(tc.evs) {
				if f.Detector == tc.det {
					fired++
				}
			}
			if (fired > 0) != tc.fires || fired > 1 {
				t.Errorf("%s fired %d times, want fires=%v (at most once)", tc.det, fired, tc.fires)
			}
		})
	}
}

// TestBoundedUnderIPFlood: a million distinct addresses cannot grow the
// detectors' tables past their bound.
func TestBoundedUnderIPFlood(t *testing.T) {
	dets := Defaults(Thresholds{MaxKeys: 1000})
	en := NewEngine(Options{Detectors: dets})
	for i := range 50_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		e := Event{Time: day0.Add(time.Duration(i) * time.Millisecond), ClientIP: a, Status: 401, Stage: "authn",
			Consumer: "c" + strconv.Itoa(i), API: "orders", Operation: "getOrder", ObjectID: strconv.Itoa(i)}
		en.Process(&e)
	}
	af := dets[1].(*authFailDetector)
	en2 := dets[4].(*enumDetector)
	for name, n := range map[string]int{"auth by ip": af.byIP.len(), "auth by consumer": af.byConsumer.len(),
		"walks": en2.walks.len(), "refusals": en2.refusals.len()} {
		if n > 1000 {
			t.Errorf("%s table holds %d keys, bound 1000", name, n)
		}
	}
}

// everyEvent reports on every event.
type everyEvent struct{}

func (everyEvent) Name() string { return "every" }
func (everyEvent) Observe(e *Event, report func(Finding)) {
	report(Finding{Severity: "low", Subject: "x"})
}

// TestObserveNeverBlocks: with nobody draining findings, a full queue
// drops them and counts them; Observe returns at once.
func TestObserveNeverBlocks(t *testing.T) {
	en := NewEngine(Options{QueueSize: 4, Detectors: []Detector{everyEvent{}}})
	done := make(chan struct{})
	go func() {
		for range 100 {
			en.Observe(Event{Time: day0})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Observe blocked on a full queue")
	}
	if en.Dropped() != 96 || en.Seen() != 100 {
		t.Errorf("dropped %d, seen %d; want 96, 100", en.Dropped(), en.Seen())
	}
}
