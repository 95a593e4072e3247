package apikey

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Errors of the issuing side. Callers (CLI, admin API) match them with
// errors.Is to choose an exit code or HTTP status; the wrapped message says
// what to do next.
var (
	ErrUnknownConsumer = errors.New("apikey: unknown consumer")
	ErrUnknownPartner  = errors.New("apikey: unknown partner")
	ErrScope           = errors.New("apikey: scope not granted to the consumer")
	ErrTTL             = errors.New("apikey: ttl out of bounds")
	ErrNotRotatable    = errors.New("apikey: credential cannot be rotated")
	ErrInvalid         = errors.New("apikey: invalid request")
)

// RotatedPrefix starts the revocation reason of a key replaced by Rotate.
const RotatedPrefix = "rotated"

// Revoker puts entries on the revocation list that the pipeline's
// "revoked?" stage consults on every request, so a revocation takes effect
// at once on every replica instead of when credential caches expire.
// *revoke.List implements it; StoreRevoker writes the store's list directly
// (for the CLI). The Service sends Kind store.RevokeCredential with
// ExpiresAt set to the credential's own expiry (zero: never), after which
// the entry no longer matters. It must be idempotent.
type Revoker interface {
	Revoke(ctx context.Context, r store.Revocation) error
}

// StoreRevoker writes revocations to the store's revocation list, which
// running gateways poll (identity.revocation_poll). It is what the CLI uses;
// a gateway process plugs in its revocation list instead.
type StoreRevoker struct {
	Store store.RevocationStore
	// CreatedBy fills entries that name no creator.
	CreatedBy string
}

// Revoke implements Revoker.
func (r StoreRevoker) Revoke(ctx context.Context, rev store.Revocation) error {
	if rev.CreatedBy == "" {
		rev.CreatedBy = r.CreatedBy
	}
	return r.Store.AddRevocation(ctx, rev)
}

// Options configure a Service.
type Options struct {
	Store store.CredentialStore
	// Pepper is the HMAC key (see LoadPepper). Without it the Service can
	// still list and revoke, but Issue, Rotate and NewAuthenticator fail
	// with ErrNoPepper: revoking must not need the secret.
	Pepper    []byte
	Consumers []config.Consumer
	// MaxTTL is identity.key_max_ttl; zero means config.DefaultKeyMaxTTL.
	MaxTTL time.Duration
	// Revoker receives every revocation; nil: only the credential row
	// records it (seen by gateways when their credential cache refreshes).
	Revoker Revoker
	// Revocations is read to tell a key revoked during its rotation
	// overlap from one still in it: the store keeps a credential's first
	// revocation time, which for a rotated key is the overlap's end, so
	// the revocation list is the only record of the later, earlier-taking
	// revocation. Optional; without it such keys show as "rotating".
	Revocations store.RevocationStore
	// Now and Rand default to time.Now and crypto/rand.Reader (tests only).
	Now  func() time.Time
	Rand io.Reader
}

// Service issues, rotates and revokes API keys, and builds Authenticators
// that share its consumer directory and hasher.
type Service struct {
	st      store.CredentialStore
	revs    store.RevocationStore
	hasher  *hasher
	revoker Revoker
	now     func() time.Time
	rand    io.Reader
	policy  atomic.Pointer[policy]

	mu     sync.Mutex
	caches map[*credCache]struct{} // authenticators' caches, invalidated on revoke/rotate/reconfigure
}

// policy is the configured consumer directory, swapped whole on reload.
type policy struct {
	consumers map[string]*consumerInfo
	maxTTL    time.Duration
}

type consumerInfo struct {
	name    string
	partner string
	scopes  []string
	granted map[string]bool
	roles   []string
	claims  map[string]any
}

// NewService builds a Service.
func NewService(o Options) (*Service, error) {
	if o.Store == nil {
		return nil, errors.New("apikey: no credential store")
	}
	s := &Service{st: o.Store, revs: o.Revocations, revoker: o.Revoker, now: o.Now, rand: o.Rand, caches: map[*credCache]struct{}{}}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if o.Pepper != nil {
		h, err := newHasher(o.Pepper)
		if err != nil {
			return nil, err
		}
		s.hasher = h
	}
	s.Reconfigure(o.Consumers, o.MaxTTL)
	return s, nil
}

