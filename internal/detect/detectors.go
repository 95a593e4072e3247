package detect

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"time"
)

// Thresholds tune the default detectors; zero fields take the defaults
// documented on each.
type Thresholds struct {
	MaxKeys int // per-detector table bound (default 50,000)

	// Traffic spike: per-minute requests of a consumer or partner against
	// its EWMA baseline (mean and variance, alpha 0.1) after SpikeWarmup
	// minutes of history: fires when the current minute exceeds
	// mean + 6σ, 4× the mean and SpikeMin.
	SpikeWarmup int     // minutes (default 30)
	SpikeMin    float64 // requests per minute (default 60)

	// Credential stuffing: AuthFailIP refused credentials from one address,
	// or AuthFailConsumer against one consumer, within a minute.
	AuthFailIP       int // default 20
	AuthFailConsumer int // default 10

	// Enumeration: Enum404 refusals (404 not found, 403 forbidden) for one
	// caller within a minute.
	Enum404 int // default 30
	// BOLA probing: IDWalk consecutive requests whose numeric object IDs
	// step by one, within a minute, on one operation.
	IDWalk int // default 10

	// Novelty warm-up: a consumer's new operation, a partner's new network
	// and unusual hours are judged only after this much history.
	NoveltyWarmup time.Duration // default 24 h
	NoveltyCalls  int           // and this many calls (default 100)
	HoursWarmup   time.Duration // unusual hours need longer (default 7 days)

	// Exfiltration: per-minute response bytes of a consumer, as for spikes.
	VolumeMin float64 // bytes per minute (default 5 MiB)
}

func (t Thresholds) withDefaults() Thresholds {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&t.MaxKeys, 50_000)
	def(&t.SpikeWarmup, 30)
	def(&t.AuthFailIP, 20)
	def(&t.AuthFailConsumer, 10)
	def(&t.Enum404, 30)
	def(&t.IDWalk, 10)
	def(&t.NoveltyCalls, 100)
	if t.SpikeMin <= 0 {
		t.SpikeMin = 60
	}
	if t.NoveltyWarmup <= 0 {
		t.NoveltyWarmup = 24 * time.Hour
	}
	if t.HoursWarmup <= 0 {
		t.HoursWarmup = 7 * 24 * time.Hour
	}
	if t.VolumeMin <= 0 {
		t.VolumeMin = 5 << 20
	}
	return t
}

// Detector names.
const (
	DetTrafficSpike  = "traffic_spike"
	DetAuthFailures  = "auth_failure_burst"
	DetNewOperation  = "new_operation"
	DetNewNetwork    = "new_partner_network"
	DetEnumeration   = "enumeration"
	DetIDWalk        = "object_id_walk"
	DetVolumeSpike   = "response_volume_spike"
	DetDeprecated    = "deprecated_call"
	DetUnusualHours  = "unusual_hours"
	minute           = int64(time.Minute)
	window           = time.Minute
	ewmaAlpha        = 0.1
	spikeSigmas      = 6.0
	spikeRatio       = 4.0
	hoursRareShare   = 0.002
	maxGapBuckets    = 120
	deprecatedRepeat = 24 * time.Hour
)

// Defaults returns every detector with the given thresholds.
func Defaults(t Thresholds) []Detector {
	t = t.withDefaults()
	return []Detector{
		&spikeDetector{name: DetTrafficSpike, t: t, severity: "medium", keys: newTable[subject, *baseline](t.MaxKeys),
			value: func(*Event) float64 { return 1 }, min: t.SpikeMin, unit: "requests", partners: true},
		&authFailDetector{t: t, byIP: newTable[netip.Addr, *burst](t.MaxKeys), byConsumer: newTable[string, *burst](t.MaxKeys)},
		&noveltyDetector{t: t, consumers: newTable[string, *history[opKey]](t.MaxKeys)},
		&networkDetector{t: t, partners: newTable[string, *history[netip.Prefix]](t.MaxKeys)},
		&enumDetector{t: t, refusals: newTable[subject, *burst](t.MaxKeys), walks: newTable[walkKey, *walk](t.MaxKeys)},
		&spikeDetector{name: DetVolumeSpike, t: t, severity: "high", keys: newTable[subject, *baseline](t.MaxKeys),
			value: func(e *Event) float64 { return float64(e.BytesOut) }, min: t.VolumeMin, unit: "bytes"},
		&deprecatedDetector{seen: newTable[depKey, time.Time](t.MaxKeys)},
		&hoursDetector{t: t, consumers: newTable[string, *hours](t.MaxKeys)},
	}
}

