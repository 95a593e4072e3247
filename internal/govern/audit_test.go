package govern

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/store"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func day(n int) time.Time { return now.AddDate(0, 0, n) }

// recorded is observed traffic given as data: the audit index's answer.
type recorded struct {
	calls    []CallCount
	unrouted []PathCount
}

func (r recorded) Calls(_ context.Context, since time.Time) ([]CallCount, error) {
	var out []CallCount
	for _, c := range r.calls {
		if !c.Last.Before(since) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (r recorded) Unrouted(_ context.Context, since time.Time) ([]PathCount, error) {
	var out []PathCount
	for _, u := range r.unrouted {
		if !u.Last.Before(since) {
			out = append(out, u)
		}
	}
	return out, nil
}

// clean is an estate with no findings at all: every rule's "does not fire" twin.
func clean(t *testing.T) Input {
	yes := true
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokenFile, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tokenFile, day(-10), day(-10)); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Admin: config.Admin{TokenFile: tokenFile},
		Partners: []config.Partner{{Name: "acme",
			SecurityContact: config.SecurityContact{Email: "soc@acme.example"},
			Contract:        config.Contract{SLA: "gold", BreachNoticeHours: 24, AuditRights: &yes}}},
		Consumers: []config.Consumer{
			{Name: "acme-billing", Partner: "acme", Scopes: []string{"orders:read", "orders:write"}},
		},
		APIs: []config.API{{
			Name: "orders", Version: "v1", Exposure: "partner", Sensitivity: "confidential", Lifecycle: "active",
			Owner: config.Owner{Team: "payments", Contact: "sec@example.com"}, Reviewed: config.Reviewed{On: day(-30).Format(time.DateOnly), By: "appsec"},
			Route: config.APIRoute{BasePath: "/orders/v1"}, Auth: []string{"apikey"},
			Policies: []config.Policy{{Operation: "getOrder", Scopes: []string{"orders:read"}}, {Operation: "createOrder", Scopes: []string{"orders:write"}}},
		}},
	}
	return Input{
		Config: cfg,
		Credentials: []store.Credential{{ID: "k1", Consumer: "acme-billing", Partner: "acme", Scopes: []string{"orders:read", "orders:write"},
			CreatedAt: day(-40), ExpiresAt: day(40), LastUsedAt: day(-1)}},
		Traffic: recorded{calls: []CallCount{
			{Consumer: "acme-billing", Partner: "acme", Credential: "k1", API: "orders", Version: "v1", Operation: "getOrder", Calls: 90, Last: day(-1)},
			{Consumer: "acme-billing", Partner: "acme", Credential: "k1", API: "orders", Version: "v1", Operation: "createOrder", Calls: 10, Last: day(-2)},
		}},
		Policy: DefaultPolicy,
		Now:    now,
	}
}

