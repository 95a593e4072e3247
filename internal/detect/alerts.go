package detect

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/webhook"
)

// Automatic responses a detector may be configured with.
const (
	ActionBlockIP           = "block_ip"
	ActionSuspendCredential = "suspend_credential"
	// ActionThrottle holds the credential (else the address) to a strict
	// rate on this replica instead of refusing it.
	ActionThrottle = "throttle"
)

// KindThrottle names a throttle in an alert's response ("throttle
// credential:ID until …" or "throttle ip:ADDR until …").
const KindThrottle = "throttle"

// Responder carries out automatic responses; the revocation list does it
// cluster-wide (see server wiring). Every response expires on its own and
// can be reverted early.
type Responder interface {
	// Revoke blocks kind/subject until the given time.
	Revoke(ctx context.Context, kind, subject, reason string, until time.Time) error
	// Lift ends it early (kind KindThrottle ends a throttle).
	Lift(ctx context.Context, kind, subject, by, reason string) error
	// Throttle holds subject ("ip:ADDR" or "credential:ID") to the
	// throttle rate until the given time.
	Throttle(ctx context.Context, subject string, until time.Time) error
}

// Webhook is an alert receiver.
type Webhook struct {
	URL string
	// Format is "slack" ({"text": ...}, Slack-compatible) or "json" (the alert).
	Format      string
	MinSeverity string
}

// ManagerOptions configure a Manager.
type ManagerOptions struct {
	Store     store.AlertStore
	Responder Responder // nil: no automatic responses
	// Responses maps a detector name to ActionBlockIP or ActionSuspendCredential.
	Responses   map[string]string
	ResponseTTL time.Duration // default 15 minutes
	Webhooks    []Webhook
	HTTP        *http.Client // default: 5 s timeout
	Registerer  prometheus.Registerer
	Log         *slog.Logger
	// DedupWindow folds findings about the same subject by the same
	// detector into one open alert while they keep coming (default 1 h).
	DedupWindow time.Duration
}

// Manager turns findings into deduplicated, stored alerts, runs automatic
// responses and delivers webhooks. Handle is called from the engine
// goroutine; Ack and Revert from the admin API.
type Manager struct {
	o         ManagerOptions
	anomalies *prometheus.CounterVec
	responses *prometheus.CounterVec
	hookFails prometheus.Counter

	mu   sync.Mutex
	open map[string]*store.Alert // detector|subject → its open alert

	hooks chan store.Alert
	wg    sync.WaitGroup
}

// maxOpen bounds the dedup table; beyond it the oldest entries go (a
// later finding then opens a fresh alert instead of folding).
const maxOpen = 10_000

// NewManager builds a Manager; call Start to deliver webhooks.
func NewManager(o ManagerOptions) *Manager {
	if o.ResponseTTL <= 0 {
		o.ResponseTTL = 15 * time.Minute
	}
	if o.DedupWindow <= 0 {
		o.DedupWindow = time.Hour
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	m := &Manager{o: o, open: map[string]*store.Alert{}, hooks: make(chan store.Alert, 256),
		anomalies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_anomalies_total",
			Help: "Anomaly findings by detector and severity (folded into alerts).",
		}, []string{"detector", "severity"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_alert_responses_total",
			Help: "Automatic responses to alerts by action and result.",
		}, []string{"action", "result"}),
		hookFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_alert_webhook_failures_total",
			Help: "Alert webhook deliveries that failed after every retry.",
		}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(m.anomalies, m.responses, m.hookFails)
	}
	return m
}

// Start delivers webhooks until ctx is done.
func (m *Manager) Start(ctx context.Context) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case a := <-m.hooks:
				m.deliver(ctx, a)
			}
		}
	}()
}

// Wait returns when the webhook goroutine has stopped.
func (m *Manager) Wait() { m.wg.Wait() }