// ---------------------------------------------------------------------------
// Bounded tables

type entry[V any] struct {
	v    V
	last int64
}

// table is a map bounded to max keys: when full, the least recently used
// half goes. Keys are structs, not concatenated strings, so a lookup on
// the per-request path allocates nothing.
type table[K comparable, V any] struct {
	m   map[K]*entry[V]
	max int
}

func newTable[K comparable, V any](max int) *table[K, V] {
	return &table[K, V]{m: map[K]*entry[V]{}, max: max}
}

// get returns the value for k, creating it with mk when absent.
func (t *table[K, V]) get(k K, now int64, mk func() V) V {
	if e, ok := t.m[k]; ok {
		e.last = now
		return e.v
	}
	if len(t.m) >= t.max {
		t.evict()
	}
	e := &entry[V]{v: mk(), last: now}
	t.m[k] = e
	return e.v
}

func (t *table[K, V]) evict() {
	lasts := make([]int64, 0, len(t.m))
	for _, e := range t.m {
		lasts = append(lasts, e.last)
	}
	sort.Slice(lasts, func(i, j int) bool { return lasts[i] < lasts[j] })
	cut := lasts[len(lasts)/2]
	for k, e := range t.m {
		if e.last <= cut {
			delete(t.m, k)
		}
	}
}

func (t *table[K, V]) len() int { return len(t.m) }

// subject is who a detector tracks: a consumer, a partner or an address.
type subject struct {
	kind byte // 'c' consumer, 'p' partner, 'i' address
	name string
	ip   netip.Addr
}

func (k subject) String() string {
	switch k.kind {
	case 'c':
		return "consumer:" + k.name
	case 'p':
		return "partner:" + k.name
	case 'i':
		return "ip:" + k.ip.String()
	}
	return ""
}

// callerKey is the consumer when known, else the client address (the
// zero subject when neither is).
func callerKey(e *Event) subject {
	if e.Consumer != "" {
		return subject{kind: 'c', name: e.Consumer}
	}
	if e.ClientIP.IsValid() {
		return subject{kind: 'i', ip: e.ClientIP}
	}
	return subject{}
}

// opKey names an operation without building a string.
type opKey struct{ api, version, op string }

func (o opKey) String() string { return o.api + "@" + o.version + "/" + o.op }

// ---------------------------------------------------------------------------
// Rate baselines: EWMA mean and variance over one-minute buckets.

type baseline struct {
	bucket      int64 // current bucket (Unix minute)
	cur         float64
	mean, vari  float64
	closed      int
	firedBucket int64
}

// add accounts v at time ns and returns the current bucket's total.
func (b *baseline) add(ns int64, v float64) float64 {
	bk := ns / minute
	switch {
	case b.closed == 0 && b.bucket == 0 && b.cur == 0:
		b.bucket = bk
	case bk > b.bucket:
		b.close(b.cur)
		gap := bk - b.bucket - 1
		if gap > maxGapBuckets {
			gap = maxGapBuckets
		}
		for range gap {
			b.close(0)
		}
		b.bucket, b.cur = bk, 0
	case bk < b.bucket:
		return b.cur // out of order: count it in the current bucket
	}
	b.cur += v
	return b.cur
}

