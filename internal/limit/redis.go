package limit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisTimeout bounds one Redis decision. A limiter that waits longer
// than this adds its wait to every request; better to fail fast and let the
// failure policy answer.
const DefaultRedisTimeout = 50 * time.Millisecond

// RedisOptions tunes NewRedis. The zero value is usable.
type RedisOptions struct {
	// Timeout bounds each decision, connection included (default
	// DefaultRedisTimeout).
	Timeout time.Duration
}

// Redis is a GCRA limiter whose state lives in Redis, shared by every
// gateway replica. Each decision is one EVALSHA of gcraScript (EVAL when
// the script is not cached), which reads Redis's own clock (TIME), so
// replicas with skewed clocks still agree. TATs are integers of
// microseconds since 1970 on that clock, exact in Lua's doubles.
//
// Multi-key decisions (AllowMulti) run over all keys in one script, so in a
// Redis Cluster all keys of one call must hash to one slot (use a hash tag
// such as "{consumer}:..."); a single Redis or a replicated primary needs
// nothing.
type Redis struct {
	script  *redis.Script
	client  redis.Scripter
	prefix  string
	timeout time.Duration
	batch   *batcher // nil: a client that cannot pipeline
}

var _ MultiLimiter = (*Redis)(nil)

// gcraScript decides N checks at once: all conform, then every TAT is
// updated; any does not, then nothing is written.
//
// KEYS[i] holds check i's TAT in µs. ARGV[2i-1] is its emission interval
// and ARGV[2i] its burst capacity (burst × interval), both in µs. It returns
// {allowed, now, tat_1, ..., tat_N}: tat_i is the TAT check i was decided
// on, already raised to now and including earlier checks on the same key;
// the caller derives remaining, retry and reset from it with the same
// arithmetic as the local limiter (gcra.decide).
//
// A stored TAT expires when it reaches now: from then on it means nothing
// (a missing key is the same as a TAT of now), so Redis holds no idle keys.
var gcraScript = redis.NewScript(gcraLua)

const gcraLua = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pending = {}
local out = {1, now}
for i = 1, #KEYS do
  local k = KEYS[i]
  local interval = tonumber(ARGV[2*i-1])
  local capacity = tonumber(ARGV[2*i])
  local tat = pending[k]
  if tat == nil then
    tat = tonumber(redis.call('GET', k)) or now
  end
  if tat < now then tat = now end
  out[i+2] = tat
  local new = tat + interval
  if new - capacity > now then
    out[1] = 0
    pending[k] = tat
  else
    pending[k] = new
  end
end
if out[1] == 1 then
  for k, new in pairs(pending) do
    redis.call('SET', k, new, 'PX', math.ceil((new - now) / 1000))
  end
end
return out
`

// NewRedis returns a limiter over client, storing state under prefix+key.
// A *redis.Client or *redis.ClusterClient must have ContextTimeoutEnabled
// set (ConfigureRedisOptions does it), or go-redis ignores the per-call
// timeout and a stalled Redis stalls every request for its ReadTimeout.
func NewRedis(client redis.Scripter, prefix string, opts RedisOptions) (*Redis, error) {
	if client == nil {
		return nil, errors.New("limit: NewRedis: nil client")
	}
	if err := checkContextTimeout(client); err != nil {
		return nil, err
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultRedisTimeout
	}
	r := &Redis{script: gcraScript, client: client, prefix: prefix, timeout: timeout}
	if p, ok := client.(interface{ Pipeline() redis.Pipeliner }); ok {
		r.batch = &batcher{r: r, pipe: p.Pipeline}
	}
	return r, nil
}

func checkContextTimeout(client redis.Scripter) error {
	enabled := true
	switch c := client.(type) {
	case *redis.Client:
		enabled = c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		enabled = c.Options().ContextTimeoutEnabled
	}
	if !enabled {
		return errors.New("limit: the redis client must set ContextTimeoutEnabled so the per-decision timeout applies (see limit.ConfigureRedisOptions)")
	}
	return nil
}

// ConfigureRedisOptions prepares go-redis options for a limiter: context
// deadlines honoured, dials bounded by timeout, one retry at most (a
// pooled connection that Redis closed is retried once; anything slower is
// the failure policy's job), so a dead Redis costs a request at most about
// timeout.
func ConfigureRedisOptions(opt *redis.Options, timeout time.Duration) {
	if timeout <= 0 {
		timeout = DefaultRedisTimeout
	}
	opt.ContextTimeoutEnabled = true
	opt.DialTimeout = timeout
	opt.ReadTimeout = timeout
	opt.WriteTimeout = timeout
	opt.PoolTimeout = timeout
	opt.MaxRetries = 1
	opt.DialerRetries = 1
}

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, key string, rule Rule) (Result, error) {
	var res [1]Result
	_, err := r.AllowMulti(ctx, []Check{{Key: key, Rule: rule}}, res[:])
	return res[0], err
}

// AllowMulti implements MultiLimiter in one script run.
func (r *Redis) AllowMulti(ctx context.Context, checks []Check, results []Result) (bool, error) {
	allowed, _, err := r.allowMulti(ctx, checks, results)
	return allowed, err
}

// allowMulti also returns the Redis time (µs) the decision was made at.
func (r *Redis) allowMulti(ctx context.Context, checks []Check, results []Result) (allowed bool, now int64, err error) {
	n := len(checks)
	if len(results) != n {
		panic("limit: AllowMulti: len(results) != len(checks)")
	}
	if n == 0 {
		return true, 0, nil
	}
	gs := make([]gcra, n)
	keys := make([]string, n)
	args := make([]any, 0, 2*n)
	for i, c := range checks {
		g, err := c.Rule.gcra(time.Microsecond)
		if err != nil {
			return false, 0, err
		}
		gs[i] = g
		keys[i] = r.prefix + c.Key
		args = append(args, strconv.FormatInt(g.interval, 10), strconv.FormatInt(g.capacity, 10))
	}
	var out []int64
	if r.batch != nil {
		c := callPool.Get().(*call)
		c.keys, c.args = keys, args
		r.batch.run(c)
		out, err = c.out, c.err
		*c = call{done: c.done}
		callPool.Put(c)
	} else {
		ctx, cancel := context.WithTimeout(ctx, r.timeout)
		defer cancel()
		out, err = r.script.Run(ctx, r.client, keys, args...).Int64Slice()
	}
	if err != nil {
		return false, 0, fmt.Errorf("redis rate limit: %w", err)
	}
	if len(out) != n+2 {
		return false, 0, fmt.Errorf("redis rate limit: script returned %d values, want %d", len(out), n+2)
	}
	allowed, now = out[0] == 1, out[1]
	for i := range checks {
		tat := out[i+2]
		if allowed {
			_, results[i] = gs[i].decide(tat, now)
		} else {
			results[i] = gs[i].peek(tat, now)
		}
	}
	return allowed, now, nil
}
