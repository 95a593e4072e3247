package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn/apikey"
	"github.com/gatehouse/gatehouse/internal/gateway"
	"github.com/gatehouse/gatehouse/internal/store"
)

// KeyService is what the admin API needs to manage API keys;
// *apikey.Service implements it.
type KeyService interface {
	Issue(ctx context.Context, req apikey.IssueRequest) (string, store.Credential, error)
	Get(ctx context.Context, id string) (store.Credential, error)
	List(ctx context.Context, f store.CredentialFilter) ([]store.Credential, error)
	Views(ctx context.Context, creds []store.Credential) ([]apikey.CredentialView, error)
	Rotate(ctx context.Context, id string, overlap time.Duration, rotatedBy string) (string, store.Credential, error)
	Revoke(ctx context.Context, id, reason string) error
	RevokeConsumer(ctx context.Context, name, reason string) (int, error)
	RevokePartner(ctx context.Context, name, reason string) (int, error)
}

var _ KeyService = (*apikey.Service)(nil)

// DynamicKeys is a KeyService that forwards each call to the service get
// returns at that moment, for a process whose key service is rebuilt when
// the config reloads (gateway.Gateway.Keys). While get returns nil (no
// pepper configured) calls fail with apikey.ErrNoPepper, answered 503.
// get must return an untyped nil, not a nil *apikey.Service.
type DynamicKeys func() KeyService

func (d DynamicKeys) svc() (KeyService, error) {
	if k := d(); k != nil {
		return k, nil
	}
	return nil, apikey.ErrNoPepper
}

// Issue implements KeyService.
func (d DynamicKeys) Issue(ctx context.Context, req apikey.IssueRequest) (string, store.Credential, error) {
	k, err := d.svc()
	if err != nil {
		return "", store.Credential{}, err
	}
	return k.Issue(ctx, req)
}

// Get implements KeyService.
func (d DynamicKeys) Get(ctx context.Context, id string) (store.Credential, error) {
	k, err := d.svc()
	if err != nil {
		return store.Credential{}, err
	}
	return k.Get(ctx, id)
}

// List implements KeyService.
func (d DynamicKeys) List(ctx context.Context, f store.CredentialFilter) ([]store.Credential, error) {
	k, err := d.svc()
	if err != nil {
		return nil, err
	}
	return k.List(ctx, f)
}

// Views implements KeyService.
func (d DynamicKeys) Views(ctx context.Context, creds []store.Credential) ([]apikey.CredentialView, error) {
	k, err := d.svc()
	if err != nil {
		return nil, err
	}
	return k.Views(ctx, creds)
}

// Rotate implements KeyService.
func (d DynamicKeys) Rotate(ctx context.Context, id string, overlap time.Duration, rotatedBy string) (string, store.Credential, error) {
	k, err := d.svc()
	if err != nil {
		return "", store.Credential{}, err
	}
	return k.Rotate(ctx, id, overlap, rotatedBy)
}

// Revoke implements KeyService.
func (d DynamicKeys) Revoke(ctx context.Context, id, reason string) error {
	k, err := d.svc()
	if err != nil {
		return err
	}
	return k.Revoke(ctx, id, reason)
}

// RevokeConsumer implements KeyService.
func (d DynamicKeys) RevokeConsumer(ctx context.Context, name, reason string) (int, error) {
	k, err := d.svc()
	if err != nil {
		return 0, err
	}
	return k.RevokeConsumer(ctx, name, reason)
}

// RevokePartner implements KeyService.
func (d DynamicKeys) RevokePartner(ctx context.Context, name, reason string) (int, error) {
	k, err := d.svc()
	if err != nil {
		return 0, err
	}
	return k.RevokePartner(ctx, name, reason)
}

// adminActor is recorded as the creator of keys issued through the admin
// API. The bootstrap token names no person, so a created_by in the request
// is appended as a label, not trusted as an identity.
const adminActor = "admin-api"

// maxKeyBody bounds admin request bodies: they hold a few names.
const maxKeyBody = 64 << 10

var (
	probInvalid       = gateway.Problem{Type: gateway.ProblemBase + "invalid-request", Title: "Invalid request", Status: http.StatusUnprocessableEntity}
	probNoCredential  = gateway.Problem{Type: gateway.ProblemBase + "credential-not-found", Title: "No such credential", Status: http.StatusNotFound}
	probNoConsumer    = gateway.Problem{Type: gateway.ProblemBase + "consumer-not-found", Title: "No such consumer", Status: http.StatusNotFound}
	probNoPartner     = gateway.Problem{Type: gateway.ProblemBase + "partner-not-found", Title: "No such partner", Status: http.StatusNotFound}
	probNotRotatable  = gateway.Problem{Type: gateway.ProblemBase + "credential-not-rotatable", Title: "Credential cannot be rotated", Status: http.StatusConflict}
	probKeysDisabled  = gateway.Problem{Type: gateway.ProblemBase + "keys-unavailable", Title: "API keys are not configured", Status: http.StatusServiceUnavailable}
	probKeyBadRequest = gateway.ProbBadRequest
)

