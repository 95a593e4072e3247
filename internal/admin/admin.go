// Package admin serves the admin listener: health, readiness, metrics, and
// the token-protected admin API.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/detect"
	"github.com/gatehouse/gatehouse/internal/gateway"
	"github.com/gatehouse/gatehouse/internal/govern"
	"github.com/gatehouse/gatehouse/internal/metrics"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Server is the admin HTTP handler.
type Server struct {
	mux     *http.ServeMux
	metrics *metrics.Metrics
	store   store.Store
	ready   func() bool
	reload  func(ctx context.Context) error
	// tokenHash is the SHA-256 of the bootstrap token (nil: admin API off).
	tokenHash atomic.Pointer[[32]byte]
	// auditWrite records admin actions (nil: no audit trail).
	auditWrite func(*audit.AdminRecord) error
	auditQuery AuditQuery
}

// Options wires the admin server to the rest of the process.
type Options struct {
	Metrics *metrics.Metrics
	Store   store.Store
	// Ready reports whether config and store are loaded.
	Ready func() bool
	// Reload re-reads the config (POST /v1/reload).
	Reload func(ctx context.Context) error
	// Revoke puts an entry on the cluster revocation list
	// (POST /v1/tokens/{jti}/revoke); nil disables the route.
	Revoke func(ctx context.Context, r store.Revocation) error
	// Keys serves /v1/keys, /v1/consumers/{name}/revoke and
	// /v1/partners/{name}/revoke; nil leaves them out.
	Keys KeyService
	// Deprecations lists who still calls deprecated API versions
	// (GET /v1/deprecations); nil leaves the route out.
	Deprecations func() []govern.Usage
	// Alerts serves /v1/alerts (list, ack, revert); nil leaves them out.
	Alerts *detect.Manager
	// Quota reports a consumer's or partner's quota (GET
	// /v1/consumers/{name}/quota, /v1/partners/{name}/quota); nil leaves
	// them out.
	Quota QuotaFunc
	// Audit records state-changing admin calls; nil records nothing.
	Audit func(*audit.AdminRecord) error
	// AuditQuery serves GET /v1/audit; nil leaves it out.
	AuditQuery AuditQuery
}

// New builds the admin handler.
func New(o Options) *Server {
	s := &Server{mux: http.NewServeMux(), metrics: o.Metrics, store: o.Store, ready: o.Ready, reload: o.Reload,
		auditWrite: o.Audit, auditQuery: o.AuditQuery}
	if o.AuditQuery != nil {
		s.mux.Handle("GET /v1/audit", s.authorized(http.HandlerFunc(s.getAudit)))
	}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", o.Metrics.Handler())
	s.mux.Handle("GET /v1/apis", s.authorized(http.HandlerFunc(s.listAPIs)))
	s.mux.Handle("POST /v1/reload", s.authorized(http.HandlerFunc(s.postReload)))
	if o.Revoke != nil {
		s.mux.Handle("POST /v1/tokens/{jti}/revoke", s.authorized(revokeToken(o.Revoke)))
	}
	if o.Keys != nil {
		s.routeKeys(o.Keys)
	}
	if o.Alerts != nil {
		s.routeAlerts(o.Alerts)
	}
	if o.Deprecations != nil {
		s.mux.Handle("GET /v1/deprecations", s.authorized(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"callers": o.Deprecations()})
		})))
	}
	if o.Quota != nil {
		s.routeQuota(o.Quota)
	}
	s.mux.Handle("/", s.authorized(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gateway.WriteProblem(w, gateway.ProbNotFound, "No such admin endpoint.", "")
	})))
	return s
}

// SetToken sets the bootstrap admin token; empty disables the admin API.
func (s *Server) SetToken(token string) {
	if token == "" {
		s.tokenHash.Store(nil)
		return
	}
	h := sha256.Sum256([]byte(token))
	s.tokenHash.Store(&h)
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(w, r)
}

var (
	probUnauthorized = gateway.Problem{Type: gateway.ProblemBase + "admin-unauthorized", Title: "Admin token required", Status: http.StatusUnauthorized}
	probDisabled     = gateway.Problem{Type: gateway.ProblemBase + "admin-disabled", Title: "Admin API disabled", Status: http.StatusForbidden}
)