// Handle records one finding.
func (m *Manager) Handle(f Finding) {
	m.anomalies.WithLabelValues(f.Detector, f.Severity).Inc()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	key := f.Detector + "|" + f.Subject
	ev, _ := json.Marshal(f.Evidence)

	m.mu.Lock()
	a, ok := m.open[key]
	if ok && a.AckedAt.IsZero() && f.At.Sub(a.LastAt) < m.o.DedupWindow {
		a.Count++
		a.LastAt = f.At
		a.Evidence, a.Summary = string(ev), f.Summary
		cp := *a
		m.mu.Unlock()
		if err := m.o.Store.SaveAlert(ctx, cp); err != nil {
			m.o.Log.Error("alert not stored", "alert", cp.ID, "err", err)
		}
		return
	}
	a = &store.Alert{ID: newAlertID(f.At), Detector: f.Detector, Severity: f.Severity, Subject: f.Subject, Summary: f.Summary,
		Evidence: string(ev), Count: 1, FirstAt: f.At, LastAt: f.At}
	if len(m.open) >= maxOpen {
		for k := range m.open { // map order: an arbitrary half goes
			delete(m.open, k)
			if len(m.open) < maxOpen/2 {
				break
			}
		}
	}
	m.open[key] = a
	m.mu.Unlock()

	if action := m.o.Responses[f.Detector]; action != "" && m.o.Responder != nil {
		a.Response = m.respond(ctx, action, f, a.ID)
	}
	if err := m.o.Store.SaveAlert(ctx, *a); err != nil {
		m.o.Log.Error("alert not stored", "alert", a.ID, "err", err)
	}
	m.o.Log.Warn("anomaly alert", "alert", a.ID, "detector", a.Detector, "severity", a.Severity, "subject", a.Subject,
		"summary", a.Summary, "response", a.Response)
	select {
	case m.hooks <- *a:
	default:
		m.hookFails.Inc()
		m.o.Log.Error("alert webhook queue full; notice dropped", "alert", a.ID)
	}
}

// respond runs the detector's automatic response and describes it as
// "kind subject until RFC3339" (what Revert parses), or "" when none ran.
func (m *Manager) respond(ctx context.Context, action string, f Finding, id string) string {
	var kind, subject string
	switch action {
	case ActionBlockIP:
		if !f.IP.IsValid() {
			return ""
		}
		a := f.IP.Unmap()
		kind, subject = store.RevokeNetwork, netip.PrefixFrom(a, a.BitLen()).String()
	case ActionSuspendCredential:
		if f.Credential == "" {
			return ""
		}
		kind, subject = store.RevokeCredential, f.Credential
	case ActionThrottle:
		switch {
		case f.Credential != "":
			subject = "credential:" + f.Credential
		case f.IP.IsValid():
			subject = "ip:" + f.IP.Unmap().String()
		default:
			return ""
		}
		until := time.Now().Add(m.o.ResponseTTL)
		if err := m.o.Responder.Throttle(ctx, subject, until); err != nil {
			m.responses.WithLabelValues(action, "error").Inc()
			m.o.Log.Error("automatic response failed", "alert", id, "action", action, "err", err)
			return "failed: " + action + " " + subject
		}
		m.responses.WithLabelValues(action, "done").Inc()
		m.o.Log.Warn("automatic response", "alert", id, "action", action, "subject", subject, "until", until.UTC().Format(time.RFC3339))
		return KindThrottle + " " + subject + " until " + until.UTC().Format(time.RFC3339)
	default:
		return ""
	}
	until := time.Now().Add(m.o.ResponseTTL)
	if err := m.o.Responder.Revoke(ctx, kind, subject, "alert "+id+": "+f.Summary, until); err != nil {
		m.responses.WithLabelValues(action, "error").Inc()
		m.o.Log.Error("automatic response failed", "alert", id, "action", action, "err", err)
		return "failed: " + action + " " + subject
	}
	m.responses.WithLabelValues(action, "done").Inc()
	m.o.Log.Warn("automatic response", "alert", id, "action", action, "kind", kind, "subject", subject, "until", until.UTC().Format(time.RFC3339))
	return kind + " " + subject + " until " + until.UTC().Format(time.RFC3339)
}

