package detect

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/sqlite"
)

type recordedResponses struct {
	mu      sync.Mutex
	revoked []string
	lifted  []string
}

func (r *recordedResponses) Revoke(_ context.Context, kind, subject, _ string, _ time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revoked = append(r.revoked, kind+" "+subject)
	return nil
}

func (r *recordedResponses) Lift(_ context.Context, kind, subject, _, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lifted = append(r.lifted, kind+" "+subject)
	return nil
}

func (r *recordedResponses) Throttle(_ context.Context, subject string, _ time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revoked = append(r.revoked, "throttle "+subject)
	return nil
}

func TestManagerDedupResponsesWebhooks(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var mu sync.Mutex
	var got []map[string]any
	fails := 1
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 { // the first delivery fails: the retry must carry it
			fails--
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		var v map[string]any
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &v)
		got = append(got, v)
	}))
	defer hook.Close()
	resp := &recordedResponses{}
	m := NewManager(ManagerOptions{Store: st, Responder: resp, Responses: map[string]string{DetIDWalk: ActionSuspendCredential},
		Webhooks: []Webhook{{URL: hook.URL, Format: "json", MinSeverity: "high"}}})
	ctx, cancel := context.WithCancel(t.Context())
	m.Start(ctx)
	defer func() { cancel(); m.Wait() }()

	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	walk := Finding{Detector: DetIDWalk, Severity: "high", Subject: "consumer:reports", Summary: "walk", Credential: "k-1",
		IP: netip.MustParseAddr("192.0.2.1"), Evidence: map[string]any{"consecutive": 10}, At: t0}
	m.Handle(walk)
	walk.At = t0.Add(10 * time.Minute)
	m.Handle(walk) // folded
	m.Handle(Finding{Detector: DetNewOperation, Severity: "low", Subject: "consumer:reports", Summary: "new op", At: t0})
	walk.At = t0.Add(2 * time.Hour)
	m.Handle(walk) // past the dedup window: a new alert

	list, err := st.ListAlerts(t.Context(), true, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("alerts = %+v, want 3 (two walks apart in time, one new-operation)", list)
	}
	var first store.Alert
	for _, a := range list {
		if a.Detector == DetIDWalk && a.FirstAt.Equal(t0) {
			first = a
		}
	}
	if first.Count != 2 || !first.LastAt.Equal(t0.Add(10*time.Minute)) || first.Response == "" {
		t.Errorf("folded alert = %+v", first)
	}
	if len(resp.revoked) != 2 || resp.revoked[0] != "credential k-1" {
		t.Errorf("responses = %v, want the credential suspended once per alert", resp.revoked)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	if len(got) != 2 || got[0]["detector"] != DetIDWalk || got[0]["evidence"].(map[string]any)["consecutive"] != 10.0 {
		t.Errorf("webhook bodies = %v (low-severity alert must be filtered, high ones retried)", got)
	}
	mu.Unlock()

	if _, err := m.Revert(t.Context(), first.ID, "alice"); err != nil || len(resp.lifted) != 1 || resp.lifted[0] != "credential k-1" {
		t.Errorf("revert: %v %v", err, resp.lifted)
	}
	if _, err := m.Revert(t.Context(), first.ID, "alice"); err == nil {
		t.Error("reverting twice succeeded")
	}
	// Acknowledged: the next finding opens a fresh alert instead of folding.
	if err := m.Ack(t.Context(), list[0].ID, "alice"); err != nil {
		t.Fatal(err)
	}
	walk.At = t0.Add(2*time.Hour + time.Minute)
	m.Handle(walk)
	if all, _ := st.ListAlerts(t.Context(), true, 0); len(all) != 4 {
		t.Errorf("after ack a new finding made %d alerts, want 4", len(all))
	}
}
