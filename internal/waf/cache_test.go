package waf

import (
	"sync"
	"testing"
)

func TestCacheSharesEqualConfigs(t *testing.T) {
	c := NewCache()
	a, err := c.Get(Config{Mode: ModeDetect, ExcludeRuleIDs: []int{942100, 920420}, ExcludeTags: []string{"language-php", "attack-xss"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Get(Config{Mode: ModeDetect, Paranoia: 1, InboundThreshold: 5, BodyLimit: DefaultBodyLimit,
		ExcludeRuleIDs: []int{920420, 942100, 920420}, ExcludeTags: []string{"attack-xss", "language-php"}})
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("equal configs got different instances")
	}
	d, err := c.Get(Config{Mode: ModeDetect, ExcludeRuleIDs: []int{942100}})
	if err != nil {
		t.Fatal(err)
	}
	if d == a {
		t.Error("different configs share an instance")
	}
	off1, _ := c.Get(Config{Mode: ModeOff})
	off2, _ := c.Get(Config{Mode: ModeOff, Paranoia: 3})
	if off1 != off2 {
		t.Error("off configs got different instances")
	}
	if n := c.Len(); n != 3 {
		t.Errorf("Len() = %d, want 3", n)
	}
	if _, err := c.Get(Config{Mode: "nope"}); err == nil || c.Len() != 3 {
		t.Errorf("invalid config: err %v, Len %d", err, c.Len())
	}
}

func TestCacheBuildsOnceUnderConcurrency(t *testing.T) {
	c := NewCache()
	cfg := Config{Mode: ModeBlock, InboundThreshold: 7}
	const n = 8
	got := make([]*WAF, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			w, err := c.Get(cfg)
			if err != nil {
				t.Error(err)
			}
			got[i] = w
		})
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		if got[i] != got[0] {
			t.Fatal("concurrent Gets built more than one instance")
		}
	}
}

func TestCacheRetain(t *testing.T) {
	c := NewCache()
	keep := Config{Mode: ModeBlock, InboundThreshold: 8}
	drop := Config{Mode: ModeBlock, InboundThreshold: 9}
	kw, _ := c.Get(keep)
	dw, err := c.Get(drop)
	if err != nil {
		t.Fatal(err)
	}
	c.Retain(keep)
	if c.Len() != 1 {
		t.Fatalf("Len() = %d after Retain, want 1", c.Len())
	}
	if again, _ := c.Get(keep); again != kw {
		t.Error("Retain dropped a kept instance")
	}
	// A request still running on the dropped instance finishes normally.
	srv := startInspector(t, dw)
	if o := send(t, srv, attacks[4]); o.status != 403 { // XSS, score 20 > 9
		t.Errorf("closed instance stopped working: %v", o)
	}
	if err := dw.Close(); err != nil { // twice is fine
		t.Error(err)
	}
}
