package limit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultQuotaGrace keeps a window's counter this long past the window's
// end, so replicas whose clocks lag a little still find it, and the admin
// API can show the window that just closed.
const DefaultQuotaGrace = time.Hour

// RedisQuotaOptions tunes NewRedisQuota. The zero value is usable.
type RedisQuotaOptions struct {
	Timeout time.Duration // per call (default DefaultRedisTimeout)
	Grace   time.Duration // counter lifetime past the window end (default DefaultQuotaGrace)
	// Now is the clock that picks the window (default time.Now). Replicas
	// should run NTP: within a clock skew of a window boundary, two
	// replicas may count in adjacent windows.
	Now func() time.Time
}

// RedisQuota counts quota use in Redis: persistent across gateway restarts
// and shared by every replica. Each window has its own key, prefix + key +
// ":" + the window start in Unix seconds, so a new window starts at zero
// without any reset job, and expires at the window end plus the grace.
//
// Take is all or nothing and does not count denied requests. The pipeline
// should decide rate limits (AllowMulti) before the quota, so a request
// refused by a rate limit never spends quota; one refused by the quota
// has then spent rate budget, which only matters to a client already out
// of quota.
type RedisQuota struct {
	client  redis.Scripter
	prefix  string
	timeout time.Duration
	grace   time.Duration
	now     func() time.Time
}

var _ QuotaCounter = (*RedisQuota)(nil)

// quotaScript adds ARGV[1] to KEYS[1] only if the sum stays within
// ARGV[2], and sets the key to expire in ARGV[3] ms. Returns {granted,
// used}. The lifetime is relative (window end + grace - now, on the
// gateway's clock, which chose the window) rather than absolute, so the
// counter's life follows the clock that named it.
var quotaScript = redis.NewScript(`
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local n = tonumber(ARGV[1])
if used + n > tonumber(ARGV[2]) then
  return {0, used}
end
used = redis.call('INCRBY', KEYS[1], n)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, used}
`)

var quotaUsageScript = redis.NewScript(`return tonumber(redis.call('GET', KEYS[1]) or '0')`)

// NewRedisQuota returns a counter over client under prefix. See NewRedis on
// ContextTimeoutEnabled.
func NewRedisQuota(client redis.Scripter, prefix string, opts RedisQuotaOptions) (*RedisQuota, error) {
	if client == nil {
		return nil, errors.New("limit: NewRedisQuota: nil client")
	}
	if err := checkContextTimeout(client); err != nil {
		return nil, err
	}
	c := &RedisQuota{client: client, prefix: prefix, timeout: opts.Timeout, grace: opts.Grace, now: opts.Now}
	if c.timeout <= 0 {
		c.timeout = DefaultRedisTimeout
	}
	if c.grace <= 0 {
		c.grace = DefaultQuotaGrace
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// WindowKey is the Redis key counting key's quota in the window starting at
// start.
func (c *RedisQuota) WindowKey(key string, start time.Time) string {
	return c.prefix + key + ":" + strconv.FormatInt(start.Unix(), 10)
}

// Take implements QuotaCounter.
func (c *RedisQuota) Take(ctx context.Context, key string, q Quota, n int64) (QuotaUsage, error) {
	if err := checkQuota(q, n); err != nil {
		return QuotaUsage{}, err
	}
	now := c.now()
	start, end := q.Window.Bounds(now)
	ttl := max(end.Add(c.grace).Sub(now).Milliseconds(), 1)
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	out, err := quotaScript.Run(ctx, c.client, []string{c.WindowKey(key, start)},
		n, q.Limit, ttl).Int64Slice()
	if err != nil {
		return QuotaUsage{}, fmt.Errorf("redis quota: %w", err)
	}
	if len(out) != 2 {
		return QuotaUsage{}, fmt.Errorf("redis quota: script returned %d values, want 2", len(out))
	}
	return QuotaUsage{Allowed: out[0] == 1, Used: out[1], Limit: q.Limit, ResetsAt: end}, nil
}

// Usage implements QuotaCounter.
func (c *RedisQuota) Usage(ctx context.Context, key string, q Quota) (QuotaUsage, error) {
	if err := checkQuota(q, 1); err != nil {
		return QuotaUsage{}, err
	}
	start, end := q.Window.Bounds(c.now())
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	used, err := quotaUsageScript.Run(ctx, c.client, []string{c.WindowKey(key, start)}).Int64()
	if err != nil {
		return QuotaUsage{}, fmt.Errorf("redis quota: %w", err)
	}
	return QuotaUsage{Allowed: used < q.Limit, Used: used, Limit: q.Limit, ResetsAt: end}, nil
}

// QuotaCheck is one quota of a TakeAll call.
type QuotaCheck struct {
	Key   string
	Quota Quota
}

// quotaMultiScript takes one unit from every counter if all stay within
// their limits, atomically: a request refused by one quota consumes no
// other. ARGV: n, then limit and ttl (ms) per key.
var quotaMultiScript = redis.NewScript(`
local n = tonumber(ARGV[1])
local used = {}
local ok = 1
for i = 1, #KEYS do
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used[i] + n > tonumber(ARGV[2*i]) then ok = 0 end
end
if ok == 1 then
  for i = 1, #KEYS do
    used[i] = redis.call('INCRBY', KEYS[i], n)
    redis.call('PEXPIRE', KEYS[i], ARGV[2*i+1])
  end
end
table.insert(used, 1, ok)
return used
`)

// TakeAll takes one unit from every check's counter in one atomic script,
// all or nothing. usages (len(checks) entries) receives each counter's
// state after the call. Checks must name distinct keys.
func (c *RedisQuota) TakeAll(ctx context.Context, checks []QuotaCheck, usages []QuotaUsage) (bool, error) {
	if len(usages) != len(checks) {
		panic("limit: TakeAll: len(usages) != len(checks)")
	}
	if len(checks) == 0 {
		return true, nil
	}
	now := c.now()
	keys := make([]string, len(checks))
	args := make([]any, 1, 1+2*len(checks))
	args[0] = 1
	for i, ch := range checks {
		if err := checkQuota(ch.Quota, 1); err != nil {
			return false, err
		}
		start, end := ch.Quota.Window.Bounds(now)
		keys[i] = c.WindowKey(ch.Key, start)
		usages[i] = QuotaUsage{Limit: ch.Quota.Limit, ResetsAt: end}
		args = append(args, ch.Quota.Limit, max(end.Add(c.grace).Sub(now).Milliseconds(), 1))
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	out, err := quotaMultiScript.Run(ctx, c.client, keys, args...).Int64Slice()
	if err != nil {
		return false, fmt.Errorf("redis quota: %w", err)
	}
	if len(out) != len(checks)+1 {
		return false, fmt.Errorf("redis quota: script returned %d values, want %d", len(out), len(checks)+1)
	}
	ok := out[0] == 1
	for i := range checks {
		usages[i].Used = out[i+1]
		usages[i].Allowed = ok
	}
	return ok, nil
}
