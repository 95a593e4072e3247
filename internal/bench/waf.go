package bench

import (
	"context"
	"fmt"
	"net"
	"net/url"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	txhttp "github.com/corazawaf/coraza/v3/http"

	"github.com/gatehouse/gatehouse/internal/gateway"
)

// The WAF rows compare Gatehouse with the WAF in block mode at paranoia 1
// (target gatehouse-waf-p1) against two baselines: the bare proxy (what the
// WAF costs) and the naive integration, the bare proxy wrapped in Coraza's
// own http.WrapHandler with the same CRS (target gatehouse-waf-p1-naive,
// the ratio the issue sets at >= 1.5).
//
// Both sides detect the same: CRS v4 from the same embedded module, block
// mode, paranoia 1, threshold 5, PUT/PATCH/DELETE allowed, and rule 920350
// (numeric Host header) excluded on both because the load generator
// addresses 127.0.0.1. The naive side is configured the way Coraza's README
// shows (coraza.conf-recommended, every CRS file), so it also buffers and
// inspects responses, which is what a naive integration pays for.
const (
	wafBasePath = "/bench-waf"
	wafPath     = wafBasePath + benchOpPath

	// TargetWAFNaiveRatio is the throughput Gatehouse with the WAF must
	// reach relative to the naive WrapHandler integration.
	TargetWAFNaiveRatio = 1.5
)

const naiveWAFDirectives = `
Include @coraza.conf-recommended
Include @crs-setup.conf.example
SecAction "id:900200,phase:1,pass,t:none,nolog,setvar:'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE'"
Include @owasp_crs/*.conf
SecRuleEngine On
SecRuleRemoveById 920350
`

// wafAPIConfig is the Gatehouse API of the WAF rows.
func wafAPIConfig(spec, upstream string) string {
	return fmt.Sprintf(`  - name: bench-waf
    version: v1
    owner: {team: bench}
    spec: %q
    upstream: %s
    route: {base_path: %s}
    policies:
      - {operation: "*", public: true}
    waf: {mode: block, paranoia: 1, inbound_threshold: 5, exclude_rules: [920350]}
`, spec, upstream, wafBasePath)
}

// serveNaiveWAF is the naive integration: the bare proxy inside
// txhttp.WrapHandler.
func serveNaiveWAF(ctx context.Context, upstream string) error {
	target, err := url.Parse(upstream)
	if err != nil || target.Host == "" {
		return fmt.Errorf("%s=%q is not an upstream URL", envUpstream, upstream)
	}
	w, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(coreruleset.FS).WithDirectives(naiveWAFDirectives))
	if err != nil {
		return fmt.Errorf("build the naive WAF: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := gateway.NewServer(txhttp.WrapHandler(w, NewBareProxy(target)), defaultLimits())
	fmt.Printf("ready http=%s\n", ln.Addr())
	return serveUntil(ctx, srv, ln, false)
}
