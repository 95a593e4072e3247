package gateway

import (
	"context"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/limit"
)

// Throttles are the detectors' softest automatic response: a subject (a
// client address or a credential) keeps being served, but at a strict
// rate, until the throttle expires or an operator reverts it. They are
// local to this replica, like the detectors that raise them.
type throttles struct {
	mu    sync.RWMutex
	until map[string]int64 // "ip:ADDR" or "credential:ID" → Unix nanoseconds
	n     atomic.Int32     // len(until), so the common case takes no lock
	lim   *limit.Local
	rule  atomic.Pointer[limit.Rule]
}

// maxThrottles bounds the set; beyond it new throttles are refused (the
// detectors' block and suspend responses remain).
const maxThrottles = 10_000

// DefaultThrottle is the rate a throttled subject is held to.
var DefaultThrottle = limit.Rule{Rate: 60, Period: time.Minute, Burst: 10}

func newThrottles() *throttles {
	t := &throttles{until: map[string]int64{}, lim: limit.NewLocal(limit.LocalOptions{})}
	r := DefaultThrottle
	t.rule.Store(&r)
	return t
}

// SetThrottleRule changes the throttled rate (config reload).
func (g *Gateway) SetThrottleRule(r limit.Rule) {
	if r.Rate > 0 && r.Period > 0 {
		g.throttle.rule.Store(&r)
	}
}

// Throttle holds subject ("ip:ADDR" or "credential:ID") to the throttle
// rate until the given time. It reports false when the set is full.
func (g *Gateway) Throttle(subject string, until time.Time) bool {
	t := g.throttle
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.until[subject]; !ok && len(t.until) >= maxThrottles {
		t.prune(time.Now().UnixNano())
		if len(t.until) >= maxThrottles {
			return false
		}
	}
	t.until[subject] = until.UnixNano()
	t.n.Store(int32(len(t.until)))
	return true
}

// Unthrottle ends a throttle early; it reports whether there was one.
func (g *Gateway) Unthrottle(subject string) bool {
	t := g.throttle
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.until[subject]
	delete(t.until, subject)
	t.n.Store(int32(len(t.until)))
	return ok
}

func (t *throttles) prune(now int64) {
	for k, u := range t.until {
		if u <= now {
			delete(t.until, k)
		}
	}
}

// throttled reports the subject key of a throttle in force for this
// caller, or "".
func (t *throttles) throttled(addr netip.Addr, credential string) string {
	if t.n.Load() == 0 {
		return ""
	}
	now := time.Now().UnixNano()
	t.mu.RLock()
	defer t.mu.RUnlock()
	if credential != "" {
		if u, ok := t.until["credential:"+credential]; ok && u > now {
			return "credential:" + credential
		}
	}
	if addr.IsValid() {
		k := "ip:" + addr.Unmap().String()
		if u, ok := t.until[k]; ok && u > now {
			return k
		}
	}
	return ""
}

// applyThrottle answers 429 when a throttled caller is over the throttle
// rate. It returns false when it answered.
func (g *Gateway) applyThrottle(w *statusWriter, c *call, clientAddr netip.Addr) bool {
	t := g.throttle
	if t.n.Load() == 0 {
		return true
	}
	if !clientAddr.IsValid() {
		clientAddr, _ = netip.ParseAddr(c.clientIP)
	}
	cred := ""
	if c.principal != nil {
		cred = c.principal.CredentialID
	}
	key := t.throttled(clientAddr, cred)
	if key == "" {
		return true
	}
	res, err := t.lim.Allow(context.Background(), "throttle|"+key, *t.rule.Load())
	if err == nil && res.Allowed {
		return true
	}
	w.Header().Set("Retry-After", strconv.Itoa(max(int(res.RetryAfter.Seconds()+0.999), 1)))
	g.deny(w, c, ProbRateLimited, "limit", "throttled", "Too many requests from this client; retry after the number of seconds in Retry-After.")
	return false
}