// routeKeys registers the API-key endpoints, all behind the admin token.
func (s *Server) routeKeys(k KeyService) {
	h := &keyHandlers{svc: k}
	for pattern, fn := range map[string]http.HandlerFunc{
		"POST /v1/keys":                    h.issue,
		"GET /v1/keys":                     h.list,
		"GET /v1/keys/{id}":                h.get,
		"POST /v1/keys/{id}/rotate":        h.rotate,
		"POST /v1/keys/{id}/revoke":        h.revoke,
		"POST /v1/consumers/{name}/revoke": h.revokeConsumer,
		"POST /v1/partners/{name}/revoke":  h.revokePartner,
	} {
		s.mux.Handle(pattern, s.authorized(fn))
	}
}

type keyHandlers struct {
	svc KeyService
}

type issueBody struct {
	Consumer  string   `json:"consumer"`
	Scopes    []string `json:"scopes"`
	TTL       string   `json:"ttl"`
	CreatedBy string   `json:"created_by"`
}

type rotateBody struct {
	Overlap   *string `json:"overlap"`
	CreatedBy string  `json:"created_by"`
}

type revokeBody struct {
	Reason string `json:"reason"`
}

type newKeyResponse struct {
	Key        string                `json:"key"`
	Credential apikey.CredentialView `json:"credential"`
	Replaces   string                `json:"replaces,omitempty"`
	OldEndsAt  *time.Time            `json:"old_key_ends_at,omitempty"`
	Warning    string                `json:"warning"`
}

const newKeyWarning = "This is the only time the key is shown: Gatehouse stores only a keyed hash of it."

func (h *keyHandlers) issue(w http.ResponseWriter, r *http.Request) {
	var b issueBody
	if !decodeBody(w, r, &b, false) {
		return
	}
	if b.Consumer == "" {
		gateway.WriteProblem(w, probInvalid, "consumer is required.", "")
		return
	}
	var ttl time.Duration
	if b.TTL != "" {
		d, err := apikey.ParseDuration(b.TTL)
		if err != nil {
			gateway.WriteProblem(w, probInvalid, "ttl: write e.g. 30d, 36h or 90m.", "")
			return
		}
		ttl = d
	}
	key, cred, err := h.svc.Issue(r.Context(), apikey.IssueRequest{Consumer: b.Consumer, Scopes: b.Scopes, TTL: ttl,
		CreatedBy: actorLabel(b.CreatedBy)})
	if err != nil {
		writeKeyError(w, err)
		return
	}
	noteChange(r, "credential:"+cred.ID, nil, apikey.View(cred, time.Now()))
	h.writeNewKey(w, r, key, cred, "", nil)
}

func (h *keyHandlers) writeNewKey(w http.ResponseWriter, r *http.Request, key string, cred store.Credential, replaces string, oldEnds *time.Time) {
	views, err := h.svc.Views(r.Context(), []store.Credential{cred})
	if err != nil {
		// The key exists now; losing it here would leave an orphan, so it
		// is still returned with what is known.
		views = []apikey.CredentialView{apikey.View(cred, time.Now())}
	}
	w.Header().Set("Location", "/v1/keys/"+cred.ID)
	writeJSON(w, http.StatusCreated, newKeyResponse{Key: key, Credential: views[0], Replaces: replaces, OldEndsAt: oldEnds, Warning: newKeyWarning})
}

func (h *keyHandlers) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	all := q.Get("all") == "true" || q.Get("all") == "1"
	creds, err := h.svc.List(r.Context(), store.CredentialFilter{Consumer: q.Get("consumer"), Partner: q.Get("partner"), IncludeRevoked: true})
	if err != nil {
		writeKeyError(w, err)
		return
	}
	views, err := h.svc.Views(r.Context(), creds)
	if err != nil {
		writeKeyError(w, err)
		return
	}
	out := views[:0]
	for _, v := range views {
		if all || v.Status == apikey.StatusActive || v.Status == apikey.StatusRotating {
			out = append(out, v)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": out})
}

func (h *keyHandlers) get(w http.ResponseWriter, r *http.Request) {
	c, err := h.svc.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		writeKeyError(w, err)
		return
	}
	views, err := h.svc.Views(r.Context(), []store.Credential{c})
	if err != nil {
		writeKeyError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, views[0])
}

