package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/limit"
	"github.com/gatehouse/gatehouse/internal/metrics"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Problems of the limit stage.
var (
	ProbRateLimited   = Problem{Type: ProblemBase + "rate-limited", Title: "Too many requests", Status: http.StatusTooManyRequests}
	ProbQuotaExceeded = Problem{Type: ProblemBase + "quota-exceeded", Title: "Quota exhausted", Status: http.StatusTooManyRequests}
)

// DefaultRedisKeyPrefix prefixes every Redis key of rate limits and quotas.
const DefaultRedisKeyPrefix = "gatehouse:"

// LimitDeps are what live rate limits and quotas need beyond the config.
type LimitDeps struct {
	// Quotas keep quota counters on a single node (nil: quotas are not
	// enforced, as when only validating a config).
	Quotas store.QuotaStore
	// RedisKeyPrefix prefixes Redis keys (DefaultRedisKeyPrefix when empty),
	// so gateways of separate deployments can share one Redis.
	RedisKeyPrefix string
}

// limitShared owns the limiter state that outlives a Runtime: counters must
// not reset when the config reloads. Keys name the API and the limit's
// definition, so a changed rule starts afresh while unchanged rules keep
// counting.
type limitShared struct {
	mu      sync.Mutex
	deps    LimitDeps
	metrics *metrics.Metrics
	log     *slog.Logger
	local   *limit.Local
	cluster *clusterLimits
}

// clusterLimits is the Redis engine of one redis/limits setting.
type clusterLimits struct {
	url, prefix string
	timeout     time.Duration
	policy      limit.FailurePolicy
	replicas    int
	client      *redis.Client
	engine      *limit.Fallback
	quota       *limit.RedisQuota
}

// limitSet is what one Runtime uses.
type limitSet struct {
	engine   limit.MultiLimiter
	quota    quotaCounter // nil: quotas not enforced
	policy   limit.FailurePolicy
	v4, v6   int
	consumer map[string]limit.Quota
	partner  map[string]limit.Quota
	shared   *limitShared
}

// opLimit is one compiled rate limit of an operation.
type opLimit struct {
	policy string
	rule   limit.Rule
	per    uint8 // limitBy bits
	prefix string
}

const (
	byConsumer uint8 = 1 << iota
	byPartner
	byCredential
	byIP
	byOperation
)

var limitKeyBits = map[string]uint8{
	config.LimitByConsumer: byConsumer, config.LimitByPartner: byPartner, config.LimitByCredential: byCredential,
	config.LimitByIP: byIP, config.LimitByOperation: byOperation, config.LimitByAPI: 0,
}

// quotaCounter takes one unit from several quotas, all or nothing.
type quotaCounter interface {
	TakeAll(ctx context.Context, checks []limit.QuotaCheck, usages []limit.QuotaUsage) (bool, error)
	Usage(ctx context.Context, key string, q limit.Quota) (limit.QuotaUsage, error)
}

// SetLimits gives the gateway its quota store; call it before the first
// Compile of a serving process.
func (g *Gateway) SetLimits(d LimitDeps) {
	if d.RedisKeyPrefix == "" {
		d.RedisKeyPrefix = DefaultRedisKeyPrefix
	}
	g.limits.mu.Lock()
	g.limits.deps = d
	g.limits.mu.Unlock()
}

