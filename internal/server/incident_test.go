package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/cli"
)

// runCLI runs the gatehouse CLI in-process.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	root := cli.NewRoot(&o, &e)
	root.SetArgs(args)
	err = root.Execute()
	return o.String(), e.String(), err
}

// statusWithin polls g until path answers want with the given header, and
// returns how long after start that was.
func statusWithin(t *testing.T, g *gw, want int, key string, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	for {
		s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", key)
		if s == want {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("still %d after %v, want %d", s, limit, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIncidentKillSwitch: `gatehouse incident open --partner acme --revoke
// --block-ips --notify` takes effect on two gateway processes within a
// second (Redis; the store poll is 10 s), notifies acme's webhook with
// retries, and records a timeline. Closing keeps everything blocked;
// restore re-enables the partner and its networks but not the revoked keys.
func TestIncidentKillSwitch(t *testing.T) {
	t.Parallel()
	redisURL := os.Getenv("GATEHOUSE_TEST_REDIS")
	if redisURL == "" {
		t.Skip("GATEHOUSE_TEST_REDIS not set: incident propagation test skipped")
	}
	dsn := freshPostgres(t)

	var mu sync.Mutex
	var notices [][]byte
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		mu.Lock()
		notices = append(notices, b)
		first := len(notices) == 1
		mu.Unlock()
		if first {
			http.Error(w, "busy", http.StatusServiceUnavailable) // the retry must carry it
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)

	orders := newEchoUpstream(t, "orders-backend")
	billing := newEchoUpstream(t, "billing-backend")
	dir := strings.Replace(defaultDirectory, "  - {name: acme}\n",
		"  - {name: acme, networks: [127.0.0.0/8], security_contact: {email: soc@acme.example, webhook: \""+hook.URL+"/sec\"}}\n", 1)
	cfg := idConfig{Postgres: dsn, Redis: redisURL, Identity: "  revocation_poll: 10s\n", Directory: dir,
		APIs: policyAPIs(orders.URL(), billing.URL(), "apikey")}
	text := cfg.render()
	a := startGatewayIn(t, t.TempDir(), text)
	b := startGatewayIn(t, t.TempDir(), text)
	cliCfg := filepath.Join(t.TempDir(), "gatehouse.yaml")
	if err := os.WriteFile(cliCfg, []byte(strings.Replace(text, "  token: ${GH_TEST_ADMIN_TOKEN}\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}

	// Warm-up: B's subscription is live once a revocation reaches it fast.
	warm, warmID := a.issueKey(t, "initech-app", nil, 0)
	if err := a.srv.Gateway().Keys().Revoke(t.Context(), warmID, "warm-up"); err != nil {
		t.Fatal(err)
	}
	refusedWithin(t, b, warm, time.Now(), 15*time.Second)

	acmeKey, _ := a.issueKey(t, "acme-billing", nil, 0)
	globexKey, _ := a.issueKey(t, "globex-ops", nil, 0)
	for _, g := range []*gw{a, b} {
		if g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", acmeKey) != 200 || g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", globexKey) != 200 {
			t.Fatal("keys do not work before the incident")
		}
	}

	// The CLI runs beside a poller on B: propagation is measured from the
	// timeline's "blocked" entry (written right after the revocations) to
	// the first 403 B answers.
	start := time.Now()
	type result struct {
		out, errOut string
		err         error
	}
	done := make(chan result, 1)
	go func() {
		out, errOut, err := runCLI(t, "incident", "open", "-c", cliCfg, "--partner", "acme", "--revoke", "--block-ips", "--notify",
			"--reason", "key leaked in a public repository", "--actor", "oncall@example.com")
		done <- result{out, errOut, err}
	}()
	statusWithin(t, b, http.StatusForbidden, globexKey, start, 10*time.Second)
	seenAt := time.Now()
	res := <-done
	if res.err != nil {
		t.Fatalf("incident open: %v\n%s", res.err, res.errOut)
	}
	id := strings.TrimSpace(res.out)
	if !strings.HasPrefix(id, "inc-") {
		t.Fatalf("incident open printed %q", res.out)
	}
	var blockedAt time.Time
	out, _, err := runCLI(t, "incident", "show", "-c", cliCfg, id, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var opened struct {
		Timeline []struct {
			At     time.Time
			Action string
		}
	}
	if err := json.Unmarshal([]byte(out), &opened); err != nil {
		t.Fatal(err)
	}
	for _, ev := range opened.Timeline {
		if ev.Action == "blocked" {
			blockedAt = ev.At
		}
	}
	lag := seenAt.Sub(blockedAt)
	t.Logf("block in force on the other gateway %v after it was recorded (%v after the CLI started; limit 1 s)",
		lag.Round(time.Millisecond), seenAt.Sub(start).Round(time.Millisecond))
	if blockedAt.IsZero() || lag > time.Second {
		t.Errorf("propagation took %v, want within 1 s", lag)
	}
	// The block covers acme's network (127.0.0.0/8 here, so every caller of
	// this test): 403 on A too.
	if s := a.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", acmeKey); s != 403 {
		t.Errorf("A after the incident: %d, want 403", s)
	}

	// Closing never silently restores access.
	if _, errOut, err := runCLI(t, "incident", "close", "-c", cliCfg, id, "--note", "root cause found"); err != nil {
		t.Fatalf("close: %v %s", err, errOut)
	}
	time.Sleep(200 * time.Millisecond)
	if s := b.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", globexKey); s != 403 {
		t.Errorf("after close B answers %d, want 403 still", s)
	}

	// Restore: networks and partner lifted; acme's revoked key stays dead.
	out, errOut, err := runCLI(t, "incident", "restore", "-c", cliCfg, id)
	if err != nil || !strings.Contains(out, "lifted partner acme") || !strings.Contains(out, "lifted network 127.0.0.0/8") {
		t.Fatalf("restore: %v\n%s%s", err, out, errOut)
	}
	start = time.Now()
	statusWithin(t, b, http.StatusOK, globexKey, start, time.Second)
	if s := b.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", acmeKey); s != 401 {
		t.Errorf("acme's leaked key after restore: %d, want 401 (credentials stay revoked)", s)
	}
	fresh, _ := a.issueKey(t, "acme-billing", nil, 0)
	statusWithin(t, b, http.StatusOK, fresh, time.Now(), time.Second)

	// The webhook: one failure, then the notice.
	mu.Lock()
	got := append([][]byte(nil), notices...)
	mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("webhook got %d posts, want 2 (a 503, then the retry)", len(got))
	}
	var n struct {
		Type, Incident, Partner, Reason string
		Actions                         []string
	}
	if err := json.Unmarshal(got[1], &n); err != nil || n.Type != "gatehouse.incident" || n.Incident != id || n.Partner != "acme" ||
		!strings.Contains(strings.Join(n.Actions, "|"), "blocked: 127.0.0.0/8") || !strings.Contains(strings.Join(n.Actions, "|"), "revoked: partner acme") {
		t.Errorf("notice = %s (%v)", got[1], err)
	}
	if strings.Contains(string(got[1]), acmeKey) {
		t.Error("the notice carries a key")
	}

	// The timeline.
	out, _, err = runCLI(t, "incident", "show", "-c", cliCfg, id, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var inc struct {
		Status   string
		Timeline []struct{ Actor, Action, Detail string }
	}
	if err := json.Unmarshal([]byte(out), &inc); err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, ev := range inc.Timeline {
		actions = append(actions, ev.Action)
	}
	if inc.Status != "closed" || strings.Join(actions, ",") != "opened,revoked,blocked,notified,closed,restored" || inc.Timeline[0].Actor != "oncall@example.com" {
		t.Errorf("incident %s: status %s, timeline %v", id, inc.Status, inc.Timeline)
	}
	out, _, _ = runCLI(t, "incident", "list", "-c", cliCfg)
	if strings.Contains(out, id) {
		t.Errorf("a closed incident is listed as open:\n%s", out)
	}
	out, _, _ = runCLI(t, "incident", "list", "-c", cliCfg, "--all")
	if !strings.Contains(out, id) || !strings.Contains(out, "closed") {
		t.Errorf("incident list --all:\n%s", out)
	}
}
