// Package incident is the kill switch: it opens a security incident against
// a partner, consumer or credential, revokes and blocks everything in that
// scope cluster-wide through the revocation list, notifies the partner's
// security contact, and keeps a timeline of who did what when. Closing an
// incident never restores access; Restore is the explicit, recorded way.
package incident

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/revoke"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/webhook"
)

// Scopes an incident can be opened against.
const (
	ScopePartner    = "partner"
	ScopeConsumer   = "consumer"
	ScopeCredential = "credential"
)

// Service runs incident actions against one store and revocation list.
type Service struct {
	Store       store.Store
	Revocations *revoke.List
	Config      *config.Config
	// HTTP posts webhook notices; nil means a client with a 5 s timeout.
	HTTP *http.Client
	Log  *slog.Logger
	// Now replaces time.Now (tests).
	Now func() time.Time
	// NotifyAttempts and NotifyBackoff tune webhook retries (default 3, 500 ms doubling).
	NotifyAttempts int
	NotifyBackoff  time.Duration
}

// OpenRequest says what to do when opening an incident.
type OpenRequest struct {
	Scope, Subject string
	Reason         string
	Actor          string
	Revoke         bool // revoke every credential in scope
	BlockIPs       bool // block the scope's declared networks and last-seen addresses
	Notify         bool // notify the partner's security contact
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// Open records the incident and carries out the requested actions, each
// one recorded on the timeline as it completes. Actions run even if an
// earlier one failed (a webhook outage must not stop a revocation); the
// joined errors are returned with the incident.
func (s *Service) Open(ctx context.Context, req OpenRequest) (store.Incident, error) {
	if strings.TrimSpace(req.Reason) == "" {
		return store.Incident{}, errors.New("incident: a reason is required (it goes on the timeline and to the partner)")
	}
	partner, creds, err := s.resolve(ctx, req.Scope, req.Subject)
	if err != nil {
		return store.Incident{}, err
	}
	now := s.now()
	inc := store.Incident{ID: newID(now), Scope: req.Scope, Subject: req.Subject, Reason: req.Reason,
		OpenedAt: now, OpenedBy: req.Actor,
		Events: []store.IncidentEvent{{At: now, Actor: req.Actor, Action: "opened", Detail: req.Scope + " " + req.Subject + ": " + req.Reason}}}
	if err := s.Store.CreateIncident(ctx, inc); err != nil {
		return store.Incident{}, err
	}
	var errs []error
	event := func(action, detail string) {
		ev := store.IncidentEvent{At: s.now(), Actor: req.Actor, Action: action, Detail: detail}
		if err := s.Store.AddIncidentEvent(ctx, inc.ID, ev); err != nil {
			errs = append(errs, err)
		}
		inc.Events = append(inc.Events, ev)
	}
	why := "incident " + inc.ID + ": " + req.Reason

	if req.Revoke {
		var done []string
		revoke := func(kind, subject string) {
			err := s.Revocations.Revoke(ctx, store.Revocation{Kind: kind, Subject: subject, Reason: why, CreatedBy: req.Actor})
			if err != nil {
				errs = append(errs, err)
				event("revoke_failed", kind+" "+subject+": "+err.Error())
				return
			}
			done = append(done, kind+" "+subject)
		}
		switch req.Scope {
		case ScopePartner:
			revoke(store.RevokePartner, req.Subject)
		case ScopeConsumer:
			revoke(store.RevokeConsumer, req.Subject)
		}
		for _, c := range creds {
			// Credentials in scope die for good: they may be in an
			// attacker's hands. Restoring the partner does not revive them.
			revoke(store.RevokeCredential, c.ID)
			if err := s.Store.RevokeCredential(ctx, c.ID, now, why); err != nil && !errors.Is(err, store.ErrNotFound) {
				errs = append(errs, err)
			}
		}
		event("revoked", strings.Join(done, ", "))
	}

	if req.BlockIPs {
		nets := s.networks(req.Scope, partner, creds)
		var done []string
		for _, n := range nets {
			err := s.Revocations.Revoke(ctx, store.Revocation{Kind: store.RevokeNetwork, Subject: n, Reason: why, CreatedBy: req.Actor})
			if err != nil {
				errs = append(errs, err)
				event("block_failed", n+": "+err.Error())
				continue
			}
			done = append(done, n)
		}
		if len(nets) == 0 {
			event("blocked", "no declared networks or last-seen addresses in scope")
		} else if len(done) > 0 {
			event("blocked", strings.Join(done, ", "))
		}
	}

	if req.Notify {
		action, detail, err := s.notify(ctx, partner, inc)
		if err != nil {
			errs = append(errs, err)
		}
		event(action, detail)
	}
	return inc, errors.Join(errs...)
}

// resolve finds the partner and the credentials an incident scope covers.
func (s *Service) resolve(ctx context.Context, scope, subject string) (*config.Partner, []store.Credential, error) {
	findPartner := func(name string) *config.Partner {
		for i := range s.Config.Partners {
			if s.Config.Partners[i].Name == name {
				return &s.Config.Partners[i]
			}
		}
		return nil
	}
	switch scope {
	case ScopePartner:
		p := findPartner(subject)
		if p == nil {
			return nil, nil, fmt.Errorf("incident: no partner %q in the config", subject)
		}
		creds, err := s.Store.ListCredentials(ctx, store.CredentialFilter{Partner: subject})
		return p, creds, err
	case ScopeConsumer:
		for _, c := range s.Config.Consumers {
			if c.Name == subject {
				creds, err := s.Store.ListCredentials(ctx, store.CredentialFilter{Consumer: subject})
				return findPartner(c.Partner), creds, err
			}
		}
		return nil, nil, fmt.Errorf("incident: no consumer %q in the config", subject)
	case ScopeCredential:
		c, err := s.Store.GetCredential(ctx, subject)
		if err != nil {
			return nil, nil, fmt.Errorf("incident: credential %q: %w", subject, err)
		}
		return findPartner(c.Partner), []store.Credential{c}, nil
	}
	return nil, nil, fmt.Errorf("incident: unknown scope %q (partner, consumer or credential)", scope)
}

// networks are what --block-ips blocks: a partner's declared networks
// (only for a partner-wide incident: a consumer's incident should not cut
// off its partner's other applications) and the addresses the in-scope
// credentials were last used from.
func (s *Service) networks(scope string, partner *config.Partner, creds []store.Credential) []string {
	seen := map[string]bool{}
	var out []string
	add := func(p netip.Prefix) {
		if k := p.Masked().String(); !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	if scope == ScopePartner && partner != nil {
		for _, n := range config.ParsePrefixes(partner.Networks) {
			add(n)
		}
	}
	for _, c := range creds {
		if a, err := netip.ParseAddr(c.LastUsedIP); err == nil {
			a = a.Unmap()
			add(netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

// Notice is the JSON a partner's security webhook receives.
type Notice struct {
	Type     string    `json:"type"` // always "gatehouse.incident"
	Incident string    `json:"incident"`
	Partner  string    `json:"partner"`
	Scope    string    `json:"scope"`
	Subject  string    `json:"subject"`
	Reason   string    `json:"reason"`
	OpenedAt time.Time `json:"opened_at"`
	Actions  []string  `json:"actions"`
	// Text makes the notice readable in Slack-compatible receivers.
	Text string `json:"text"`
}

func (s *Service) notify(ctx context.Context, partner *config.Partner, inc store.Incident) (action, detail string, err error) {
	if partner == nil {
		return "notify_skipped", "no partner in scope", nil
	}
	hook, email := partner.SecurityContact.Webhook, partner.SecurityContact.Email
	if hook == "" {
		if email != "" {
			return "notify_manual", "no webhook; tell " + email + " by hand", nil
		}
		return "notify_failed", "partner " + partner.Name + " declares no security contact", errors.New("incident: no security contact to notify")
	}
	var actions []string
	for _, ev := range inc.Events[1:] {
		actions = append(actions, ev.Action+": "+ev.Detail)
	}
	n := Notice{Type: "gatehouse.incident", Incident: inc.ID, Partner: partner.Name, Scope: inc.Scope, Subject: inc.Subject,
		Reason: inc.Reason, OpenedAt: inc.OpenedAt, Actions: actions,
		Text: fmt.Sprintf("Security incident %s opened for %s %s: %s", inc.ID, inc.Scope, inc.Subject, inc.Reason)}
	body, err := json.Marshal(n)
	if err != nil {
		return "notify_failed", err.Error(), err
	}
	client := s.HTTP
	attempts, backoff := s.NotifyAttempts, s.NotifyBackoff
	if attempts <= 0 {
		attempts = 3
	}
	if backoff <= 0 {
		backoff = 500 * time.Millisecond
	}
	attempt, err := webhook.Deliver(ctx, client, hook, body, attempts, backoff, func(attempt int, err error) {
		s.log().Warn("incident webhook failed", "incident", inc.ID, "partner", partner.Name, "attempt", attempt, "err", err)
	})
	if err != nil {
		return "notify_failed", fmt.Sprintf("webhook of %s after %d attempts: %v", partner.Name, attempts, err), err
	}
	return "notified", fmt.Sprintf("webhook of %s (attempt %d)", partner.Name, attempt), nil
}

// Note adds a line to the timeline.
func (s *Service) Note(ctx context.Context, id, actor, text string) error {
	return s.Store.AddIncidentEvent(ctx, id, store.IncidentEvent{At: s.now(), Actor: actor, Action: "note", Detail: text})
}

// Close closes the incident. Revocations and blocks stay in force.
func (s *Service) Close(ctx context.Context, id, actor, note string) error {
	return s.Store.CloseIncident(ctx, id, s.now(), actor, note)
}

// Restore explicitly re-enables the incident's partner or consumer and
// unblocks the networks it blocked. Credentials revoked by the incident
// stay revoked: they may be compromised; issue new ones.
func (s *Service) Restore(ctx context.Context, id, actor string) ([]string, error) {
	inc, err := s.Store.GetIncident(ctx, id)
	if err != nil {
		return nil, err
	}
	var lifted []string
	var errs []error
	lift := func(kind, subject string) {
		err := s.Revocations.Lift(ctx, kind, subject, actor, "restored after incident "+id)
		switch {
		case err == nil:
			lifted = append(lifted, kind+" "+subject)
		case errors.Is(err, store.ErrNotFound):
		default:
			errs = append(errs, err)
		}
	}
	switch inc.Scope {
	case ScopePartner:
		lift(store.RevokePartner, inc.Subject)
	case ScopeConsumer:
		lift(store.RevokeConsumer, inc.Subject)
	}
	for _, ev := range inc.Events {
		if ev.Action != "blocked" {
			continue
		}
		for _, n := range strings.Split(ev.Detail, ", ") {
			if _, err := netip.ParsePrefix(n); err == nil {
				lift(store.RevokeNetwork, n)
			}
		}
	}
	detail := "lifted " + strings.Join(lifted, ", ") + "; revoked credentials stay revoked"
	if len(lifted) == 0 {
		detail = "nothing to lift; revoked credentials stay revoked"
	}
	if err := s.Store.AddIncidentEvent(ctx, id, store.IncidentEvent{At: s.now(), Actor: actor, Action: "restored", Detail: detail}); err != nil {
		errs = append(errs, err)
	}
	return lifted, errors.Join(errs...)
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newID is inc-YYYYMMDD-XXXXXX: sortable by day, unguessable enough.
func newID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "inc-" + now.UTC().Format("20060102") + "-" + strings.ToLower(idEncoding.EncodeToString(b[:])[:6])
}
