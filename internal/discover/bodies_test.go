package discover

import (
	"encoding/json"
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