// buildLimits prepares the engines cfg needs, reusing the running ones.
func (g *Gateway) buildLimits(cfg *config.Config, rep *config.Reporter) *limitSet {
	s := &g.limits
	s.mu.Lock()
	defer s.mu.Unlock()
	set := &limitSet{v4: cfg.Limits.IPv4Prefix, v6: cfg.Limits.IPv6Prefix, shared: s,
		consumer: map[string]limit.Quota{}, partner: map[string]limit.Quota{}}
	set.policy, _ = limit.ParseFailurePolicy(cfg.Limits.RedisFailure)
	if set.policy == 0 {
		set.policy = limit.FailClosed
	}
	for _, p := range cfg.Partners {
		if q, ok := quotaOf(p.Quota); ok {
			set.partner[p.Name] = q
		}
	}
	for _, c := range cfg.Consumers {
		if q, ok := quotaOf(c.Quota); ok {
			set.consumer[c.Name] = q
		}
	}
	if s.local == nil {
		s.local = limit.NewLocal(limit.LocalOptions{MaxKeys: cfg.Limits.LocalMaxKeys})
	}
	if cfg.Redis == "" {
		set.engine = s.local
		if s.deps.Quotas != nil {
			set.quota = storeQuota{s.deps.Quotas}
		}
		return set
	}
	prefix := cfg.Limits.RedisKeyPrefix
	if prefix == "" {
		prefix = s.deps.RedisKeyPrefix
	}
	cl := s.cluster
	if cl == nil || cl.url != cfg.Redis || cl.prefix != prefix || cl.policy != set.policy || cl.replicas != cfg.Limits.ExpectedReplicas ||
		cl.timeout != cfg.Limits.RedisTimeout.D() {
		var err error
		cl, err = s.newCluster(cfg.Redis, prefix, set.policy, cfg.Limits.ExpectedReplicas, cfg.Limits.RedisTimeout.D())
		if err != nil {
			rep.Errorf("/redis", "%v", err)
			return set
		}
		if old := s.cluster; old != nil {
			// Requests that started on the old Runtime may still use it.
			time.AfterFunc(retireGrace, func() { _ = old.client.Close() })
		}
		s.cluster = cl
	}
	set.engine = cl.engine
	set.quota = cl.quota
	return set
}

func (s *limitShared) newCluster(url, prefix string, policy limit.FailurePolicy, replicas int, timeout time.Duration) (*clusterLimits, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		// The parse error may quote the URL, password included.
		return nil, errors.New("invalid redis URL: want redis://[user:password@]host:port/db")
	}
	limit.ConfigureRedisOptions(opt, timeout)
	// Every in-flight limited request holds a connection for one round
	// trip: a pool smaller than the concurrency makes requests queue for
	// connections and time out under load.
	opt.PoolSize = max(opt.PoolSize, 128)
	client := redis.NewClient(opt)
	primary, err := limit.NewRedis(client, prefix+"rl:", limit.RedisOptions{Timeout: timeout})
	if err != nil {
		client.Close()
		return nil, err
	}
	quota, err := limit.NewRedisQuota(client, prefix+"quota:", limit.RedisQuotaOptions{Timeout: timeout})
	if err != nil {
		client.Close()
		return nil, err
	}
	// fail_open falls back to a limiter of its own: the single-node one may
	// hold state from before Redis was configured. OnFail comes once per
	// failed probe; the log and the failure count only on the transition.
	var down atomic.Bool
	fb, err := limit.NewFallback(primary, limit.NewLocal(limit.LocalOptions{}), limit.FallbackOptions{
		Policy: policy, ExpectedReplicas: replicas,
		OnFail: func(err error) {
			s.metrics.LimitDegraded.Set(1)
			if !down.Swap(true) {
				s.metrics.LimitBackendFailures.Inc()
				s.log.Error("rate-limit backend unreachable: applying redis_failure policy", "policy", policy.String(), "error", err.Error())
			}
		},
		OnRecover: func() {
			s.metrics.LimitDegraded.Set(0)
			if down.Swap(false) {
				s.log.Info("rate-limit backend reachable again")
			}
		},
	})
	if err != nil {
		client.Close()
		return nil, err
	}
	return &clusterLimits{url: url, prefix: prefix, timeout: timeout, policy: policy, replicas: replicas, client: client, engine: fb, quota: quota}, nil
}

func quotaOf(q *config.Quota) (limit.Quota, bool) {
	if q == nil {
		return limit.Quota{}, false
	}
	per, err := limit.ParseQuotaPeriod(q.Per)
	if err != nil {
		return limit.Quota{}, false
	}
	return limit.Quota{Limit: q.Requests, Window: limit.QuotaWindow{Per: per, Location: q.Location()}}, true
}

