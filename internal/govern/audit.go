package govern

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Severities, lowest first.
var Severities = []string{"low", "medium", "high", "critical"}

// SeverityRank orders severities; unknown ones rank below low.
func SeverityRank(s string) int { return slices.Index(Severities, s) }

// Policy holds the audit thresholds.
type Policy struct {
	UnusedAfter      time.Duration // credential or grant unused this long
	RotateAfter      time.Duration // credential older than this
	ExpiryWarning    time.Duration // credential expiring within this
	OrphanAfter      time.Duration // API without traffic this long
	ReviewOverdue    time.Duration // security review older than this
	AdminTokenMaxAge time.Duration // admin token file older than this
}

// DefaultPolicy are the thresholds when the config sets none.
var DefaultPolicy = Policy{
	UnusedAfter:      30 * 24 * time.Hour,
	RotateAfter:      90 * 24 * time.Hour,
	ExpiryWarning:    14 * 24 * time.Hour,
	OrphanAfter:      30 * 24 * time.Hour,
	ReviewOverdue:    config.ReviewOverdue,
	AdminTokenMaxAge: 90 * 24 * time.Hour,
}

// PolicyFrom applies the config's governance thresholds over the defaults.
func PolicyFrom(g config.Governance) Policy {
	p := DefaultPolicy
	set := func(dst *time.Duration, d config.Duration) {
		if d > 0 {
			*dst = d.D()
		}
	}
	set(&p.UnusedAfter, g.UnusedAfter)
	set(&p.RotateAfter, g.RotateAfter)
	set(&p.ExpiryWarning, g.ExpiryWarning)
	set(&p.OrphanAfter, g.OrphanAfter)
	set(&p.AdminTokenMaxAge, g.AdminTokenMaxAge)
	return p
}

// CallCount aggregates allowed calls of one credential to one operation.
type CallCount struct {
	Consumer, Partner, Credential string
	API, Version, Operation       string
	Calls                         int64
	Last                          time.Time
}

// PathCount aggregates calls no operation matched (404s), by host and path.
type PathCount struct {
	Host, Path string
	Calls      int64
	Last       time.Time
}

// Traffic is what the gateway observed, from the audit index.
type Traffic interface {
	// Calls returns allowed calls since the given time.
	Calls(ctx context.Context, since time.Time) ([]CallCount, error)
	// Unrouted returns calls no route matched since the given time.
	Unrouted(ctx context.Context, since time.Time) ([]PathCount, error)
}

// Input is everything the audit rules look at.
type Input struct {
	Config      *config.Config
	Credentials []store.Credential // not revoked
	// Traffic may be nil: the rules that need it are then listed in
	// Result.Skipped instead of guessing.
	Traffic Traffic
	Policy  Policy
	Now     time.Time
}

// Result is one audit run.
type Result struct {
	Findings []store.Finding
	// Skipped names rules that could not run, with why.
	Skipped []string
	// Traffic summary, when traffic was available.
	TrafficCalls, DeprecatedCalls int64
}

// Rule IDs. Stable: findings are tracked by them across runs.
const (
	RuleCredNeverUsed      = "GH-CRED-NEVER-USED"
	RuleCredUnused         = "GH-CRED-UNUSED"
	RuleCredOld            = "GH-CRED-ROTATE"
	RuleCredExpiring       = "GH-CRED-EXPIRING"
	RuleCredNoExpiry       = "GH-CRED-NO-EXPIRY"
	RuleCredOrphan         = "GH-CRED-ORPHAN"
	RuleCredOverPrivileged = "GH-CRED-OVER-PRIVILEGED"
	RuleConsumerIdleAccess = "GH-CONSUMER-IDLE-ACCESS"
	RulePartnerContract    = "GH-PARTNER-CONTRACT"
	RulePartnerContact     = "GH-PARTNER-CONTACT"
	RulePartnerNoOwnCreds  = "GH-PARTNER-NO-OWN-CREDENTIALS"
	RuleAPIOwner           = "GH-API-OWNER"
	RuleAPIReview          = "GH-API-REVIEW-OVERDUE"
	RuleAPIRestrictedMTLS  = "GH-API-RESTRICTED-NO-MTLS"
	RuleAPINoSunset        = "GH-API-DEPRECATED-NO-SUNSET"
	RuleAPIRetiredTraffic  = "GH-API-RETIRED-TRAFFIC"
	RuleAPIOrphan          = "GH-API-NO-TRAFFIC"
	RuleAdminTokenAge      = "GH-ADMIN-TOKEN-AGE"
	RuleAdminTokenInline   = "GH-ADMIN-TOKEN-INLINE"
)

