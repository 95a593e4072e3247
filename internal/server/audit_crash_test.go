package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
)

// crashProc is a gatehouse serve child process.
type crashProc struct {
	cmd   *exec.Cmd
	https string
	done  chan error
}

func startServe(t *testing.T, bin, cfgPath string) *crashProc {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--config", cfgPath, "--log-level", "info")
	cmd.Env = append(os.Environ(), "GH_TEST_ADMIN_TOKEN="+adminToken)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &crashProc{cmd: cmd, done: make(chan error, 1)}
	ready := make(chan string, 1)
	var logMu sync.Mutex
	var logs strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logs.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "gatehouse ready" {
				ready <- m["https"].(string)
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("gatehouse log:\n%s", logs.String())
			logMu.Unlock()
		}
	})
	select {
	case p.https = <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("gatehouse serve not ready after 20s")
	}
	return p
}

// TestAuditSurvivesKill9 runs the real binary under load, kills it with
// SIGKILL mid-traffic, restarts it, and checks the log: in durable mode
// every request that got a response has its record; in buffered mode the
// loss stays within the flush window and the restart is visible to verify.
func TestAuditSurvivesKill9(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("the go command is needed to build gatehouse for the crash test")
	}
	bin := filepath.Join(t.TempDir(), "gatehouse")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/gatehouse/gatehouse/cmd/gatehouse").CombinedOutput(); err != nil {
		t.Fatalf("go build gatehouse: %v\n%s", err, out)
	}
	for _, mode := range []string{"durable", "buffered"} {
		t.Run(mode, func(t *testing.T) {
			up := newEchoUpstream(t, "orders")
			keyFile, pubFile := auditKeys(t)
			cfg := gwConfig{APIs: []apiConfig{ordersAPI(up.URL())}}
			dir, cfgPath := prepareDir(t, cfg.render())
			adir := filepath.Join(dir, "data", "audit")
			// checkpoint_interval is long so the crash leaves an unsigned tail.
			extra := fmt.Sprintf("audit:\n  dir: %s\n  mode: %s\n  signing_key_file: %s\n  checkpoint_every: 100000\n  checkpoint_interval: 1h\n", adir, mode, keyFile)
			writeFileAtomic(t, cfgPath, cfg.render()+extra)

			p := startServe(t, bin, cfgPath)
			pem, err := os.ReadFile(filepath.Join(dir, "certs", "gateway.crt"))
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(pem)
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil,
				TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: 8}}
			defer client.CloseIdleConnections()

			type ack struct {
				id string
				at time.Time
			}
			var mu sync.Mutex
			var acked []ack
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 5000 && ctx.Err() == nil; i++ {
						req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+p.https+fmt.Sprintf("/orders/v1/orders/%d-%d", w, i), nil)
						resp, err := client.Do(req)
						if err != nil {
							return // the process is gone
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == 200 {
							mu.Lock()
							acked = append(acked, ack{resp.Header.Get("X-Request-Id"), time.Now()})
							mu.Unlock()
						}
					}
				}()
			}
			// Kill once traffic is flowing.
			eventually(t, 10*time.Second, "traffic flowing", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(acked) >= 300
			})
			if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killedAt := time.Now()
			<-p.done
			wg.Wait()
			cancel()

			// Restart on the same log, then stop cleanly.
			p2 := startServe(t, bin, cfgPath)
			if err := p2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-p2.done:
			case <-time.After(20 * time.Second):
				t.Fatal("gatehouse did not stop on SIGTERM")
			}

			have := map[string]bool{}
			for _, r := range readRecords(t, adir) {
				if id, ok := r["request_id"].(string); ok {
					have[id] = true
				}
			}
			var lost []ack
			for _, a := range acked {
				if !have[a.id] {
					lost = append(lost, a)
				}
			}
			v, err := audit.LoadVerifier(pubFile)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := audit.Verify(adir, v)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Broken != nil {
				t.Fatalf("log broken after kill -9 and restart: %v", rep.Broken)
			}
			unclean := false
			for _, n := range rep.Notices {
				unclean = unclean || strings.Contains(n, "unclean shutdown")
			}
			if !unclean {
				t.Fatalf("verify does not show the crash: notices %v", rep.Notices)
			}
			t.Logf("%s: %d responses acknowledged, %d records in the log, %d acknowledged requests without a record; notices: %v",
				mode, len(acked), rep.Records, len(lost), rep.Notices)
			switch mode {
			case "durable":
				if len(lost) > 0 {
					t.Fatalf("durable mode lost %d acknowledged records, e.g. %s", len(lost), lost[0].id)
				}
			case "buffered":
				// Only what was acknowledged within the flush window (100 ms,
				// plus scheduling slack on a loaded machine) may be missing.
				for _, a := range lost {
					if killedAt.Sub(a.at) > 500*time.Millisecond {
						t.Fatalf("buffered mode lost a record acknowledged %s before the kill", killedAt.Sub(a.at))
					}
				}
			}
		})
	}
}