func (h *keyHandlers) rotate(w http.ResponseWriter, r *http.Request) {
	var b rotateBody
	if !decodeBody(w, r, &b, true) {
		return
	}
	overlap := 24 * time.Hour
	if b.Overlap != nil {
		d, err := apikey.ParseDuration(*b.Overlap)
		if err != nil || d < 0 {
			gateway.WriteProblem(w, probInvalid, "overlap: write e.g. 24h or 2d; 0 ends the old key now.", "")
			return
		}
		overlap = d
	}
	id := r.PathValue("id")
	start := time.Now()
	var before any
	if old, err := h.svc.Get(r.Context(), id); err == nil {
		before = apikey.View(old, start)
	}
	key, cred, err := h.svc.Rotate(r.Context(), id, overlap, actorLabel(b.CreatedBy))
	if err != nil {
		writeKeyError(w, err)
		return
	}
	ends := start.Add(overlap).UTC()
	if old, err := h.svc.Get(r.Context(), id); err == nil && !old.RevokedAt.IsZero() {
		ends = old.RevokedAt // as recorded
	}
	noteChange(r, "credential:"+id, before, map[string]any{"new_credential": apikey.View(cred, time.Now()), "old_key_ends_at": ends})
	h.writeNewKey(w, r, key, cred, id, &ends)
}

func (h *keyHandlers) revoke(w http.ResponseWriter, r *http.Request) {
	var b revokeBody
	if !decodeBody(w, r, &b, true) {
		return
	}
	id := r.PathValue("id")
	var before any
	if old, err := h.svc.Get(r.Context(), id); err == nil {
		before = apikey.View(old, time.Now())
	}
	noteChange(r, "credential:"+id, before, map[string]string{"status": apikey.StatusRevoked, "reason": reasonOr(b.Reason)})
	if err := h.svc.Revoke(r.Context(), id, reasonOr(b.Reason)); err != nil {
		writeKeyError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "status": apikey.StatusRevoked})
}

func (h *keyHandlers) revokeConsumer(w http.ResponseWriter, r *http.Request) {
	h.revokeMany(w, r, "consumer", h.svc.RevokeConsumer)
}

func (h *keyHandlers) revokePartner(w http.ResponseWriter, r *http.Request) {
	h.revokeMany(w, r, "partner", h.svc.RevokePartner)
}

func (h *keyHandlers) revokeMany(w http.ResponseWriter, r *http.Request, kind string, fn func(context.Context, string, string) (int, error)) {
	var b revokeBody
	if !decodeBody(w, r, &b, true) {
		return
	}
	name := r.PathValue("name")
	n, err := fn(r.Context(), name, reasonOr(b.Reason))
	if err != nil {
		writeKeyError(w, err)
		return
	}
	noteChange(r, kind+":"+name, nil, map[string]any{"revoked": n, "reason": reasonOr(b.Reason)})
	writeJSON(w, http.StatusOK, map[string]any{kind: name, "revoked": n})
}

// decodeBody reads a small strict JSON object; unknown fields are refused,
// so a misspelt "scopes" cannot silently issue a key with every scope.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxKeyBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) && emptyOK {
		return true
	}
	if err == nil && dec.More() {
		err = errors.New("trailing data")
	}
	if err != nil {
		gateway.WriteProblem(w, probKeyBadRequest, "The body must be one JSON object with only the documented fields.", "")
		return false
	}
	return true
}

func writeKeyError(w http.ResponseWriter, err error) {
	// Messages of these errors name consumers, scopes and limits the
	// authenticated operator configured; they carry no secret.
	switch {
	case errors.Is(err, store.ErrNotFound):
		gateway.WriteProblem(w, probNoCredential, "No credential has this ID.", "")
	case errors.Is(err, apikey.ErrUnknownConsumer):
		gateway.WriteProblem(w, probNoConsumer, err.Error(), "")
	case errors.Is(err, apikey.ErrUnknownPartner):
		gateway.WriteProblem(w, probNoPartner, err.Error(), "")
	case errors.Is(err, apikey.ErrScope), errors.Is(err, apikey.ErrTTL), errors.Is(err, apikey.ErrInvalid):
		gateway.WriteProblem(w, probInvalid, err.Error(), "")
	case errors.Is(err, apikey.ErrNotRotatable):
		gateway.WriteProblem(w, probNotRotatable, err.Error(), "")
	case errors.Is(err, apikey.ErrNoPepper):
		gateway.WriteProblem(w, probKeysDisabled, "Set identity.pepper or identity.pepper_file to issue API keys.", "")
	default:
		gateway.WriteProblem(w, gateway.ProbUnavailable, "The store is unavailable.", "")
	}
}

func actorLabel(label string) string {
	if label == "" {
		return adminActor
	}
	return adminActor + ":" + label
}

func reasonOr(reason string) string {
	if reason == "" {
		return "revoked through the admin API"
	}
	return reason
}
