package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
)

// auditModes are the audit benchmark targets: the same API as
// gatehouse-http, served by a Gatehouse process of its own with the audit
// trail on, so the ratio to the bare proxy is what recording costs.
var auditModes = []string{"buffered", "durable"}

// auditIndex is the audit.index setting of the audit targets. The rows
// measure writing the signed log; filling the store's query index is a
// separate background cost (a JSON decode and a SQLite insert per record)
// that a deployment may move off the gateway with index: off.
var auditIndex = "off"

// startAuditGatehouse starts a Gatehouse with audit.mode = mode and returns
// it with its plain HTTP and admin addresses.
func startAuditGatehouse(ctx context.Context, dir, gh, upstreamURL, certFile, keyFile, mode string) (*proc, string, string, error) {
	sub := filepath.Join(dir, "audit-"+mode)
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return nil, "", "", err
	}
	skey, _, err := audit.GenerateKey("bench-audit")
	if err != nil {
		return nil, "", "", err
	}
	signer := filepath.Join(sub, "audit.key")
	if err := os.WriteFile(signer, []byte(skey), 0o600); err != nil {
		return nil, "", "", err
	}
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(3)
		if err != nil {
			return nil, "", "", err
		}
		cfgFile, err := writeGatehouseConfig(sub, upstreamURL, ports[0], ports[1], ports[2], certFile, keyFile, nil, "")
		if err != nil {
			return nil, "", "", err
		}
		f, err := os.OpenFile(cfgFile, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return nil, "", "", err
		}
		_, err = fmt.Fprintf(f, "audit: {dir: %q, mode: %s, signing_key_file: %q, index: %s}\n", filepath.Join(sub, "log"), mode, signer, auditIndex)
		f.Close()
		if err != nil {
			return nil, "", "", err
		}
		p, _, err := startProc("gatehouse audit-"+mode, filepath.Join(sub, "gatehouse.log"), gh,
			[]string{"serve", "--config", cfgFile}, nil, false, 0)
		if err != nil {
			return nil, "", "", err
		}
		err = waitReady(ctx, p, "http://"+ports[2]+"/readyz", 30*time.Second)
		if err == nil {
			return p, ports[0], ports[2], nil
		}
		p.stop(5 * time.Second)
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return nil, "", "", err
		}
	}
}