// ServiceFromConfig builds a Service from a loaded config: the pepper
// (LoadPepper), identity.key_max_ttl and the consumers. A nil rev means the
// store's revocation list (StoreRevoker).
func ServiceFromConfig(cfg *config.Config, st store.Store, rev Revoker) (*Service, error) {
	pepper, err := LoadPepper(cfg.Identity)
	if err != nil {
		return nil, err
	}
	if rev == nil {
		rev = StoreRevoker{Store: st}
	}
	return NewService(Options{Store: st, Pepper: pepper, Consumers: cfg.Consumers,
		MaxTTL: cfg.Identity.KeyMaxTTL.D(), Revoker: rev, Revocations: st})
}

// Reconfigure swaps in the consumers and maximum TTL of a reloaded config
// and drops every cached credential, so a consumer's changed scopes, roles,
// claims or partner apply to the next request.
func (s *Service) Reconfigure(consumers []config.Consumer, maxTTL time.Duration) {
	if maxTTL <= 0 {
		maxTTL = config.DefaultKeyMaxTTL
	}
	p := &policy{consumers: make(map[string]*consumerInfo, len(consumers)), maxTTL: maxTTL}
	for _, c := range consumers {
		ci := &consumerInfo{name: c.Name, partner: c.Partner, scopes: slices.Clone(c.Scopes),
			granted: make(map[string]bool, len(c.Scopes)), roles: slices.Clone(c.Roles), claims: c.Claims}
		for _, sc := range c.Scopes {
			ci.granted[sc] = true
		}
		p.consumers[c.Name] = ci
	}
	s.policy.Store(p)
	s.forEachCache(func(c *credCache) { c.clear() })
}

// IssueRequest asks for a new key.
type IssueRequest struct {
	Consumer string
	// Scopes must be a subset of the consumer's configured scopes; empty
	// means all of them.
	Scopes []string
	// TTL is the key's lifetime, at most identity.key_max_ttl; zero means
	// that maximum.
	TTL       time.Duration
	CreatedBy string
	// Metadata is free-form (owner contact details...); the store seals
	// it at rest when a data key is configured. Rotation carries it over.
	Metadata map[string]string
}

// Issue creates a key for a configured consumer. The plaintext is returned
// once and never stored; the credential is what the store now holds.
func (s *Service) Issue(ctx context.Context, req IssueRequest) (string, store.Credential, error) {
	if s.hasher == nil {
		return "", store.Credential{}, ErrNoPepper
	}
	pol := s.policy.Load()
	c, ok := pol.consumers[req.Consumer]
	if !ok {
		return "", store.Credential{}, fmt.Errorf("%w %q: declare it under consumers in the config first", ErrUnknownConsumer, req.Consumer)
	}
	scopes := req.Scopes
	if len(scopes) == 0 {
		scopes = c.scopes
	}
	scopes, err := c.checkScopes(scopes)
	if err != nil {
		return "", store.Credential{}, err
	}
	ttl := req.TTL
	switch {
	case ttl < 0:
		return "", store.Credential{}, fmt.Errorf("%w: ttl %s is negative", ErrTTL, ttl)
	case ttl == 0:
		ttl = pol.maxTTL
	case ttl > pol.maxTTL:
		return "", store.Credential{}, fmt.Errorf("%w: ttl %s exceeds identity.key_max_ttl (%s); issue a shorter-lived key and rotate it",
			ErrTTL, FormatDuration(ttl), FormatDuration(pol.maxTTL))
	}
	return s.create(ctx, c, scopes, ttl, req.CreatedBy, req.Metadata)
}