// Evaluate runs every rule. It reads files (the admin token's age) and the
// traffic source; it writes nothing.
func Evaluate(ctx context.Context, in Input) (Result, error) {
	var r Result
	add := func(rule, subject, severity, title, evidence, fix string) {
		r.Findings = append(r.Findings, store.Finding{Rule: rule, Subject: subject, Severity: severity,
			Title: title, Evidence: evidence, Fix: fix})
	}
	cfg, p, now := in.Config, in.Policy, in.Now
	days := func(d time.Duration) int { return int(d.Hours() / 24) }

	consumers := map[string]config.Consumer{}
	for _, c := range cfg.Consumers {
		consumers[c.Name] = c
	}

	// Credentials.
	for _, c := range in.Credentials {
		subj := "credential:" + c.ID
		if !c.ExpiresAt.IsZero() && !c.ExpiresAt.After(now) {
			continue // expired: no longer a way in
		}
		if _, ok := consumers[c.Consumer]; !ok {
			add(RuleCredOrphan, subj, "high", "Credential of a consumer no longer in the config",
				fmt.Sprintf("%s belongs to %q, which the config no longer declares (a decommissioned integration)", c.ID, c.Consumer),
				"gatehouse keys revoke "+c.ID+" --reason decommissioned")
		}
		age := now.Sub(c.CreatedAt)
		switch {
		case c.LastUsedAt.IsZero() && age > p.UnusedAfter:
			add(RuleCredNeverUsed, subj, "medium", "Credential never used",
				fmt.Sprintf("issued %d days ago to %s and never used", days(age), c.Consumer),
				"revoke it if the integration is gone: gatehouse keys revoke "+c.ID)
		case !c.LastUsedAt.IsZero() && now.Sub(c.LastUsedAt) > p.UnusedAfter:
			add(RuleCredUnused, subj, "medium", "Credential unused",
				fmt.Sprintf("last used %d days ago (%s) by %s", days(now.Sub(c.LastUsedAt)), c.LastUsedAt.Format(time.DateOnly), c.Consumer),
				"revoke it if the integration is gone: gatehouse keys revoke "+c.ID)
		}
		if age > p.RotateAfter {
			add(RuleCredOld, subj, "medium", "Credential older than the rotation policy",
				fmt.Sprintf("issued %s, %d days ago; policy rotates after %d days", c.CreatedAt.Format(time.DateOnly), days(age), days(p.RotateAfter)),
				"gatehouse keys rotate "+c.ID+" --overlap 24h")
		}
		if c.ExpiresAt.IsZero() {
			add(RuleCredNoExpiry, subj, "high", "Credential never expires",
				c.ID+" of "+c.Consumer+" has no expiry", "rotate it into a key with a lifetime: gatehouse keys rotate "+c.ID)
		} else if left := c.ExpiresAt.Sub(now); left <= p.ExpiryWarning {
			add(RuleCredExpiring, subj, "low", "Credential expires soon",
				fmt.Sprintf("expires %s, in %d days", c.ExpiresAt.Format(time.DateOnly), days(left)),
				"tell "+c.Consumer+" to rotate: gatehouse keys rotate "+c.ID)
		}
	}

	// Partners.
	ownCreds := map[string]int{}
	for _, c := range cfg.Consumers {
		if c.Partner != "" {
			ownCreds[c.Partner]++
		}
	}
	for _, pt := range cfg.Partners {
		subj := "partner:" + pt.Name
		var missing []string
		if pt.Contract.SLA == "" {
			missing = append(missing, "sla")
		}
		if pt.Contract.BreachNoticeHours == 0 {
			missing = append(missing, "breach_notice_hours")
		}
		if pt.Contract.AuditRights == nil {
			missing = append(missing, "audit_rights")
		}
		if len(missing) > 0 {
			add(RulePartnerContract, subj, "medium", "Partner without contract metadata",
				"missing contract."+strings.Join(missing, ", contract."), "record the contract terms under partners["+pt.Name+"].contract")
		}
		if pt.SecurityContact.Email == "" && pt.SecurityContact.Webhook == "" {
			add(RulePartnerContact, subj, "medium", "Partner without a security contact",
				"no security_contact.email or .webhook: nobody to notify in an incident", "add partners["+pt.Name+"].security_contact")
		}
		if ownCreds[pt.Name] == 0 {
			add(RulePartnerNoOwnCreds, subj, "high", "Partner without credentials of its own",
				"no consumer belongs to "+pt.Name+": it can only be calling with someone else's credentials or not at all",
				"declare a consumer with partner: "+pt.Name+" and issue it its own key, or remove the partner")
		}
	}

	// APIs.
	for _, a := range cfg.APIs {
		subj := "api:" + a.Name + "@" + a.Version
		exposed := a.Exposure == "public" || a.Exposure == "partner"
		if a.Lifecycle != "retired" {
			if a.Owner.Team == "" || a.Owner.Contact == "" {
				sev := "medium"
				if exposed {
					sev = "high"
				}
				add(RuleAPIOwner, subj, sev, "API without an owner", "owner.team or owner.contact is empty", "set owner: {team, contact}")
			}
			reviewed, err := time.Parse(time.DateOnly, a.Reviewed.On)
			if err != nil || now.Sub(reviewed) > p.ReviewOverdue {
				sev := "medium"
				if exposed || a.Sensitivity == "restricted" {
					sev = "high"
				}
				ev := "never reviewed"
				if err == nil {
					ev = fmt.Sprintf("last reviewed %s, %d days ago", a.Reviewed.On, days(now.Sub(reviewed)))
				}
				add(RuleAPIReview, subj, sev, "Security review overdue", ev+fmt.Sprintf("; policy: every %d days", days(p.ReviewOverdue)),
					"review it and set reviewed: {on: YYYY-MM-DD, by: reviewer}")
			}
			if a.Sensitivity == "restricted" && a.Exposure == "partner" && !a.RequireMTLS && !onlyMTLS(a.Auth) {
				add(RuleAPIRestrictedMTLS, subj, "high", "Restricted data exposed to partners without mTLS",
					"sensitivity restricted, exposure partner, auth "+strings.Join(a.Auth, ",")+" without require_mtls",
					"set require_mtls: true (partners present a client certificate from their CA)")
			}
		}
		if a.Lifecycle == "deprecated" && a.Deprecation.Sunset == "" {
			add(RuleAPINoSunset, subj, "medium", "Deprecated API without a sunset date",
				"deprecated since "+dashIfEmpty(a.Deprecation.On)+" with no sunset", "set deprecation.sunset so callers can plan")
		}
	}

	// Admin token.
	switch {
	case cfg.Admin.TokenFile != "":
		if fi, err := os.Stat(cfg.Admin.TokenFile); err == nil {
			if age := now.Sub(fi.ModTime()); age > p.AdminTokenMaxAge {
				add(RuleAdminTokenAge, "admin-token:"+cfg.Admin.TokenFile, "high", "Admin token older than policy",
					fmt.Sprintf("%s last changed %d days ago; policy: %d days", cfg.Admin.TokenFile, days(age), days(p.AdminTokenMaxAge)),
					"write a new random token to the file and reload (POST /v1/reload or SIGHUP)")
			}
		}
	case cfg.Admin.Token != "":
		add(RuleAdminTokenInline, "admin-token:inline", "low", "Admin token age cannot be tracked",
			"admin.token is set inline (or from the environment), so its age is unknown",
			"use admin.token_file: its modification time tells when it was rotated")
	}

	if in.Traffic == nil {
		r.Skipped = append(r.Skipped, RuleCredOverPrivileged+", "+RuleConsumerIdleAccess+", "+RuleAPIRetiredTraffic+", "+RuleAPIOrphan+
			": no traffic source (the audit index is not available)")
	} else if err := trafficRules(ctx, in, add, &r); err != nil {
		return r, err
	}

	sort.Slice(r.Findings, func(i, j int) bool {
		a, b := r.Findings[i], r.Findings[j]
		if SeverityRank(a.Severity) != SeverityRank(b.Severity) {
			return SeverityRank(a.Severity) > SeverityRank(b.Severity)
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		return a.Subject < b.Subject
	})
	return r, nil
}

// trafficRules are the rules that compare grants with observed use.
func trafficRules(ctx context.Context, in Input, add func(rule, subject, severity, title, evidence, fix string), r *Result) error {
	cfg, p, now := in.Config, in.Policy, in.Now
	window := max(p.UnusedAfter, p.OrphanAfter)
	calls, err := in.Traffic.Calls(ctx, now.Add(-window))
	if err != nil {
		return fmt.Errorf("audit: read traffic: %w", err)
	}
	unrouted, err := in.Traffic.Unrouted(ctx, now.Add(-window))
	if err != nil {
		return fmt.Errorf("audit: read traffic: %w", err)
	}
	apis := map[string]config.API{}
	for _, a := range cfg.APIs {
		apis[a.Name+"@"+a.Version] = a
	}
	usedScopes := map[string]map[string]bool{} // credential → scopes exercised
	calledAPI := map[string]map[string]bool{}  // consumer → api@version called
	apiCalls := map[string]int64{}
	unusedSince := now.Add(-p.UnusedAfter)
	for _, c := range calls {
		key := c.API + "@" + c.Version
		r.TrafficCalls += c.Calls
		if a, ok := apis[key]; ok && a.Lifecycle == "deprecated" {
			r.DeprecatedCalls += c.Calls
		}
		if !c.Last.Before(now.Add(-p.OrphanAfter)) {
			apiCalls[key] += c.Calls
		}
		if c.Last.Before(unusedSince) {
			continue
		}
		if calledAPI[c.Consumer] == nil {
			calledAPI[c.Consumer] = map[string]bool{}
		}
		calledAPI[c.Consumer][key] = true
		if c.Credential != "" {
			if usedScopes[c.Credential] == nil {
				usedScopes[c.Credential] = map[string]bool{}
			}
			if a, ok := apis[key]; ok {
				for _, s := range policyScopes(a, c.Operation) {
					usedScopes[c.Credential][s] = true
				}
			}
		}
	}

	for _, c := range in.Credentials {
		if (!c.ExpiresAt.IsZero() && !c.ExpiresAt.After(now)) || now.Sub(c.CreatedAt) < p.UnusedAfter || len(c.Scopes) == 0 {
			continue // too young to judge, or nothing granted
		}
		used := usedScopes[c.ID]
		if len(used) == 0 {
			continue // not used at all: the unused rules already say so
		}
		var idle, keep []string
		for _, s := range c.Scopes {
			if used[s] {
				keep = append(keep, s)
			} else {
				idle = append(idle, s)
			}
		}
		if len(idle) > 0 {
			add(RuleCredOverPrivileged, "credential:"+c.ID, "medium", "Credential holds scopes it does not use",
				fmt.Sprintf("granted %s; not exercised in %d days: %s", strings.Join(c.Scopes, ","), int(p.UnusedAfter.Hours()/24), strings.Join(idle, ",")),
				fmt.Sprintf("grant only %s: gatehouse keys issue --consumer %s --scopes %s, then revoke %s",
					strings.Join(keep, ","), c.Consumer, strings.Join(keep, ","), c.ID))
		}
	}

	for _, cons := range cfg.Consumers {
		for _, a := range cfg.APIs {
			if a.Lifecycle == "retired" || !canCall(cons, a) {
				continue
			}
			key := a.Name + "@" + a.Version
			if !calledAPI[cons.Name][key] {
				add(RuleConsumerIdleAccess, "consumer:"+cons.Name+"/api:"+key, "low", "Consumer holds access to an API it never calls",
					fmt.Sprintf("%s may call %s %s but did not in %d days", cons.Name, a.Name, a.Version, int(p.UnusedAfter.Hours()/24)),
					"narrow the consumer's scopes or roles, or the API's allow_partners")
			}
		}
	}

	for _, a := range cfg.APIs {
		key := a.Name + "@" + a.Version
		switch a.Lifecycle {
		case "retired":
			var n int64
			for _, u := range unrouted {
				if (a.Route.Host == "" || strings.EqualFold(u.Host, a.Route.Host)) && underBase(u.Path, a.Route.BasePath) {
					n += u.Calls
				}
			}
			if n > 0 {
				add(RuleAPIRetiredTraffic, "api:"+key, "high", "Retired API still receives traffic",
					fmt.Sprintf("%d calls to %s in %d days (answered 404)", n, a.Route.BasePath, int(window.Hours()/24)),
					"find the callers (gatehouse logs query --status 404) and move them; a decommissioned integration may still be live")
			}
		case "active", "deprecated":
			if apiCalls[key] == 0 {
				add(RuleAPIOrphan, "api:"+key, "low", "API without traffic",
					fmt.Sprintf("no allowed call in %d days", int(p.OrphanAfter.Hours()/24)),
					"retire it (lifecycle: retired) if nobody needs it: an unused entry point is pure risk")
			}
		}
	}
	return nil
}

// policyScopes are the scopes the policy of an operation requires.
func policyScopes(a config.API, op string) []string {
	var star []string
	for _, p := range a.Policies {
		if p.Operation == op {
			return p.Scopes
		}
		if p.Operation == "*" {
			star = p.Scopes
		}
	}
	return star
}

// canCall reports whether consumer c is granted at least one non-public
// operation of a.
func canCall(c config.Consumer, a config.API) bool {
	if len(a.AllowPartners) > 0 && !slices.Contains(a.AllowPartners, c.Partner) {
		return false
	}
	for _, p := range a.Policies {
		if p.Public {
			continue
		}
		ok := true
		for _, s := range p.Scopes {
			if !slices.Contains(c.Scopes, s) {
				ok = false
			}
		}
		if len(p.Roles) > 0 && !slices.ContainsFunc(p.Roles, func(r string) bool { return slices.Contains(c.Roles, r) }) {
			ok = false
		}
		if ok {
			return true
		}
	}
	return false
}

func onlyMTLS(auth []string) bool {
	return len(auth) > 0 && !slices.ContainsFunc(auth, func(a string) bool { return a != "mtls" })
}

func underBase(path, base string) bool {
	return base == "/" || path == base || strings.HasPrefix(path, base+"/")
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Summary is the executive view of the registry and its findings.
type Summary struct {
	APIs             int                       `json:"apis"`
	ByExposure       map[string]map[string]int `json:"apis_by_exposure_and_sensitivity"`
	WithOwnerPct     float64                   `json:"percent_with_owner"`
	ReviewedPct      float64                   `json:"percent_reviewed_in_policy"`
	OpenBySeverity   map[string]int            `json:"open_findings_by_severity"`
	OpenIncidents    int                       `json:"open_incidents"`
	DeprecatedShare  *float64                  `json:"deprecated_traffic_share,omitempty"`
	TrafficAvailable bool                      `json:"traffic_available"`
}

// Summarize computes the executive view (live APIs: retired ones excluded).
func Summarize(cfg *config.Config, r Result, open []store.Finding, p Policy, now time.Time, traffic bool) Summary {
	s := Summary{ByExposure: map[string]map[string]int{}, OpenBySeverity: map[string]int{}, TrafficAvailable: traffic}
	var owned, reviewed int
	for _, a := range cfg.APIs {
		if a.Lifecycle == "retired" {
			continue
		}
		s.APIs++
		if s.ByExposure[a.Exposure] == nil {
			s.ByExposure[a.Exposure] = map[string]int{}
		}
		s.ByExposure[a.Exposure][a.Sensitivity]++
		if a.Owner.Team != "" && a.Owner.Contact != "" {
			owned++
		}
		if t, err := time.Parse(time.DateOnly, a.Reviewed.On); err == nil && now.Sub(t) <= p.ReviewOverdue {
			reviewed++
		}
	}
	if s.APIs > 0 {
		s.WithOwnerPct = 100 * float64(owned) / float64(s.APIs)
		s.ReviewedPct = 100 * float64(reviewed) / float64(s.APIs)
	}
	for _, sev := range Severities {
		s.OpenBySeverity[sev] = 0
	}
	for _, f := range open {
		if f.ResolvedAt.IsZero() {
			s.OpenBySeverity[f.Severity]++
		}
	}
	if traffic && r.TrafficCalls > 0 {
		share := 100 * float64(r.DeprecatedCalls) / float64(r.TrafficCalls)
		s.DeprecatedShare = &share
	}
	return s
}