// compileLimits returns the limits of one operation; problems go to rep.
func compileLimits(ac config.API, ptr string, opIDs map[string]bool, rep *config.Reporter) map[string][]opLimit {
	out := map[string][]opLimit{}
	for j, rl := range ac.RateLimits {
		lptr := fmt.Sprintf("%s/limits/%d", ptr, j)
		n, period, err := config.ParseRate(rl.Rate)
		if err != nil {
			continue // reported by validation
		}
		var per uint8
		for _, k := range rl.Per {
			per |= limitKeyBits[k]
		}
		for k, id := range rl.Operations {
			if !opIDs[id] {
				rep.Errorf(fmt.Sprintf("%s/operations/%d", lptr, k), "API %s has no operation %q", ac.Name, id)
			}
		}
		// The key prefix names the API and the definition: a changed rule
		// starts with a fresh budget instead of inheriting a stale TAT.
		def := fmt.Sprintf("%s|%s|%v|%d|%s|%d|%v", ac.Name, ac.Version, rl.Per, n, period, rl.Burst, rl.Operations)
		sum := sha256.Sum256([]byte(def))
		l := opLimit{
			policy: rl.PolicyName(),
			rule:   limit.Rule{Rate: n, Period: period, Burst: rl.Burst},
			per:    per,
			prefix: ac.Name + "@" + ac.Version + ":" + hex.EncodeToString(sum[:6]) + ":",
		}
		if len(rl.Operations) == 0 {
			out[""] = append(out[""], l)
			continue
		}
		for _, id := range rl.Operations {
			out[id] = append(out[id], l)
		}
	}
	return out
}

// policyHeaderOf is the RateLimit-Policy value of an operation's limits,
// built once at compile time.
func policyHeaderOf(ls []opLimit) string {
	if len(ls) == 0 {
		return ""
	}
	checks := make([]limit.Check, len(ls))
	for i, l := range ls {
		checks[i] = limit.Check{Policy: l.policy, Rule: l.rule}
	}
	return limit.PolicyValue(checks)
}

// key is the limit's counter for this request. A limit by consumer,
// partner or credential that the request cannot supply (an anonymous call,
// a consumer without partner) counts by the client's address instead, so
// anonymous traffic is limited too and cannot share one global budget.
func (l *opLimit) key(buf []byte, p *authn.Principal, ip netip.Prefix, opID string) string {
	b := append(buf[:0], l.prefix...)
	needIP := l.per&byIP != 0
	part := func(bit uint8, tag, v string) {
		if l.per&bit == 0 {
			return
		}
		if v == "" {
			needIP = true
			return
		}
		b = append(b, tag...)
		b = append(b, v...)
		b = append(b, '|')
	}
	var consumer, partner, cred string
	if p != nil {
		consumer, partner, cred = p.Consumer, p.Partner, p.CredentialID
	}
	part(byConsumer, "c=", consumer)
	part(byPartner, "p=", partner)
	part(byCredential, "k=", cred)
	part(byOperation, "o=", opID)
	if needIP {
		if ip.IsValid() {
			b = append(b, "ip:"...)
			b = ip.AppendTo(b)
		} else {
			b = append(b, limit.InvalidIPKey...)
		}
	}
	if len(b)-len(l.prefix) > maxKeyPart {
		// Identity values come from tokens and may be long: keep every
		// key short so the limiter's key bound is also a memory bound.
		sum := sha256.Sum256(b[len(l.prefix):])
		b = hex.AppendEncode(b[:len(l.prefix)], sum[:])
	}
	return string(b)
}

// maxKeyPart is the longest per-request part of a limit key kept as is.
const maxKeyPart = 160