// authorized requires "Authorization: Bearer <admin token>". Both sides are
// hashed first so the comparison is constant-time and length-independent.
func (s *Server) authorized(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := s.tokenHash.Load()
		if want == nil {
			gateway.WriteProblem(w, probDisabled, "Set admin.token or admin.token_file to enable the admin API.", "")
			return
		}
		auth := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		got := sha256.Sum256([]byte(tok))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse-admin"`)
			gateway.WriteProblem(w, probUnauthorized, "Send the admin token as Authorization: Bearer <token>.", "")
			return
		}
		s.audited(next).ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.ready == nil || !s.ready() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "starting"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "store unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

type apiJSON struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Owner       string `json:"owner_team,omitempty"`
	Contact     string `json:"owner_contact,omitempty"`
	Exposure    string `json:"exposure"`
	Sensitivity string `json:"sensitivity"`
	Lifecycle   string `json:"lifecycle"`
	ReviewedOn  string `json:"reviewed_on,omitempty"`
	ReviewedBy  string `json:"reviewed_by,omitempty"`
	Host        string `json:"host,omitempty"`
	BasePath    string `json:"base_path"`
	SpecDigest  string `json:"spec_sha256"`
	Operations  int    `json:"operations"`
	// Traffic from the audit index by window (24h, 7d, 30d).
	Traffic map[string]*govern.APITraffic `json:"traffic,omitempty"`
}

func (s *Server) listAPIs(w http.ResponseWriter, r *http.Request) {
	recs, err := s.store.ListAPIs(r.Context())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		gateway.WriteProblem(w, gateway.ProbUnavailable, "The store is unavailable.", "")
		return
	}
	traffic, err := govern.LiveTraffic(r.Context(), s.store, time.Now())
	if err != nil {
		traffic = nil // figures are extra: the registry is still listed
	}
	out := make([]apiJSON, 0, len(recs))
	for _, a := range recs {
		// The upstream address is internal topology: not listed here.
		out = append(out, apiJSON{a.Name, a.Version, a.OwnerTeam, a.OwnerContact, a.Exposure, a.Sensitivity,
			a.Lifecycle, a.ReviewedOn, a.ReviewedBy, a.Host, a.BasePath, a.SpecDigest, a.Operations, traffic[a.Name+"@"+a.Version]})
	}
	writeJSON(w, http.StatusOK, map[string]any{"apis": out})
}

func (s *Server) postReload(w http.ResponseWriter, r *http.Request) {
	if err := s.reload(r.Context()); err != nil {
		// Config problems name files and lines the operator owns; the
		// caller is an authenticated admin, so they may see them.
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"status": "rejected", "problems": strings.Split(err.Error(), "\n")})
		noteChange(r, "config", nil, map[string]string{"status": "rejected"})
		return
	}
	noteChange(r, "config", nil, map[string]string{"status": "reloaded"})
	writeJSON(w, http.StatusOK, map[string]string{"status": "reloaded"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// maxTokenRevocation bounds how long a token revocation entry may last; a
// token that lives longer than this is refused by every issuer policy anyway.
const maxTokenRevocation = 30 * 24 * time.Hour

// revokeToken revokes one token by jti until the given time, which should
// be at or after the token's exp.
func revokeToken(revoke func(context.Context, store.Revocation) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Until  time.Time `json:"until"`
			Reason string    `json:"reason"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			gateway.WriteProblem(w, gateway.ProbBadRequest, `Send {"until": "<RFC 3339 time at or after the token's exp>", "reason": "..."}.`, "")
			return
		}
		now := time.Now()
		jti := r.PathValue("jti")
		if jti == "" || len(jti) > 512 || !body.Until.After(now) || body.Until.After(now.Add(maxTokenRevocation)) {
			gateway.WriteProblem(w, gateway.ProbBadRequest, "until must be in the future and within 30 days; jti at most 512 bytes.", "")
			return
		}
		err := revoke(r.Context(), store.Revocation{Kind: store.RevokeToken, Subject: jti, Reason: body.Reason,
			ExpiresAt: body.Until, CreatedBy: "admin-api"})
		if err != nil {
			gateway.WriteProblem(w, gateway.ProbUnavailable, "The revocation could not be stored; it has not taken effect.", "")
			return
		}
		noteChange(r, "token:"+jti, nil, map[string]string{"status": "revoked", "until": body.Until.UTC().Format(time.RFC3339), "reason": body.Reason})
		writeJSON(w, http.StatusOK, map[string]string{"status": "revoked", "jti": jti, "until": body.Until.UTC().Format(time.RFC3339)})
	})
}
