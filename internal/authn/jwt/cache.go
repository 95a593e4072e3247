package jwt

import (
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
)

// DefaultTokenCacheSize bounds the verified-token cache of one issuer.
const DefaultTokenCacheSize = 10_000

// tokenCache remembers verified tokens by SHA-256 of the token, so a client
// repeating its token pays one signature verification per token lifetime,
// not one per request. It is bounded: when full, the oldest insertion is
// evicted (FIFO; lookups do not reorder, so a hit takes a read lock only).
// A hit is still checked against the clock (exp, nbf) and against the
// current key set (the signing key must still be published).
type tokenCache struct {
	mu      sync.RWMutex
	entries map[[32]byte]*cacheEntry
	ring    [][32]byte // insertion order; every map key appears once
	next    int
}

type cacheEntry struct {
	principal *authn.Principal
	exp       time.Time
	nbf       time.Time // zero if the token has none
	keyFP     [32]byte
}

func newTokenCache(size int) *tokenCache {
	if size <= 0 {
		return nil
	}
	return &tokenCache{entries: make(map[[32]byte]*cacheEntry, size), ring: make([][32]byte, 0, size)}
}

func (c *tokenCache) get(sum [32]byte) *cacheEntry {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	e := c.entries[sum]
	c.mu.RUnlock()
	return e
}

func (c *tokenCache) put(sum [32]byte, e *cacheEntry) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[sum]; ok {
		c.entries[sum] = e
		return
	}
	if len(c.ring) < cap(c.ring) {
		c.ring = append(c.ring, sum)
	} else {
		delete(c.entries, c.ring[c.next])
		c.ring[c.next] = sum
		c.next = (c.next + 1) % len(c.ring)
	}
	c.entries[sum] = e
}

func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