// clientPrefix is the client's address masked for per-IP limits (as
// limit.ClientIPKey masks it); invalid when the address is unknown, and
// all such requests then share one budget rather than escape limits.
func clientPrefix(a netip.Addr, v4, v6 int) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	a = a.Unmap().WithZone("")
	bits := v6
	if a.Is4() {
		bits = v4
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// maxLimitChecks bounds the checks of one request kept in pooled scratch.
const maxLimitChecks = 8

// limitScratch is a request's checks and results. Pooled: the slices go
// through the MultiLimiter interface, so they would escape to the heap.
type limitScratch struct {
	checks  [maxLimitChecks]limit.Check
	results [maxLimitChecks]limit.Result
	buf     [256]byte
}

var limitScratchPool = sync.Pool{New: func() any { return new(limitScratch) }}

// applyLimits is stage 7: every rate limit of the operation must pass (a
// request denied by one consumes no other's budget), then the caller's
// quotas. It writes the RateLimit headers on every limited response and
// reports whether the request may go on.
func (g *Gateway) applyLimits(w http.ResponseWriter, r *http.Request, c *call, op *Operation, ls *limitSet, clientAddr netip.Addr) bool {
	p := c.principal
	if len(op.limits) > 0 {
		sc := limitScratchPool.Get().(*limitScratch)
		defer func() {
			clear(sc.checks[:])
			limitScratchPool.Put(sc)
		}()
		checks, results := sc.checks[:0], sc.results[:0]
		if len(op.limits) > maxLimitChecks {
			checks, results = make([]limit.Check, 0, len(op.limits)), make([]limit.Result, 0, len(op.limits))
		}
		var ip netip.Prefix
		ipDone := false
		for i := range op.limits {
			l := &op.limits[i]
			if !ipDone && needsIP(l.per, p) {
				if !clientAddr.IsValid() {
					clientAddr, _ = netip.ParseAddr(c.clientIP)
				}
				ip, ipDone = clientPrefix(clientAddr, ls.v4, ls.v6), true
			}
			checks = append(checks, limit.Check{Policy: l.policy, Key: l.key(sc.buf[:], p, ip, op.ID), Rule: l.rule})
			results = append(results, limit.Result{})
		}
		allowed, err := ls.engine.AllowMulti(r.Context(), checks, results)
		if err != nil {
			if r.Context().Err() != nil {
				return false // the client went away
			}
			w.Header().Set("Retry-After", "1")
			g.deny(w, c, ProbUnavailable, "limit", "limit_unavailable", "Rate limiting is temporarily unavailable; retry shortly.")
			return false
		}
		state, wait := limit.AppendState(sc.buf[:0], checks, results, allowed)
		h := w.Header()
		vals := make([]string, 2)
		vals[0] = op.policyHeader
		vals[1] = string(state)
		h["Ratelimit-Policy"] = vals[0:1:1] // canonical forms of the field names
		h["Ratelimit"] = vals[1:2:2]
		if !allowed {
			h.Set("Retry-After", strconv.FormatInt(wait, 10))
			g.deny(w, c, ProbRateLimited, "limit", "rate_limited", "Rate limit exceeded; retry after the number of seconds in Retry-After.")
			return false
		}
	}
	if p == nil || ls.quota == nil || (len(ls.consumer) == 0 && len(ls.partner) == 0) {
		return true
	}
	var (
		qBuf [2]limit.QuotaCheck
		uBuf [2]limit.QuotaUsage
	)
	qs := qBuf[:0]
	if q, ok := ls.consumer[p.Consumer]; ok && p.Consumer != "" {
		qs = append(qs, limit.QuotaCheck{Key: "consumer:" + p.Consumer, Quota: q})
	}
	if q, ok := ls.partner[p.Partner]; ok && p.Partner != "" {
		qs = append(qs, limit.QuotaCheck{Key: "partner:" + p.Partner, Quota: q})
	}
	if len(qs) == 0 {
		return true
	}
	us := uBuf[:len(qs)]
	ok, err := ls.quota.TakeAll(r.Context(), qs, us)
	if err != nil {
		if r.Context().Err() != nil {
			return false
		}
		if ls.policy == limit.FailOpen {
			// Counting resumes when the backend is back; the outage is
			// logged and on the degraded metric through the rate limiter.
			g.log.Warn("quota backend unavailable: admitting (fail_open)", "request_id", c.requestID, "error", err.Error())
			return true
		}
		w.Header().Set("Retry-After", "1")
		g.deny(w, c, ProbUnavailable, "limit", "quota_unavailable", "Quota accounting is temporarily unavailable; retry shortly.")
		return false
	}
	if !ok {
		// The quota that is exhausted (the later reset if both are).
		var reset time.Time
		for _, u := range us {
			if u.Used+1 > u.Limit && u.ResetsAt.After(reset) {
				reset = u.ResetsAt
			}
		}
		secs := int64(time.Until(reset)/time.Second) + 1
		w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
		g.deny(w, c, ProbQuotaExceeded, "limit", "quota_exceeded", "The request quota for this period is used up; it resets at the time Retry-After names.")
		return false
	}
	return true
}

func needsIP(per uint8, p *authn.Principal) bool {
	if per&byIP != 0 {
		return true
	}
	if p == nil {
		return per&(byConsumer|byPartner|byCredential) != 0
	}
	return (per&byConsumer != 0 && p.Consumer == "") || (per&byPartner != 0 && p.Partner == "") ||
		(per&byCredential != 0 && p.CredentialID == "")
}

// QuotaReport is a consumer's or partner's quota as the admin API shows it.
type QuotaReport struct {
	Used      int64     `json:"used"`
	Limit     int64     `json:"limit"`
	Remaining int64     `json:"remaining"`
	ResetsAt  time.Time `json:"resets_at"`
	Period    string    `json:"period"`
	TimeZone  string    `json:"time_zone"`
}

// ErrNoQuota means the named consumer or partner has no quota configured.
var ErrNoQuota = errors.New("no quota configured")

// QuotaUsage reports the current quota of a consumer or partner (kind
// "consumer" or "partner").
func (g *Gateway) QuotaUsage(ctx context.Context, kind, name string) (QuotaReport, error) {
	rt := g.Runtime()
	if rt == nil || rt.limits == nil {
		return QuotaReport{}, ErrNoQuota
	}
	ls := rt.limits
	m := ls.consumer
	if kind == "partner" {
		m = ls.partner
	}
	q, ok := m[name]
	if !ok {
		return QuotaReport{}, ErrNoQuota
	}
	rep := QuotaReport{Limit: q.Limit, Period: q.Window.Per.String(), TimeZone: q.Window.Location.String()}
	if ls.quota == nil {
		_, rep.ResetsAt = q.Window.Bounds(time.Now())
		rep.Remaining = q.Limit
		return rep, nil
	}
	u, err := ls.quota.Usage(ctx, kind+":"+name, q)
	if err != nil {
		return QuotaReport{}, fmt.Errorf("read quota of %s %s: %w", kind, name, err)
	}
	rep.Used, rep.ResetsAt, rep.Remaining = u.Used, u.ResetsAt, u.Remaining()
	return rep, nil
}

// storeQuota keeps quota counters in the store (single node). Every take
// is one write transaction: exact, and it survives a restart.
type storeQuota struct{ st store.QuotaStore }

func (s storeQuota) TakeAll(ctx context.Context, checks []limit.QuotaCheck, usages []limit.QuotaUsage) (bool, error) {
	var buf [2]store.QuotaTake
	takes := buf[:0]
	now := time.Now()
	for i, c := range checks {
		start, end := c.Quota.Window.Bounds(now)
		takes = append(takes, store.QuotaTake{Key: c.Key, WindowStart: start, Limit: c.Quota.Limit, N: 1})
		usages[i] = limit.QuotaUsage{Limit: c.Quota.Limit, ResetsAt: end}
	}
	ok, used, err := s.st.TakeQuota(ctx, takes)
	if err != nil {
		return false, err
	}
	for i := range usages {
		usages[i].Used, usages[i].Allowed = used[i], ok
	}
	return ok, nil
}

func (s storeQuota) Usage(ctx context.Context, key string, q limit.Quota) (limit.QuotaUsage, error) {
	start, end := q.Window.Bounds(time.Now())
	used, err := s.st.QuotaUsed(ctx, key, start)
	if err != nil {
		return limit.QuotaUsage{}, err
	}
	return limit.QuotaUsage{Allowed: used < q.Limit, Used: used, Limit: q.Limit, ResetsAt: end}, nil
}

// LocalLimiterKeys reports how many keys the in-process limiter tracks and
// its bound.
func (g *Gateway) LocalLimiterKeys() (n, bound int) {
	g.limits.mu.Lock()
	l := g.limits.local
	g.limits.mu.Unlock()
	if l == nil {
		return 0, 0
	}
	return l.Len(), l.MaxKeys()
}

// CloseLimits releases the Redis client (on server shutdown).
func (g *Gateway) CloseLimits() {
	g.limits.mu.Lock()
	defer g.limits.mu.Unlock()
	if g.limits.cluster != nil {
		_ = g.limits.cluster.client.Close()
		g.limits.cluster = nil
	}
}

// limitsOf picks the operation's limits: those for every operation plus
// its own.
func limitsOf(byOp map[string][]opLimit, id string) []opLimit {
	all, own := byOp[""], byOp[id]
	if len(own) == 0 {
		return all
	}
	return append(append(make([]opLimit, 0, len(all)+len(own)), all...), own...)
}