func (b *baseline) close(x float64) {
	if b.closed == 0 {
		b.mean = x
	} else {
		d := x - b.mean
		b.mean += ewmaAlpha * d
		b.vari = (1 - ewmaAlpha) * (b.vari + ewmaAlpha*d*d)
	}
	b.closed++
}

// spikeDetector fires when a caller's (or partner's) per-minute total
// leaves its baseline far behind.
type spikeDetector struct {
	name     string
	t        Thresholds
	severity string
	keys     *table[subject, *baseline]
	value    func(*Event) float64
	min      float64
	unit     string
	partners bool
}

func (d *spikeDetector) Name() string { return d.name }

func (d *spikeDetector) Observe(e *Event, report func(Finding)) {
	if e.Operation == "" {
		return // traffic to nothing is enumeration's business
	}
	v := d.value(e)
	if v == 0 {
		return
	}
	ns := e.Time.UnixNano()
	keys := [2]subject{}
	if e.Consumer != "" {
		keys[0] = subject{kind: 'c', name: e.Consumer}
	}
	if d.partners && e.Partner != "" {
		keys[1] = subject{kind: 'p', name: e.Partner}
	}
	for _, k := range keys {
		if k.kind == 0 {
			continue
		}
		b := d.keys.get(k, ns, func() *baseline { return &baseline{} })
		cur := b.add(ns, v)
		if b.closed < d.t.SpikeWarmup || b.firedBucket == b.bucket || cur < d.min {
			continue
		}
		limit := math.Max(b.mean+spikeSigmas*math.Sqrt(b.vari), spikeRatio*b.mean)
		if cur > limit {
			b.firedBucket = b.bucket
			report(Finding{Severity: d.severity, Subject: k.String(),
				Summary: fmt.Sprintf("%s: %.0f %s this minute against a baseline of %.0f", k, cur, d.unit, b.mean),
				Evidence: map[string]any{"current": cur, "baseline_mean": round(b.mean), "baseline_stddev": round(math.Sqrt(b.vari)),
					"threshold": round(limit), "unit": d.unit + "/minute"}, Credential: e.Credential})
		}
	}
}

func round(f float64) float64 { return math.Round(f*10) / 10 }

// ---------------------------------------------------------------------------
// Bursts: N events within a window, exactly.

type burst struct {
	ring  []int64
	n     int
	fired int64 // window start of the last alert
}

// hit records ns and reports whether the last size events fit in window.
func (b *burst) hit(ns int64, size int) bool {
	if b.ring == nil {
		b.ring = make([]int64, size)
	}
	b.ring[b.n%size] = ns
	b.n++
	if b.n < size {
		return false
	}
	oldest := b.ring[b.n%size]
	if ns-oldest > int64(window) || oldest <= b.fired {
		return false
	}
	b.fired = ns
	return true
}

type authFailDetector struct {
	t          Thresholds
	byIP       *table[netip.Addr, *burst]
	byConsumer *table[string, *burst]
}

func (d *authFailDetector) Name() string { return DetAuthFailures }

func (d *authFailDetector) Observe(e *Event, report func(Finding)) {
	if !e.AuthFailure() {
		return
	}
	ns := e.Time.UnixNano()
	if e.ClientIP.IsValid() {
		if d.byIP.get(e.ClientIP, ns, func() *burst { return &burst{} }).hit(ns, d.t.AuthFailIP) {
			ip := e.ClientIP.String()
			report(Finding{Severity: "high", Subject: "ip:" + ip, IP: e.ClientIP,
				Summary:  fmt.Sprintf("%d refused credentials from %s within a minute (credential stuffing?)", d.t.AuthFailIP, ip),
				Evidence: map[string]any{"failures": d.t.AuthFailIP, "window": "1m", "last_reason": e.Reason}})
		}
	}
	if e.Consumer != "" {
		if d.byConsumer.get(e.Consumer, ns, func() *burst { return &burst{} }).hit(ns, d.t.AuthFailConsumer) {
			report(Finding{Severity: "high", Subject: "consumer:" + e.Consumer, Credential: e.Credential,
				Summary:  fmt.Sprintf("%d refused credentials for consumer %s within a minute", d.t.AuthFailConsumer, e.Consumer),
				Evidence: map[string]any{"failures": d.t.AuthFailConsumer, "window": "1m", "last_ip": e.ClientIP.String()}})
		}
	}
}

