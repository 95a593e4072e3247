package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // quota time zones must load on hosts without zoneinfo

	"go.yaml.in/yaml/v3"
)

// RateLimitSettings are the gateway-wide rate-limit settings, written in the
// top-level limits: block beside the request size limits.
type RateLimitSettings struct {
	// RedisFailure is what happens while Redis (named by the top-level
	// redis:) is unreachable: "fail_closed" (the default: 503, because a
	// limit or a partner's contractual quota that silently stops holding is
	// the unsafe side) or "fail_open" (each replica enforces its share of
	// every limit locally: the limit divided by ExpectedReplicas).
	RedisFailure string `yaml:"redis_failure"`
	// ExpectedReplicas is how many gateways share Redis (default 1).
	ExpectedReplicas int `yaml:"expected_replicas"`
	// IPv4Prefix and IPv6Prefix group clients for per-IP limits (defaults
	// 32 and 64: an IPv6 client usually holds a whole /64).
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// RedisKeyPrefix prefixes the Redis keys of limits and quotas, so
	// separate deployments can share one Redis (default "gatehouse:").
	RedisKeyPrefix string `yaml:"redis_key_prefix"`
	// LocalMaxKeys bounds the keys the in-process limiter tracks (default
	// 1048576, about 100 MiB at worst); past it the idle and then the
	// least-used keys are evicted, so a flood of distinct clients cannot
	// exhaust memory. Read at start only: counters outlive reloads.
	LocalMaxKeys int `yaml:"local_max_keys"`
	// RedisTimeout bounds one limit or quota decision in Redis (default
	// 100ms); past it the redis_failure policy applies to the request.
	RedisTimeout Duration `yaml:"redis_timeout"`
}

// Limit keys a RateLimit can count by.
const (
	LimitByConsumer   = "consumer"
	LimitByPartner    = "partner"
	LimitByCredential = "credential"
	LimitByIP         = "ip"
	LimitByAPI        = "api"
	LimitByOperation  = "operation"
)

// RateLimit is one limit of an API: Rate requests per period, with up to
// Burst at once, counted separately for every distinct value of the Per
// keys. A request the limit needs a consumer, partner or credential for but
// that has none (an anonymous call) is counted by its client IP instead.
type RateLimit struct {
	Name       string    `yaml:"name"`
	Per        LimitKeys `yaml:"per"`
	Rate       string    `yaml:"rate"`
	Burst      int       `yaml:"burst"`
	Operations []string  `yaml:"operations"`
}

// LimitKeys is one key (per: consumer) or several (per: [partner, operation]).
type LimitKeys []string

// UnmarshalYAML accepts a scalar or a sequence.
func (k *LimitKeys) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*k = LimitKeys{n.Value}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*k = list
	return nil
}

// PolicyName is the name the RateLimit headers give the limit.
func (r RateLimit) PolicyName() string {
	if r.Name != "" {
		return r.Name
	}
	return strings.Join(r.Per, "-")
}

// Quota is a partner's or consumer's request allowance per calendar day or
// month in a time zone.
type Quota struct {
	Requests int64  `yaml:"requests"`
	Per      string `yaml:"per"`
	TimeZone string `yaml:"time_zone"`
}

// Location is the quota's time zone (UTC when unset or invalid; validation
// reports invalid ones).
func (q Quota) Location() *time.Location {
	if q.TimeZone == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(q.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// ParseRate reads "100/s", "1000/m", "5/10s" or "10000/d" as a count and
// a period.
func ParseRate(s string) (count int, period time.Duration, err error) {
	num, per, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("rate %q: write requests/period, e.g. 100/s", s)
	}
	count, err = strconv.Atoi(num)
	if err != nil || count < 1 || count > 1_000_000_000 {
		return 0, 0, fmt.Errorf("rate %q: the count must be a whole number from 1 to 10^9", s)
	}
	switch per {
	case "s":
		period = time.Second
	case "m":
		period = time.Minute
	case "h":
		period = time.Hour
	case "d":
		period = 24 * time.Hour
	default:
		if days, ok := strings.CutSuffix(per, "d"); ok {
			if n, err := strconv.Atoi(days); err == nil && n > 0 && n <= 366 {
				return count, time.Duration(n) * 24 * time.Hour, nil
			}
		}
		period, err = time.ParseDuration(per)
		if err != nil || period < time.Millisecond || period > 366*24*time.Hour {
			return 0, 0, fmt.Errorf("rate %q: the period must be s, m, h, d or a duration from 1ms to 366d, e.g. 10s", s)
		}
	}
	return count, period, nil
}

func applyRateLimitDefaults(c *Config) {
	l := &c.Limits.RateLimitSettings
	if l.RedisFailure == "" {
		l.RedisFailure = "fail_closed"
	}
	if l.ExpectedReplicas == 0 {
		l.ExpectedReplicas = 1
	}
	if l.IPv4Prefix == 0 {
		l.IPv4Prefix = 32
	}
	if l.IPv6Prefix == 0 {
		l.IPv6Prefix = 64
	}
	setDur(&l.RedisTimeout, 100*time.Millisecond)
	for i := range c.APIs {
		for j := range c.APIs[i].RateLimits {
			r := &c.APIs[i].RateLimits[j]
			if r.Burst == 0 {
				if n, _, err := ParseRate(r.Rate); err == nil {
					r.Burst = n
				}
			}
		}
	}
}

// validateRateLimits checks what the schema cannot: rates, duplicate keys
// and names, time zones. Operation names are checked against the spec at
// compile time.
func validateRateLimits(c *Config, rep *Reporter) {
	if c.Limits.RedisFailure == "fail_open" && c.Redis == "" {
		rep.Warnf("/limits/redis_failure", "redis_failure applies only when redis is configured")
	}
	for i, a := range c.APIs {
		names := map[string]int{}
		for j, r := range a.RateLimits {
			ptr := fmt.Sprintf("/apis/%d/limits/%d", i, j)
			if _, _, err := ParseRate(r.Rate); err != nil {
				rep.Errorf(ptr+"/rate", "%v", err)
			}
			seen := map[string]bool{}
			for k, key := range r.Per {
				if seen[key] {
					rep.Errorf(fmt.Sprintf("%s/per/%d", ptr, k), "key %s is listed twice", key)
				}
				seen[key] = true
			}
			name := r.PolicyName()
			if prev, dup := names[name]; dup {
				rep.Errorf(ptr, "limit %q has the same name as /apis/%d/limits/%d: give one a distinct name", name, i, prev)
			} else {
				names[name] = j
			}
		}
	}
	for i, p := range c.Partners {
		validateQuota(rep, fmt.Sprintf("/partners/%d/quota", i), p.Quota)
	}
	for i, cs := range c.Consumers {
		validateQuota(rep, fmt.Sprintf("/consumers/%d/quota", i), cs.Quota)
	}
}

func validateQuota(rep *Reporter, ptr string, q *Quota) {
	if q == nil || q.TimeZone == "" {
		return
	}
	if _, err := time.LoadLocation(q.TimeZone); err != nil {
		rep.Errorf(ptr+"/time_zone", "unknown time zone %q: use an IANA name such as Europe/Berlin", q.TimeZone)
	}
}