func TestAuditRules(t *testing.T) {
	cases := []struct {
		rule, subject string
		mutate        func(t *testing.T, in *Input)
		evidence      string // substring of the finding's evidence or fix
	}{
		{RuleCredNeverUsed, "credential:k1", func(_ *testing.T, in *Input) { in.Credentials[0].LastUsedAt = time.Time{} }, "never used"},
		{RuleCredUnused, "credential:k1", func(_ *testing.T, in *Input) { in.Credentials[0].LastUsedAt = day(-45) }, "last used 45 days ago"},
		{RuleCredOld, "credential:k1", func(_ *testing.T, in *Input) { in.Credentials[0].CreatedAt = day(-120) }, "gatehouse keys rotate k1"},
		{RuleCredExpiring, "credential:k1", func(_ *testing.T, in *Input) { in.Credentials[0].ExpiresAt = day(5) }, "in 5 days"},
		{RuleCredNoExpiry, "credential:k1", func(_ *testing.T, in *Input) { in.Credentials[0].ExpiresAt = time.Time{} }, "no expiry"},
		{RuleCredOrphan, "credential:k1", func(_ *testing.T, in *Input) { in.Credentials[0].Consumer = "old-app" }, `"old-app"`},
		{RuleCredOverPrivileged, "credential:k1", func(_ *testing.T, in *Input) {
			in.Traffic = recorded{calls: in.Traffic.(recorded).calls[:1]} // only reads
		}, "--scopes orders:read"},
		{RuleConsumerIdleAccess, "consumer:acme-billing/api:billing@v1", func(_ *testing.T, in *Input) {
			b := in.Config.APIs[0]
			b.Name = "billing"
			in.Config.APIs = append(in.Config.APIs, b)
			in.Traffic = recorded{calls: append(in.Traffic.(recorded).calls,
				CallCount{Consumer: "other", API: "billing", Version: "v1", Operation: "getOrder", Calls: 1, Last: day(-1)})}
		}, "did not in 30 days"},
		{RulePartnerContract, "partner:acme", func(_ *testing.T, in *Input) { in.Config.Partners[0].Contract.AuditRights = nil }, "contract.audit_rights"},
		{RulePartnerContact, "partner:acme", func(_ *testing.T, in *Input) { in.Config.Partners[0].SecurityContact = config.SecurityContact{} }, "nobody to notify"},
		{RulePartnerNoOwnCreds, "partner:globex", func(_ *testing.T, in *Input) {
			p := in.Config.Partners[0]
			p.Name = "globex"
			in.Config.Partners = append(in.Config.Partners, p)
		}, "no consumer belongs to globex"},
		{RuleAPIOwner, "api:orders@v1", func(_ *testing.T, in *Input) { in.Config.APIs[0].Owner.Contact = "" }, "owner"},
		{RuleAPIReview, "api:orders@v1", func(_ *testing.T, in *Input) { in.Config.APIs[0].Reviewed.On = day(-100).Format(time.DateOnly) }, "100 days ago"},
		{RuleAPIRestrictedMTLS, "api:orders@v1", func(_ *testing.T, in *Input) { in.Config.APIs[0].Sensitivity = "restricted" }, "require_mtls"},
		{RuleAPINoSunset, "api:orders@v1", func(_ *testing.T, in *Input) {
			in.Config.APIs[0].Lifecycle = "deprecated"
			in.Config.APIs[0].Deprecation.On = "2026-01-01"
		}, "with no sunset"},
		{RuleAPIRetiredTraffic, "api:archive@v1", func(_ *testing.T, in *Input) {
			in.Config.APIs = append(in.Config.APIs, config.API{Name: "archive", Version: "v1", Lifecycle: "retired", Route: config.APIRoute{BasePath: "/archive/v1"}})
			in.Traffic = recorded{calls: in.Traffic.(recorded).calls, unrouted: []PathCount{
				{Path: "/archive/v1/items/3", Calls: 7, Last: day(-2)}, {Path: "/archive/v10/x", Calls: 100, Last: day(-2)}}}
		}, "7 calls"},
		{RuleAPIOrphan, "api:orders@v1", func(_ *testing.T, in *Input) {
			in.Traffic = recorded{calls: []CallCount{{Consumer: "acme-billing", Credential: "k1", API: "orders", Version: "v1", Operation: "getOrder", Calls: 5, Last: day(-50)}}}
		}, "no allowed call in 30 days"},
		{RuleAdminTokenAge, "admin-token:", func(t *testing.T, in *Input) {
			if err := os.Chtimes(in.Config.Admin.TokenFile, day(-200), day(-200)); err != nil {
				t.Fatal(err)
			}
		}, "200 days ago"},
		{RuleAdminTokenInline, "admin-token:inline", func(_ *testing.T, in *Input) {
			in.Config.Admin = config.Admin{Token: "x"}
		}, "inline"},
	}

	base, err := Evaluate(t.Context(), clean(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(base.Findings) != 0 || len(base.Skipped) != 0 {
		t.Fatalf("the clean estate has findings: %+v skipped %v", base.Findings, base.Skipped)
	}
	fired := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.rule, func(t *testing.T) {
			in := clean(t)
			tc.mutate(t, &in)
			r, err := Evaluate(t.Context(), in)
			if err != nil {
				t.Fatal(err)
			}
			var hit *store.Finding
			for i, f := range r.Findings {
				if f.Rule == tc.rule {
					hit = &r.Findings[i]
				}
			}
			if hit == nil {
				t.Fatalf("%s did not fire; findings: %+v", tc.rule, r.Findings)
			}
			fired[tc.rule] = true
			if !strings.HasPrefix(hit.Subject, tc.subject) || !strings.Contains(hit.Evidence+" "+hit.Fix, tc.evidence) {
				t.Errorf("finding %+v: want subject %q and evidence containing %q", *hit, tc.subject, tc.evidence)
			}
			if SeverityRank(hit.Severity) < 0 || hit.Title == "" || hit.Fix == "" {
				t.Errorf("finding lacks severity, title or fix: %+v", *hit)
			}
		})
	}
	// Every rule has a case.
	for _, rule := range []string{RuleCredNeverUsed, RuleCredUnused, RuleCredOld, RuleCredExpiring, RuleCredNoExpiry, RuleCredOrphan,
		RuleCredOverPrivileged, RuleConsumerIdleAccess, RulePartnerContract, RulePartnerContact, RulePartnerNoOwnCreds, RuleAPIOwner,
		RuleAPIReview, RuleAPIRestrictedMTLS, RuleAPINoSunset, RuleAPIRetiredTraffic, RuleAPIOrphan, RuleAdminTokenAge, RuleAdminTokenInline} {
		if !fired[rule] {
			t.Errorf("rule %s has no triggering fixture", rule)
		}
	}
}