// ---------------------------------------------------------------------------
// Novelty: a consumer's first call of an operation; a partner's first call
// from a network.

type history[K comparable] struct {
	first int64
	calls int
	seen  map[K]bool
}

func (h *history[K]) warm(t Thresholds, ns int64) bool {
	return h.calls >= t.NoveltyCalls && ns-h.first >= int64(t.NoveltyWarmup)
}

// maxSeen bounds one subject's set of operations or networks.
const maxSeen = 4096

type noveltyDetector struct {
	t         Thresholds
	consumers *table[string, *history[opKey]]
}

func (d *noveltyDetector) Name() string { return DetNewOperation }

func (d *noveltyDetector) Observe(e *Event, report func(Finding)) {
	if e.Consumer == "" || e.Operation == "" || e.Stage != "" {
		return
	}
	ns := e.Time.UnixNano()
	h := d.consumers.get(e.Consumer, ns, func() *history[opKey] { return &history[opKey]{first: ns, seen: map[opKey]bool{}} })
	op := opKey{e.API, e.Version, e.Operation}
	if !h.seen[op] {
		if h.warm(d.t, ns) {
			report(Finding{Severity: "low", Subject: "consumer:" + e.Consumer, Credential: e.Credential,
				Summary:  fmt.Sprintf("consumer %s called %s for the first time", e.Consumer, op),
				Evidence: map[string]any{"operation": op.String(), "known_operations": len(h.seen), "calls_before": h.calls}})
		}
		if len(h.seen) < maxSeen {
			h.seen[op] = true
		}
	}
	h.calls++
}

type networkDetector struct {
	t        Thresholds
	partners *table[string, *history[netip.Prefix]]
}

func (d *networkDetector) Name() string { return DetNewNetwork }

// networkOf is the /24 (IPv4) or /48 (IPv6) a partner calls from.
func networkOf(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 24
	if a.Is6() {
		bits = 48
	}
	p, _ := a.Prefix(bits)
	return p
}

func (d *networkDetector) Observe(e *Event, report func(Finding)) {
	if e.Partner == "" || !e.ClientIP.IsValid() || e.Stage == "authn" {
		return
	}
	ns := e.Time.UnixNano()
	h := d.partners.get(e.Partner, ns, func() *history[netip.Prefix] { return &history[netip.Prefix]{first: ns, seen: map[netip.Prefix]bool{}} })
	n := networkOf(e.ClientIP)
	if !h.seen[n] {
		if h.warm(d.t, ns) {
			report(Finding{Severity: "medium", Subject: "partner:" + e.Partner, IP: e.ClientIP, Credential: e.Credential,
				Summary:  fmt.Sprintf("partner %s called from a new network %s", e.Partner, n),
				Evidence: map[string]any{"network": n.String(), "consumer": e.Consumer, "known_networks": len(h.seen)}})
		}
		if len(h.seen) < maxSeen {
			h.seen[n] = true
		}
	}
	h.calls++
}

// ---------------------------------------------------------------------------
// Enumeration and BOLA probing.

type walk struct {
	prev  int64
	run   int
	start int64
	fired bool
}

type enumDetector struct {
	t        Thresholds
	refusals *table[subject, *burst]
	walks    *table[walkKey, *walk]
}

func (d *enumDetector) Name() string { return DetEnumeration }

type walkKey struct {
	who     subject
	api, op string
}

