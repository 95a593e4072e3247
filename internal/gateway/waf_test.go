package gateway

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/metrics"
	"github.com/gatehouse/gatehouse/internal/route"
)

const wafTestSpec = `openapi: 3.1.0
info: {title: t, version: "1"}
paths:
  /a:
    get: {operationId: getA, responses: {"200": {description: ok}}}
  /b:
    get: {operationId: getB, responses: {"200": {description: ok}}}
  /c:
    get: {operationId: getC, responses: {"200": {description: ok}}}
`

func compileWAFConfig(t *testing.T, g *Gateway, dir, wafA, wafB string) *Runtime {
	t.Helper()
	cfg := `version: 1
listen: {https: 127.0.0.1:0, tls: {dev_cert: true, cert: ` + filepath.Join(dir, "c.pem") + `, key: ` + filepath.Join(dir, "k.pem") + `}}
admin: {listen: 127.0.0.1:0}
apis:
  - name: a
    version: v1
    owner: {team: t}
    spec: ` + filepath.Join(dir, "spec.yaml") + `
    upstream: http://127.0.0.1:9
    route: {base_path: /a}
    policies: [{operation: "*", public: true}]
    waf: ` + wafA + `
  - name: b
    version: v1
    owner: {team: t}
    spec: ` + filepath.Join(dir, "spec.yaml") + `
    upstream: http://127.0.0.1:9
    route: {base_path: /b}
    policies: [{operation: "*", public: true}]
    waf: ` + wafB + `
`
	l, err := config.LoadBytes(filepath.Join(dir, "gatehouse.yaml"), []byte(cfg), nil)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	rt, err := g.Compile(l)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return rt
}

// opByID finds API api's operation getX by routing GET /api/x.
func opByID(rt *Runtime, api, id string) *Operation {
	var ps route.Params
	res := rt.table.Match("", "GET", "/"+api+"/"+strings.ToLower(strings.TrimPrefix(id, "get")), &ps)
	if res.Status != route.Found {
		return nil
	}
	return res.Handler.(*Operation)
}

// TestWAFInstancesShared: APIs and operations with equal WAF settings share
// one compiled instance, a reload of the same settings reuses it, an
// operation override gets its own, "off" gets none, and a swap to a config
// that no longer uses an instance releases it.
func TestWAFInstancesShared(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "spec.yaml"), []byte(wafTestSpec), 0o600); err != nil {
		t.Fatal(err)
	}
	g := New(metrics.New("test"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	block := `{mode: block, paranoia: 1, operations: {getB: {mode: detect}, getC: {mode: "off"}}}`
	rt1 := compileWAFConfig(t, g, dir, block, `{mode: block, exclude_rules: []}`)
	g.Swap(rt1)
	aA, aB, aC, bA := opByID(rt1, "a", "getA"), opByID(rt1, "a", "getB"), opByID(rt1, "a", "getC"), opByID(rt1, "b", "getA")
	if aA.waf == nil || aA.waf != bA.waf {
		t.Errorf("equal settings on two APIs: instances %p and %p, want one shared", aA.waf, bA.waf)
	}
	if aB.waf == nil || aB.waf == aA.waf {
		t.Error("the detect override shares the block instance")
	}
	if aC.waf != nil {
		t.Error("an operation with the WAF off has an instance")
	}
	rt2 := compileWAFConfig(t, g, dir, block, `{mode: block}`)
	if opByID(rt2, "a", "getA").waf != aA.waf || opByID(rt2, "a", "getB").waf != aB.waf {
		t.Error("a reload with the same settings built new instances")
	}
	g.Swap(rt2)
	n := g.wafs.Len()
	rt3 := compileWAFConfig(t, g, dir, `{mode: "off"}`, `{mode: "off"}`)
	g.Swap(rt3)
	if g.wafs.Len() >= n {
		t.Errorf("after a swap to WAF off, %d instances are still held (was %d)", g.wafs.Len(), n)
	}
}
