package bench

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/devcert"

	"github.com/gatehouse/gatehouse/internal/server"
)

// BenchmarkServeTargets runs the whole server in-process with the
// benchmark's own config (public, API key, JWT, rate-limited APIs) and
// times a request through its listener, so the cost of each pipeline
// feature is the difference between two sub-benchmarks:
//
//	go test -run '^$' -bench ServeTargets -benchmem -cpuprofile cpu.out ./internal/bench/
func BenchmarkServeTargets(b *testing.B) {
	up := httptest.NewServer(upstreamHandler())
	defer up.Close()
	dir := b.TempDir()
	auth, err := newAuthSetup(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer auth.close()
	ports, err := freePorts(3)
	if err != nil {
		b.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	certPEM, keyPEM, err := devcert.Generate(time.Now())
	if err != nil {
		b.Fatal(err)
	}
	for f, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	cfgFile, err := writeGatehouseConfig(dir, up.URL, ports[0], ports[1], ports[2], certFile, keyFile, auth, "")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := auth.issueKey(ctx, cfgFile); err != nil {
		b.Fatal(err)
	}
	srv, err := server.Start(ctx, server.Options{ConfigPath: cfgFile, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	base := "http://" + ports[0]
	tok, err := auth.bearer()
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, path, hdr, val string }{
		{"public", benchPath, "", ""},
		{"apikey", apiKeyBasePath + benchOpPath, "X-API-Key", auth.apiKey},
		{"jwt", jwtBasePath + benchOpPath, "Authorization", "Bearer " + tok},
		{"ratelimit", rateLimitBasePath + benchOpPath, "", ""},
	} {
		b.Run(tc.name, func(b *testing.B) { getInParallel(b, base+tc.path, tc.hdr, tc.val) })
	}
}
