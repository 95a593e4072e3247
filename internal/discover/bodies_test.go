package discover

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

func TestBodySamplerShapes(t *testing.T) {
	b := NewBodySampler()
	now := time.Unix(1_800_000_000, 0)
	bodies := []string{
		`{"sku":"a-1","qty":2,"price":12.5,"tags":["x"],"ship":{"zip":"10115","express":true},"note":null}`,
		`{"sku":"b-2","qty":1,"price":3,"tags":[],"ship":{"zip":"75001","express":false},"coupon":"SAVE"}`,
	}
	for i, body := range bodies {
		at := now.Add(time.Duration(i) * 11 * time.Second) // past the per-endpoint spacing
		if !b.Want("Shop.example:443", "POST", "/orders/123/lines", at) {
			t.Fatalf("sample %d not wanted", i)
		}
		b.Offer("Shop.example:443", "POST", "/orders/123/lines", []byte(body))
	}
	if b.Want("shop.example", "POST", "/orders/456/lines", now.Add(15*time.Second)) {
		t.Error("a second sample within 10 s of the last was wanted")
	}
	b.Offer("shop.example", "POST", "/orders/9/lines", []byte(`not json`)) // ignored
	entries := []store.DiscoveredEndpoint{
		{Host: "shop.example", Method: "POST", Template: "/orders/{int}/lines"},
		{Host: "shop.example", Method: "GET", Template: "/orders/{int}/lines"},
	}
	b.Apply(entries)
	if entries[1].BodySchema != "" {
		t.Errorf("GET got a body schema: %s", entries[1].BodySchema)
	}
	var s map[string]any
	if err := json.Unmarshal([]byte(entries[0].BodySchema), &s); err != nil {
		t.Fatalf("schema %q: %v", entries[0].BodySchema, err)
	}
	props := s["properties"].(map[string]any)
	want := map[string]string{"sku": `"string"`, "qty": `"integer"`, "price": `"number"`, "note": `"null"`, "coupon": `"string"`}
	for name, typ := range want {
		got, _ := json.Marshal(props[name].(map[string]any)["type"])
		if string(got) != typ {
			t.Errorf("%s type %s, want %s", name, got, typ)
		}
	}
	ship := props["ship"].(map[string]any)["properties"].(map[string]any)
	if ship["express"].(map[string]any)["type"] != "boolean" || props["tags"].(map[string]any)["items"].(map[string]any)["type"] != "string" {
		t.Errorf("nested shapes: %s", entries[0].BodySchema)
	}
	for _, v := range []string{"a-1", "10115", "SAVE", "12.5"} {
		if strings.Contains(entries[0].BodySchema, v) {
			t.Errorf("a value (%s) reached the schema", v)
		}
	}
}

// TestBodySamplerBounded: a flood of endpoints and wide objects stays bounded.
func TestBodySamplerBounded(t *testing.T) {
	b := NewBodySampler()
	now := time.Unix(1_800_000_000, 0)
	wide := map[string]int{}
	for i := range 500 {
		wide["f"+strings.Repeat("x", i%50)+string(rune('a'+i%26))] = i
	}
	body, _ := json.Marshal(wide)
	for i := range 5000 {
		at := now.Add(time.Duration(i) * 100 * time.Millisecond)
		path := "/r" + strings.Repeat("a", i%40) + "/" + string(rune('a'+i%26)) + "/x" + string(rune('a'+(i/26)%26))
		if b.Want("h", "POST", path, at) {
			b.Offer("h", "POST", path, body)
		}
	}
	if len(b.shapes) > maxSampledKeys {
		t.Errorf("%d endpoints sampled, bound %d", len(b.shapes), maxSampledKeys)
	}
	for _, s := range b.shapes {
		if len(s.props) > maxShapeProps {
			t.Errorf("object keeps %d properties, bound %d", len(s.props), maxShapeProps)
		}
	}
	// Many different deep samples into one endpoint stay within the node budget.
	d := NewBodySampler()
	for i := range 200 {
		doc := map[string]any{}
		cur := doc
		for j := range 5 {
			next := map[string]any{}
			for k := range 30 {
				next[fmt.Sprintf("k%d_%d_%d", i, j, k)] = k
			}
			cur[fmt.Sprintf("n%d", i)] = next
			cur = next
		}
		body, _ := json.Marshal(doc)
		d.Offer("h", "POST", "/deep", body)
	}
	var count func(s *jsonShape) int
	count = func(s *jsonShape) int {
		n := 1
		for _, p := range s.props {
			n += count(p)
		}
		if s.items != nil {
			n += count(s.items)
		}
		return n
	}
	for _, s := range d.shapes {
		if n := count(s); n > maxShapeNodes+1 {
			t.Errorf("schema holds %d nodes, bound %d", n, maxShapeNodes+1)
		}
	}
}

// TestBodySamplerCheapWhenBusy: past the per-second budget, Want neither
// templates the path nor allocates.
func TestBodySamplerCheapWhenBusy(t *testing.T) {
	b := NewBodySampler()
	now := time.Unix(1_800_000_000, 0)
	for range maxSamplesPerSec {
		b.Want("h", "POST", "/orders/1/lines", now)
	}
	if allocs := testing.AllocsPerRun(1000, func() { b.Want("h", "POST", "/orders/2/lines", now) }); allocs != 0 {
		t.Errorf("Want allocates %v times per call once the budget is spent", allocs)
	}
	if b.Want("h", "POST", "/other/3", now) {
		t.Error("a sample was granted past the per-second budget")
	}
	if !b.Want("h", "POST", "/other/3", now.Add(time.Second)) {
		t.Error("the next second's budget was not granted")
	}
}

// FuzzBodySampler: any request body (untrusted) is either ignored or
// reduced to a bounded, valid JSON Schema that carries no string value of
// the body, and nothing panics.
func FuzzBodySampler(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[{"b":"x"},{"b":2}]`, `{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}`, `null`, `"str"`, `{"a":1e400}`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		b := NewBodySampler()
		now := time.Unix(1_800_000_000, 0)
		if !b.Want("h", "POST", "/x", now) {
			t.Fatal("first sample refused")
		}
		b.Offer("h", "POST", "/x", body)
		e := []store.DiscoveredEndpoint{{Host: "h", Method: "POST", Template: "/x"}}
		b.Apply(e)
		if e[0].BodySchema == "" {
			return
		}
		if !json.Valid([]byte(e[0].BodySchema)) || len(e[0].BodySchema) > 64<<10 {
			t.Fatalf("schema %q", e[0].BodySchema)
		}
		var v any
		if json.Unmarshal(body, &v) == nil {
			if s, ok := v.(string); ok && len(s) > 8 && strings.Contains(e[0].BodySchema, s) {
				t.Fatalf("a value reached the schema: %q", s)
			}
		}
	})
}
