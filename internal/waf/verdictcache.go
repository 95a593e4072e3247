package waf

import (
	"crypto/sha256"
	"encoding/binary"
	"net/http"
	"slices"
	"sync"
)

// verdictCache remembers the verdicts of recent bodyless requests, keyed by
// a SHA-256 of everything Inspect hands Coraza: method, request target,
// protocol, Host, every header name and value, Transfer-Encoding and the
// client IP. The Core Rule Set keeps no state between transactions (no
// persistent collections are loaded), so the same input always yields the
// same verdict; a repeated request (a polling client, a health check, a
// retried call, or an attacker replaying a payload) skips the ~0.5 ms of
// rule evaluation. Changing any byte Coraza would see changes the key, so
// the cache cannot be used to smuggle a different request past a cached
// "clean"; SHA-256 makes a crafted collision infeasible.
//
// Bodies are not cached: they vary far more, and hashing a large one would
// eat into what a hit saves. Infrastructure failures (Verdict.Err) are
// never cached.
//
// Memory is bounded: at most verdictCacheSize entries of a few hundred
// bytes; when full, an arbitrary entry makes room (Go's map iteration
// order), which is as good as LRU for a cache whose hits are bursts of
// identical requests.
type verdictCache struct {
	mu sync.Mutex
	m  map[[32]byte]Verdict
}

const verdictCacheSize = 4096

func (c *verdictCache) get(k [32]byte) (Verdict, bool) {
	c.mu.Lock()
	v, ok := c.m[k]
	c.mu.Unlock()
	return v, ok
}

func (c *verdictCache) put(k [32]byte, v Verdict) {
	if v.Err != nil {
		return
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[[32]byte]Verdict, 64)
	}
	if len(c.m) >= verdictCacheSize {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = v
	c.mu.Unlock()
}

func (c *verdictCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// requestKey hashes what Inspect gives Coraza for a bodyless request.
// Every field is length-prefixed, so no two different inputs serialise to
// the same bytes; headers are sorted, since Inspect adds them in map order
// and the CRS verdict does not depend on it.
func requestKey(r *http.Request, uri, proto, clientIP string) [32]byte {
	h := sha256.New()
	var n [8]byte
	field := func(s string) {
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(r.Method)
	field(uri)
	field(proto)
	field(r.Host)
	field(clientIP)
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vs := r.Header[k]
		field(k)
		binary.LittleEndian.PutUint64(n[:], uint64(len(vs)))
		h.Write(n[:])
		for _, v := range vs {
			field(v)
		}
	}
	field("\x00te")
	for _, te := range r.TransferEncoding {
		field(te)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}