func (d *enumDetector) Observe(e *Event, report func(Finding)) {
	key := callerKey(e)
	if key.kind == 0 {
		return
	}
	ns := e.Time.UnixNano()
	refused := e.Status == 404 || (e.Status == 403 && e.Stage == "authz")
	if refused && d.refusals.get(key, ns, func() *burst { return &burst{} }).hit(ns, d.t.Enum404) {
		report(Finding{Severity: "medium", Subject: key.String(), IP: e.ClientIP, Credential: e.Credential,
			Summary:  fmt.Sprintf("%s got %d not-found or forbidden answers within a minute (enumeration?)", key, d.t.Enum404),
			Evidence: map[string]any{"refusals": d.t.Enum404, "window": "1m", "last_status": e.Status}})
	}
	if e.Operation == "" || e.ObjectID == "" {
		return
	}
	id, err := strconv.ParseInt(e.ObjectID, 10, 64)
	if err != nil {
		return
	}
	w := d.walks.get(walkKey{key, e.API, e.Operation}, ns, func() *walk { return &walk{} })
	if step := id - w.prev; (step == 1 || step == -1) && ns-w.start <= int64(window) && w.run > 0 {
		w.run++
	} else {
		w.run, w.start, w.fired = 1, ns, false
	}
	w.prev = id
	if w.run >= d.t.IDWalk && !w.fired {
		w.fired = true
		report(Finding{Detector: DetIDWalk, Severity: "high", Subject: key.String(), IP: e.ClientIP, Credential: e.Credential,
			Summary:  fmt.Sprintf("%s walked %d consecutive object IDs on %s (BOLA probing?)", key, w.run, e.Operation),
			Evidence: map[string]any{"operation": e.API + "/" + e.Operation, "consecutive": w.run, "last_id": id, "window": "1m"}})
	}
}

// ---------------------------------------------------------------------------
// Deprecated versions and unusual hours.

type deprecatedDetector struct {
	seen *table[depKey, time.Time]
}

type depKey struct {
	who          subject
	api, version string
}

func (d *deprecatedDetector) Name() string { return DetDeprecated }

func (d *deprecatedDetector) Observe(e *Event, report func(Finding)) {
	if !e.Deprecated || e.Stage != "" {
		return
	}
	k := depKey{callerKey(e), e.API, e.Version}
	ns := e.Time.UnixNano()
	last := d.seen.get(k, ns, func() time.Time { return time.Time{} })
	if !last.IsZero() && e.Time.Sub(last) < deprecatedRepeat {
		return
	}
	d.seen.m[k].v = e.Time
	report(Finding{Severity: "low", Subject: k.who.String(), Credential: e.Credential,
		Summary:  fmt.Sprintf("%s still calls deprecated %s %s", callerKey(e), e.API, e.Version),
		Evidence: map[string]any{"api": e.API, "version": e.Version, "partner": e.Partner}})
}

type hours struct {
	first int64
	total int
	byH   [24]int
	fired int64 // day (Unix day) of the last alert
}

type hoursDetector struct {
	t         Thresholds
	consumers *table[string, *hours]
}

func (d *hoursDetector) Name() string { return DetUnusualHours }

func (d *hoursDetector) Observe(e *Event, report func(Finding)) {
	if e.Consumer == "" || e.Stage != "" {
		return
	}
	ns := e.Time.UnixNano()
	h := d.consumers.get(e.Consumer, ns, func() *hours { return &hours{first: ns} })
	hr := e.Time.UTC().Hour()
	day := ns / int64(24*time.Hour)
	if h.total >= d.t.NoveltyCalls && ns-h.first >= int64(d.t.HoursWarmup) && h.fired != day &&
		float64(h.byH[hr]) < hoursRareShare*float64(h.total) {
		h.fired = day
		report(Finding{Severity: "low", Subject: "consumer:" + e.Consumer, Credential: e.Credential,
			Summary: fmt.Sprintf("consumer %s active at %02d:00 UTC, an hour it almost never uses", e.Consumer, hr),
			Evidence: map[string]any{"hour_utc": hr, "calls_at_this_hour": h.byH[hr], "calls_total": h.total,
				"share": round(100*float64(h.byH[hr])/float64(h.total)) / 100}})
	}
	h.byH[hr]++
	h.total++
}
