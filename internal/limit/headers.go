package limit

import (
	"net/http"
	"strconv"
	"time"
)

// Response header fields of draft-ietf-httpapi-ratelimit-headers-10
// (September 2025; the structured-field form it shares with -08 and -09):
//
//	RateLimit-Policy: "orders";q=100;w=1
//	RateLimit: "orders";r=42;t=1
//
// RateLimit-Policy (§3) is a List of Items: the policy name as a String
// with q (quota units, here requests) and w (window, whole seconds).
// RateLimit (§4) is a List of Items: the policy name with r (remaining) and
// t (seconds until the quota resets). For GCRA, q/w is the sustained rate,
// r the requests admissible right now (at most the burst) and t the time
// until the full burst is back; on a denial t equals Retry-After, as §5
// asks ("the reset keyword SHOULD reference the same point in time").
const (
	HeaderRateLimitPolicy = "RateLimit-Policy"
	HeaderRateLimit       = "RateLimit"
	HeaderRetryAfter      = "Retry-After"
)

// Headers sets RateLimit-Policy and RateLimit for one policy, and on a
// denial Retry-After in whole seconds, rounded up (a client that waits
// exactly that long conforms).
func Headers(h http.Header, policy string, res Result, r Rule) {
	var buf [128]byte
	h.Set(HeaderRateLimitPolicy, string(appendPolicy(buf[:0], policy, r)))
	h.Set(HeaderRateLimit, string(appendLimit(buf[:0], policy, res)))
	if !res.Allowed {
		h.Set(HeaderRetryAfter, strconv.FormatInt(ceilSeconds(res.RetryAfter, 1), 10))
	}
}

// HeadersAll sets the headers for several limits of one request (results as
// filled by AllowMulti, allowed the overall decision): every policy is
// listed in both fields, and Retry-After is the longest wait among the
// checks that denied. Policy names should be distinct.
func HeadersAll(h http.Header, checks []Check, results []Result, allowed bool) {
	if len(checks) == 0 || len(results) != len(checks) {
		return
	}
	pol := make([]byte, 0, 48*len(checks))
	lim := make([]byte, 0, 32*len(checks))
	var wait time.Duration
	for i, c := range checks {
		if i > 0 {
			pol = append(pol, ", "...)
			lim = append(lim, ", "...)
		}
		pol = appendPolicy(pol, c.Policy, c.Rule)
		lim = appendLimit(lim, c.Policy, results[i])
		if !results[i].Allowed {
			wait = max(wait, results[i].RetryAfter)
		}
	}
	h.Set(HeaderRateLimitPolicy, string(pol))
	h.Set(HeaderRateLimit, string(lim))
	if !allowed {
		h.Set(HeaderRetryAfter, strconv.FormatInt(ceilSeconds(wait, 1), 10))
	}
}

func appendPolicy(b []byte, name string, r Rule) []byte {
	q, w := policyWindow(r)
	b = appendSFString(b, name)
	b = append(b, ";q="...)
	b = strconv.AppendInt(b, q, 10)
	b = append(b, ";w="...)
	return strconv.AppendInt(b, w, 10)
}

func appendLimit(b []byte, name string, res Result) []byte {
	t := ceilSeconds(res.ResetAfter, 0)
	if !res.Allowed {
		t = ceilSeconds(res.RetryAfter, 1)
	}
	b = appendSFString(b, name)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, int64(max(res.Remaining, 0)), 10)
	b = append(b, ";t="...)
	return strconv.AppendInt(b, t, 10)
}

// policyWindow expresses Rate per Period as q units per w whole seconds
// (the draft has no sub-second windows): a whole-second period is used as
// is; a shorter one is scaled to one second; a longer fractional one is
// rounded up to whole seconds, q scaled down so it never overstates.
func policyWindow(r Rule) (q, w int64) {
	if r.Rate <= 0 || r.Period <= 0 {
		return 0, 0
	}
	if r.Period%time.Second == 0 {
		return int64(r.Rate), int64(r.Period / time.Second)
	}
	w = max(ceilSeconds(r.Period, 1), 1)
	// q = Rate × w / Period, in float to avoid overflow; floor.
	q = int64(float64(r.Rate) * float64(time.Duration(w)*time.Second) / float64(r.Period))
	return q, w
}

// ceilSeconds rounds d up to whole seconds, at least floor.
func ceilSeconds(d time.Duration, floor int64) int64 {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return max(s, floor)
}

// appendSFString writes s as an RFC 8941 sf-string: printable ASCII only,
// with '"' and '\' escaped. Other bytes (control characters, non-ASCII)
// cannot appear in one and become '_', so a policy name from config can
// never break the header.
func appendSFString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c > 0x7e:
			b = append(b, '_')
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// PolicyValue is the RateLimit-Policy value for checks. It depends on the
// policies and rules only, so a caller can build it once per route.
func PolicyValue(checks []Check) string {
	b := make([]byte, 0, 48*len(checks))
	for i, c := range checks {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendPolicy(b, c.Policy, c.Rule)
	}
	return string(b)
}

// AppendState appends the RateLimit value for one decision (as HeadersAll
// writes it) to b, and returns the Retry-After seconds for a denial (0 when
// allowed).
func AppendState(b []byte, checks []Check, results []Result, allowed bool) ([]byte, int64) {
	var wait time.Duration
	for i, c := range checks {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendLimit(b, c.Policy, results[i])
		if !results[i].Allowed {
			wait = max(wait, results[i].RetryAfter)
		}
	}
	if allowed {
		return b, 0
	}
	return b, ceilSeconds(wait, 1)
}