// Ack acknowledges an alert; a later finding opens a new one.
func (m *Manager) Ack(ctx context.Context, id, by string) error {
	if err := m.o.Store.AckAlert(ctx, id, by, time.Now()); err != nil {
		return err
	}
	m.mu.Lock()
	for k, a := range m.open {
		if a.ID == id {
			delete(m.open, k)
		}
	}
	m.mu.Unlock()
	return nil
}

// Revert undoes an alert's automatic response (an audited, explicit step).
func (m *Manager) Revert(ctx context.Context, id, by string) (store.Alert, error) {
	a, err := m.o.Store.GetAlert(ctx, id)
	if err != nil {
		return a, err
	}
	f := strings.Fields(a.Response)
	if len(f) < 2 || !a.RevertedAt.IsZero() || m.o.Responder == nil || f[0] == "failed:" {
		return a, fmt.Errorf("alert %s has no automatic response to revert", id)
	}
	if err := m.o.Responder.Lift(ctx, f[0], f[1], by, "reverted response of alert "+id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return a, err
	}
	a.RevertedAt = time.Now()
	if err := m.o.Store.SaveAlert(ctx, a); err != nil {
		return a, err
	}
	m.o.Log.Warn("automatic response reverted", "alert", id, "by", by, "kind", f[0], "subject", f[1])
	return a, nil
}

func (m *Manager) deliver(ctx context.Context, a store.Alert) {
	for _, h := range m.o.Webhooks {
		if SeverityRank(a.Severity) < SeverityRank(h.MinSeverity) {
			continue
		}
		body, _ := json.Marshal(alertJSON(a))
		if h.Format == "slack" {
			body, _ = json.Marshal(map[string]string{"text": fmt.Sprintf("[%s] %s: %s (alert %s)",
				strings.ToUpper(a.Severity), a.Detector, a.Summary, a.ID)})
		}
		_, err := webhook.Deliver(ctx, m.o.HTTP, h.URL, body, 3, 500*time.Millisecond, nil)
		if err != nil {
			m.hookFails.Inc()
			m.o.Log.Error("alert webhook failed after retries", "alert", a.ID, "err", err)
		}
	}
}

// AlertJSON is an alert as the admin API and webhooks show it.
type AlertJSON struct {
	ID         string          `json:"id"`
	Detector   string          `json:"detector"`
	Severity   string          `json:"severity"`
	Subject    string          `json:"subject"`
	Summary    string          `json:"summary"`
	Evidence   json.RawMessage `json:"evidence"`
	Count      int64           `json:"count"`
	FirstAt    time.Time       `json:"first_at"`
	LastAt     time.Time       `json:"last_at"`
	AckedAt    *time.Time      `json:"acked_at,omitempty"`
	AckedBy    string          `json:"acked_by,omitempty"`
	Response   string          `json:"response,omitempty"`
	RevertedAt *time.Time      `json:"reverted_at,omitempty"`
}

func alertJSON(a store.Alert) AlertJSON {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	ev := json.RawMessage(a.Evidence)
	if !json.Valid(ev) {
		ev = json.RawMessage("{}")
	}
	return AlertJSON{a.ID, a.Detector, a.Severity, a.Subject, a.Summary, ev, a.Count, a.FirstAt, a.LastAt,
		opt(a.AckedAt), a.AckedBy, a.Response, opt(a.RevertedAt)}
}

// AlertsJSON converts stored alerts for output.
func AlertsJSON(as []store.Alert) []AlertJSON {
	out := make([]AlertJSON, 0, len(as))
	for _, a := range as {
		out = append(out, alertJSON(a))
	}
	return out
}

// SeverityRank orders severities (low 0 … critical 3; unknown -1).
func SeverityRank(s string) int {
	switch s {
	case "low", "":
		return 0
	case "medium":
		return 1
	case "high":
		return 2
	case "critical":
		return 3
	}
	return -1
}

func newAlertID(t time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "al-" + t.UTC().Format("20060102") + "-" + hex.EncodeToString(b[:])
}