// checkScopes returns want de-duplicated and sorted, or ErrScope when the
// consumer does not hold one of them: a key never carries more than its
// consumer is granted (least privilege).
func (c *consumerInfo) checkScopes(want []string) ([]string, error) {
	out := make([]string, 0, len(want))
	for _, sc := range want {
		if !c.granted[sc] {
			return nil, fmt.Errorf("%w: consumer %s does not hold scope %q (it holds: %s)",
				ErrScope, c.name, sc, strings.Join(c.scopes, ", "))
		}
		out = append(out, sc)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func (s *Service) create(ctx context.Context, c *consumerInfo, scopes []string, ttl time.Duration, by string, meta map[string]string) (string, store.Credential, error) {
	now := store.NormalizeTime(s.now())
	for attempt := 0; ; attempt++ {
		key, id, err := generate(s.rand)
		if err != nil {
			return "", store.Credential{}, fmt.Errorf("apikey: generate key: %w", err)
		}
		cred := store.Credential{ID: id, Kind: authn.KindAPIKey, Consumer: c.name, Partner: c.partner,
			Hash: s.hasher.hash(key), Scopes: scopes, CreatedAt: now, CreatedBy: by,
			ExpiresAt: store.NormalizeTime(now.Add(ttl)), Metadata: meta}
		err = s.st.CreateCredential(ctx, cred)
		if errors.Is(err, store.ErrConflict) && attempt < 3 {
			continue // a 95-bit ID collision: astronomically rare, but cheap to survive
		}
		if err != nil {
			return "", store.Credential{}, fmt.Errorf("apikey: store key: %w", err)
		}
		return key, cred, nil
	}
}

// Rotate issues a new key with the old key's consumer and scopes and
// lifetime (capped by identity.key_max_ttl), and ends the old key after
// overlap, so clients can switch without an outage. With a zero overlap the
// old key is revoked at once. rotatedBy becomes the new key's creator
// (empty: the old key's).
//
// The old key's end is recorded as a revocation time in the future: the
// authenticator refuses it from then on (reason "rotated"). Revoking it
// explicitly during the overlap goes through the Revoker, which blocks it
// at once.
func (s *Service) Rotate(ctx context.Context, oldID string, overlap time.Duration, rotatedBy string) (string, store.Credential, error) {
	if s.hasher == nil {
		return "", store.Credential{}, ErrNoPepper
	}
	if overlap < 0 {
		return "", store.Credential{}, fmt.Errorf("%w: overlap %s is negative", ErrInvalid, overlap)
	}
	old, err := s.st.GetCredential(ctx, oldID)
	if err != nil {
		return "", store.Credential{}, fmt.Errorf("apikey: rotate %s: %w", oldID, err)
	}
	now := s.now()
	switch {
	case old.Kind != authn.KindAPIKey:
		return "", store.Credential{}, fmt.Errorf("%w: %s is a %s, not an API key", ErrNotRotatable, oldID, old.Kind)
	case !old.RevokedAt.IsZero() && old.RevokedAt.After(now) && !s.onList(ctx, old.ID, now):
		return "", store.Credential{}, fmt.Errorf("%w: %s was already rotated and ends at %s", ErrNotRotatable, oldID, old.RevokedAt.Format(time.RFC3339))
	case !old.RevokedAt.IsZero():
		return "", store.Credential{}, fmt.Errorf("%w: %s is revoked; issue a new key instead", ErrNotRotatable, oldID)
	}
	pol := s.policy.Load()
	c, ok := pol.consumers[old.Consumer]
	if !ok {
		return "", store.Credential{}, fmt.Errorf("%w %q: the key's consumer is no longer in the config; revoke the key instead",
			ErrUnknownConsumer, old.Consumer)
	}
	if c.partner != old.Partner {
		return "", store.Credential{}, fmt.Errorf("%w: consumer %s moved from partner %q to %q since the key was issued; issue a new key and revoke this one",
			ErrNotRotatable, c.name, old.Partner, c.partner)
	}
	scopes, err := c.checkScopes(old.Scopes)
	if err != nil {
		return "", store.Credential{}, fmt.Errorf("%w; issue a new key with the scopes it still holds", err)
	}
	ttl := old.ExpiresAt.Sub(old.CreatedAt)
	if old.ExpiresAt.IsZero() || ttl <= 0 || ttl > pol.maxTTL {
		ttl = pol.maxTTL
	}
	if rotatedBy == "" {
		rotatedBy = old.CreatedBy
	}
	key, cred, err := s.create(ctx, c, scopes, ttl, rotatedBy, old.Metadata)
	if err != nil {
		return "", store.Credential{}, err
	}
	reason := RotatedPrefix + ": replaced by " + cred.ID
	if overlap == 0 {
		err = s.Revoke(ctx, oldID, reason)
	} else {
		err = s.st.RevokeCredential(ctx, oldID, now.Add(overlap), reason)
		s.forget(oldID)
	}
	if err != nil {
		// Do not hand out a replacement whose predecessor lives on: undo
		// the new key (best effort) and let the caller retry.
		_ = s.st.RevokeCredential(context.WithoutCancel(ctx), cred.ID, time.Time{}, "rotation of "+oldID+" failed")
		return "", store.Credential{}, fmt.Errorf("apikey: rotate %s: end old key: %w", oldID, err)
	}
	return key, cred, nil
}

// Revoke revokes credential id now: in the store, and on the revocation
// list through the Revoker. Revoking a revoked credential again succeeds.
func (s *Service) Revoke(ctx context.Context, id, reason string) error {
	c, err := s.st.GetCredential(ctx, id)
	if err != nil {
		return fmt.Errorf("apikey: revoke %s: %w", id, err)
	}
	return s.revoke(ctx, c, reason)
}

func (s *Service) revoke(ctx context.Context, c store.Credential, reason string) error {
	// The list entry first: it is what stops the key everywhere at once.
	if s.revoker != nil {
		err := s.revoker.Revoke(ctx, store.Revocation{Kind: store.RevokeCredential, Subject: c.ID,
			Reason: reason, ExpiresAt: c.ExpiresAt})
		if err != nil {
			return fmt.Errorf("apikey: revoke %s: revocation list: %w", c.ID, err)
		}
	}
	err := s.st.RevokeCredential(ctx, c.ID, s.now(), reason)
	s.forget(c.ID)
	if err != nil {
		return fmt.Errorf("apikey: revoke %s: %w", c.ID, err)
	}
	return nil
}

// RevokeConsumer revokes every live credential of consumer name (of any
// kind) and returns how many it revoked. A name that is neither configured
// nor holds credentials is ErrUnknownConsumer, so a typo does not look like
// a successful incident response.
func (s *Service) RevokeConsumer(ctx context.Context, name, reason string) (int, error) {
	creds, err := s.st.ListCredentials(ctx, store.CredentialFilter{Consumer: name, IncludeRevoked: true})
	if err != nil {
		return 0, fmt.Errorf("apikey: revoke consumer %s: %w", name, err)
	}
	if _, ok := s.policy.Load().consumers[name]; !ok && len(creds) == 0 {
		return 0, fmt.Errorf("%w %q", ErrUnknownConsumer, name)
	}
	return s.revokeAll(ctx, creds, reason)
}

// RevokePartner revokes every live credential issued under partner name or
// held by a consumer the config now places under it.
func (s *Service) RevokePartner(ctx context.Context, name, reason string) (int, error) {
	creds, err := s.st.ListCredentials(ctx, store.CredentialFilter{Partner: name, IncludeRevoked: true})
	if err != nil {
		return 0, fmt.Errorf("apikey: revoke partner %s: %w", name, err)
	}
	known := false
	for _, c := range s.policy.Load().consumers {
		if c.partner != name {
			continue
		}
		known = true
		more, err := s.st.ListCredentials(ctx, store.CredentialFilter{Consumer: c.name, IncludeRevoked: true})
		if err != nil {
			return 0, fmt.Errorf("apikey: revoke partner %s: %w", name, err)
		}
		creds = append(creds, more...)
	}
	if !known && len(creds) == 0 {
		return 0, fmt.Errorf("%w %q", ErrUnknownPartner, name)
	}
	return s.revokeAll(ctx, creds, reason)
}

func (s *Service) revokeAll(ctx context.Context, creds []store.Credential, reason string) (int, error) {
	now := s.now()
	seen := map[string]bool{}
	n := 0
	for _, c := range creds {
		if seen[c.ID] {
			continue
		}
		seen[c.ID] = true
		// Keys inside a rotation overlap have a future RevokedAt: they are
		// still live and must be revoked too.
		st, err := s.status(ctx, c, now)
		if err != nil {
			return n, err
		}
		if st == StatusRevoked || st == StatusExpired {
			continue
		}
		if err := s.revoke(ctx, c, reason); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// status is Status, except that a key revoked during its rotation overlap
// is revoked (see Options.Revocations).
func (s *Service) status(ctx context.Context, c store.Credential, now time.Time) (string, error) {
	st := Status(c, now)
	if st != StatusRotating || s.revs == nil {
		return st, nil
	}
	on, err := s.revs.IsRevoked(ctx, store.RevokeCredential, c.ID, now)
	if err != nil {
		return "", fmt.Errorf("apikey: revocation list: %w", err)
	}
	if on {
		return StatusRevoked, nil
	}
	return st, nil
}

// Views returns creds as shown to operators, with their current status.
func (s *Service) Views(ctx context.Context, creds []store.Credential) ([]CredentialView, error) {
	now := s.now()
	out := make([]CredentialView, 0, len(creds))
	for _, c := range creds {
		v := View(c, now)
		st, err := s.status(ctx, c, now)
		if err != nil {
			return nil, err
		}
		if st != v.Status {
			// Revoked inside its rotation overlap: the row still holds the
			// overlap's end, which is not when it was revoked.
			v.Status, v.RevokedAt = st, nil
			v.RevokedReason = "revoked during its rotation overlap (" + c.RevokedWhy + ")"
		}
		out = append(out, v)
	}
	return out, nil
}

// Get returns the credential with id (store.ErrNotFound when unknown).
func (s *Service) Get(ctx context.Context, id string) (store.Credential, error) {
	return s.st.GetCredential(ctx, id)
}

// List returns the credentials matching f.
func (s *Service) List(ctx context.Context, f store.CredentialFilter) ([]store.Credential, error) {
	return s.st.ListCredentials(ctx, f)
}

// Now is the Service's clock (for status displays).
func (s *Service) Now() time.Time { return s.now() }

// onList reports whether id is on the revocation list (false when unknown).
func (s *Service) onList(ctx context.Context, id string, now time.Time) bool {
	if s.revs == nil {
		return false
	}
	on, err := s.revs.IsRevoked(ctx, store.RevokeCredential, id, now)
	return err == nil && on
}

func (s *Service) forget(id string) {
	s.forEachCache(func(c *credCache) { c.forget(id) })
}

func (s *Service) forEachCache(fn func(*credCache)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.caches {
		fn(c)
	}
}

// Credential statuses, as shown by the CLI and the admin API.
const (
	StatusActive   = "active"
	StatusRotating = "rotating" // replaced by Rotate, working until its overlap ends
	StatusExpired  = "expired"
	StatusRevoked  = "revoked"
)

// Status is the state of c at now.
func Status(c store.Credential, now time.Time) string {
	switch {
	case !c.RevokedAt.IsZero() && !now.Before(c.RevokedAt):
		return StatusRevoked
	case !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt):
		return StatusExpired
	case !c.RevokedAt.IsZero():
		return StatusRotating
	}
	return StatusActive
}

// CredentialView is a credential as shown to operators (CLI -o json and the
// admin API). It has no field for the hash, so none can leak through it.
type CredentialView struct {
	ID            string     `json:"id"`
	Kind          string     `json:"kind"`
	Consumer      string     `json:"consumer"`
	Partner       string     `json:"partner,omitempty"`
	Scopes        []string   `json:"scopes"`
	Status        string     `json:"status"`
	CreatedAt     time.Time  `json:"created_at"`
	CreatedBy     string     `json:"created_by,omitempty"`
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	RevokedAt     *time.Time `json:"revoked_at,omitempty"`
	RevokedReason string     `json:"revoked_reason,omitempty"`
	LastUsedAt    *time.Time `json:"last_used_at,omitempty"`
	LastUsedIP    string     `json:"last_used_ip,omitempty"`
	// Metadata is shown to operators only (never logged, sealed at rest).
	Metadata map[string]string `json:"metadata,omitempty"`
}

// View returns c as shown to operators at now.
func View(c store.Credential, now time.Time) CredentialView {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	scopes := c.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return CredentialView{ID: c.ID, Kind: c.Kind, Consumer: c.Consumer, Partner: c.Partner, Scopes: scopes,
		Status: Status(c, now), CreatedAt: c.CreatedAt, CreatedBy: c.CreatedBy, ExpiresAt: opt(c.ExpiresAt),
		RevokedAt: opt(c.RevokedAt), RevokedReason: c.RevokedWhy, LastUsedAt: opt(c.LastUsedAt), LastUsedIP: c.LastUsedIP,
		Metadata: c.Metadata}
}

// ParseDuration reads a TTL or overlap: a Go duration ("36h", "90m"), a
// whole number of days ("30d"), or "0".
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100000 {
			return 0, fmt.Errorf("%w: duration %q: want a whole number of days like 30d", ErrInvalid, s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w: duration %q: write e.g. 30d, 36h or 90m", ErrInvalid, s)
	}
	return d, nil
}

// FormatDuration writes whole days as "30d", anything else as Go does.
func FormatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}