// TestAuditWithoutTraffic: without the audit index the traffic rules say
// they were skipped instead of reporting everything as unused.
func TestAuditWithoutTraffic(t *testing.T) {
	in := clean(t)
	in.Traffic = nil
	r, err := Evaluate(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Findings) != 0 || len(r.Skipped) != 1 || !strings.Contains(r.Skipped[0], RuleAPIOrphan) {
		t.Errorf("findings %+v skipped %v", r.Findings, r.Skipped)
	}
}

func TestSummary(t *testing.T) {
	in := clean(t)
	in.Config.APIs = append(in.Config.APIs,
		config.API{Name: "hr", Version: "v1", Exposure: "internal", Sensitivity: "restricted", Lifecycle: "deprecated"},
		config.API{Name: "old", Version: "v1", Exposure: "public", Lifecycle: "retired"})
	in.Traffic = recorded{calls: append(in.Traffic.(recorded).calls,
		CallCount{Consumer: "x", API: "hr", Version: "v1", Operation: "get", Calls: 25, Last: day(-1)})}
	r, err := Evaluate(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	s := Summarize(in.Config, r, r.Findings, in.Policy, now, true)
	if s.APIs != 2 || s.ByExposure["partner"]["confidential"] != 1 || s.ByExposure["internal"]["restricted"] != 1 {
		t.Errorf("by exposure: %+v", s)
	}
	if s.WithOwnerPct != 50 || s.ReviewedPct != 50 {
		t.Errorf("owner %v%% reviewed %v%%, want 50 and 50", s.WithOwnerPct, s.ReviewedPct)
	}
	if s.DeprecatedShare == nil || *s.DeprecatedShare != 20 {
		t.Errorf("deprecated share = %v, want 20 (25 of 125 calls)", s.DeprecatedShare)
	}
	total := 0
	for _, n := range s.OpenBySeverity {
		total += n
	}
	if total != len(r.Findings) || !slices.Contains(Severities, "critical") {
		t.Errorf("open by severity %v vs %d findings", s.OpenBySeverity, len(r.Findings))
	}
}
