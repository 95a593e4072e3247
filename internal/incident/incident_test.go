package incident

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/revoke"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/sqlite"
)

func newService(t *testing.T, webhook string) *Service {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := &config.Config{
		Partners: []config.Partner{
			{Name: "acme", Networks: []string{"203.0.113.0/24"}, SecurityContact: config.SecurityContact{Webhook: webhook}},
			{Name: "globex", SecurityContact: config.SecurityContact{Email: "sec@globex.example"}},
			{Name: "initech"},
		},
		Consumers: []config.Consumer{{Name: "acme-billing", Partner: "acme"}, {Name: "acme-reports", Partner: "acme"},
			{Name: "globex-app", Partner: "globex"}, {Name: "initech-app", Partner: "initech"}},
	}
	now := time.Now()
	for _, c := range []store.Credential{
		{ID: "k-acme-1", Kind: "apikey", Consumer: "acme-billing", Partner: "acme", CreatedAt: now, LastUsedAt: now, LastUsedIP: "198.51.100.7"},
		{ID: "k-acme-2", Kind: "apikey", Consumer: "acme-reports", Partner: "acme", CreatedAt: now},
		{ID: "k-globex", Kind: "apikey", Consumer: "globex-app", Partner: "globex", CreatedAt: now, LastUsedAt: now, LastUsedIP: "2001:db8::9"},
	} {
		if err := st.CreateCredential(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.DiscardHandler)
	return &Service{Store: st, Revocations: revoke.New(st, revoke.Options{Logger: log}), Config: cfg, Log: log,
		NotifyAttempts: 3, NotifyBackoff: time.Millisecond}
}

func actions(inc store.Incident) string {
	var a []string
	for _, ev := range inc.Events {
		a = append(a, ev.Action+"("+ev.Detail+")")
	}
	return strings.Join(a, " ")
}

func TestOpenScopes(t *testing.T) {
	var posts atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		posts.Add(1)
		w.WriteHeader(http.StatusInternalServerError) // always down
	}))
	defer hook.Close()
	s := newService(t, hook.URL)
	ctx := t.Context()

	// Consumer scope: its keys and its last-seen address, not the partner's network.
	inc, err := s.Open(ctx, OpenRequest{Scope: ScopeConsumer, Subject: "acme-billing", Reason: "stuffing", Actor: "a", Revoke: true, BlockIPs: true, Notify: true})
	if err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("a dead webhook must be reported: %v", err)
	}
	got := actions(inc)
	for _, want := range []string{"revoked(consumer acme-billing, credential k-acme-1)", "blocked(198.51.100.7/32)", "notify_failed(webhook of acme after 3 attempts"} {
		if !strings.Contains(got, want) {
			t.Errorf("timeline %s lacks %s", got, want)
		}
	}
	if strings.Contains(got, "203.0.113.0/24") {
		t.Error("a consumer incident blocked the whole partner network")
	}
	if posts.Load() != 3 {
		t.Errorf("webhook attempts = %d, want 3", posts.Load())
	}
	if ok, _ := s.Revocations.Revoked(&authn.Principal{Consumer: "acme-reports", Partner: "acme", CredentialID: "k-acme-2"}); ok {
		t.Error("the partner's other consumer was revoked")
	}
	if c, _ := s.Store.GetCredential(ctx, "k-acme-1"); c.RevokedAt.IsZero() {
		t.Error("the credential is not marked revoked in the store")
	}

	// Partner scope: every consumer's key, the declared network.
	inc, err = s.Open(ctx, OpenRequest{Scope: ScopePartner, Subject: "acme", Reason: "breach", Actor: "a", Revoke: true, BlockIPs: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(inc); !strings.Contains(got, "partner acme") || !strings.Contains(got, "credential k-acme-2") || !strings.Contains(got, "203.0.113.0/24") {
		t.Errorf("partner timeline: %s", got)
	}
	if !s.Revocations.BlockedIP(netip.MustParseAddr("203.0.113.9")) {
		t.Error("partner network not blocked")
	}

	// Credential scope with an IPv6 last-seen address; email-only contact.
	inc, err = s.Open(ctx, OpenRequest{Scope: ScopeCredential, Subject: "k-globex", Reason: "pasted", Actor: "a", Revoke: true, BlockIPs: true, Notify: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(inc); !strings.Contains(got, "blocked(2001:db8::9/128)") || !strings.Contains(got, "notify_manual(no webhook; tell sec@globex.example by hand)") {
		t.Errorf("credential timeline: %s", got)
	}
	if ok, kind := s.Revocations.Revoked(&authn.Principal{CredentialID: "k-globex", Consumer: "globex-app", Partner: "globex"}); !ok || kind != store.RevokeCredential {
		t.Errorf("credential not revoked: %v %s", ok, kind)
	}
	if ok, _ := s.Revocations.Revoked(&authn.Principal{CredentialID: "other", Consumer: "globex-app", Partner: "globex"}); ok {
		t.Error("a credential incident revoked the whole consumer")
	}

	// Restore lifts the partner and network, not the credentials.
	lifted, err := s.Restore(ctx, inc.ID, "b")
	if err != nil || len(lifted) != 1 || lifted[0] != "network 2001:db8::9/128" {
		t.Errorf("restore credential incident: %v %v", lifted, err)
	}
	if ok, _ := s.Revocations.Revoked(&authn.Principal{CredentialID: "k-globex"}); !ok {
		t.Error("restore revived a revoked credential")
	}
}

func TestOpenRefusals(t *testing.T) {
	s := newService(t, "")
	for _, req := range []OpenRequest{
		{Scope: ScopePartner, Subject: "acme"},                      // no reason
		{Scope: ScopePartner, Subject: "umbrella", Reason: "x"},     // unknown partner
		{Scope: ScopeConsumer, Subject: "ghost", Reason: "x"},       // unknown consumer
		{Scope: ScopeCredential, Subject: "k-missing", Reason: "x"}, // unknown credential
		{Scope: "tenant", Subject: "acme", Reason: "x"},             // unknown scope
	} {
		if inc, err := s.Open(t.Context(), req); err == nil || inc.ID != "" {
			t.Errorf("Open(%+v) = %v, %v; want a refusal and no incident", req, inc.ID, err)
		}
	}
	list, err := s.Store.ListIncidents(t.Context(), true)
	if err != nil || len(list) != 0 {
		t.Errorf("refused opens left incidents: %v %v", list, err)
	}
	// initech has no contact at all: notify fails loudly, revocation still happens.
	inc, err := s.Open(t.Context(), OpenRequest{Scope: ScopePartner, Subject: "initech", Reason: "x", Revoke: true, Notify: true})
	if err == nil || !strings.Contains(actions(inc), "notify_failed(partner initech declares no security contact)") || !strings.Contains(actions(inc), "revoked(partner initech)") {
		t.Errorf("no-contact partner: %v %s", err, actions(inc))
	}
}
