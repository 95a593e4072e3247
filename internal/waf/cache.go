package waf

import "sync"

// Cache shares WAF instances between routes with equal configs: an instance
// costs 15-90 ms of CPU to build and 2-12 MiB to keep (see the package doc),
// so the gateway builds one per distinct Config, not one per route. Keep one
// Cache for the life of the process, so a reload reuses unchanged instances,
// and call Retain once the reloaded configuration is live.
type Cache struct {
	mu      sync.Mutex
	entries map[string]*cacheEntry
}

type cacheEntry struct {
	ready chan struct{} // closed when waf and err are set
	waf   *WAF
	err   error
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{entries: map[string]*cacheEntry{}}
}

// Get returns the shared instance for cfg, building it on first use.
// Concurrent calls for the same config wait for one build; builds for
// different configs run in parallel. A failed build is not remembered.
func (c *Cache) Get(cfg Config) (*WAF, error) {
	n, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	key := n.key()

	c.mu.Lock()
	if e, ok := c.entries[key]; ok {
		c.mu.Unlock()
		<-e.ready
		return e.waf, e.err
	}
	e := &cacheEntry{ready: make(chan struct{})}
	c.entries[key] = e
	c.mu.Unlock()

	e.waf, e.err = newNormalized(n)
	close(e.ready)
	if e.err != nil {
		c.mu.Lock()
		if c.entries[key] == e {
			delete(c.entries, key)
		}
		c.mu.Unlock()
	}
	return e.waf, e.err
}

// Retain closes and forgets every instance whose config is not in keep: call
// it once a reloaded configuration is live, with the configs it uses.
// Requests still running on a dropped instance finish normally. Invalid
// configs in keep are ignored.
func (c *Cache) Retain(keep ...Config) {
	live := make(map[string]bool, len(keep))
	for _, cfg := range keep {
		if n, err := cfg.normalize(); err == nil {
			live[n.key()] = true
		}
	}
	var drop []*WAF
	c.mu.Lock()
	for key, e := range c.entries {
		if live[key] {
			continue
		}
		select {
		case <-e.ready:
		default:
			continue // still building for a concurrent Get; leave it be
		}
		delete(c.entries, key)
		if e.waf != nil {
			drop = append(drop, e.waf)
		}
	}
	c.mu.Unlock()
	for _, w := range drop {
		_ = w.Close() // releases memoized expressions; cannot fail
	}
}

// Len is the number of instances held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
