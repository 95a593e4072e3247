package cli

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestAuditCommand: findings are printed with their fix, recorded with
// first-seen, resolved when fixed, and the exit status follows --fail-on.
func TestAuditCommand(t *testing.T) {
	cfg, _ := keysConfig(t) // partners without contracts or contacts: medium findings
	issueKey(t, cfg, "--consumer", "acme-billing", "--ttl", "5d")

	out, _, err := run(t, "audit", "-c", cfg)
	var ee ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	for _, want := range []string{"GH-PARTNER-CONTRACT partner:acme", "GH-PARTNER-CONTACT partner:globex", "GH-CRED-EXPIRING credential:",
		"fix: tell acme-billing to rotate: gatehouse keys rotate", "(open since ", "skipped: GH-CRED-OVER-PRIVILEGED"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit output lacks %q:\n%s", want, out)
		}
	}
	// Nothing is high or above here: exit 0 by default, 3 at --fail-on medium.
	if err != nil {
		t.Errorf("default --fail-on high failed on medium findings: %v", err)
	}
	if _, _, err := run(t, "audit", "-c", cfg, "--fail-on", "medium"); !errors.As(err, &ee) || ee.Code != 3 {
		t.Errorf("--fail-on medium: %v, want exit 3", err)
	}

	out, _, err = run(t, "audit", "-c", cfg, "-o", "json", "--fail-on", "none")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Findings []findingJSON
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Findings) < 5 {
		t.Fatalf("audit -o json: %v\n%s", err, out)
	}
	for _, f := range doc.Findings {
		if f.FirstSeen == nil || f.ResolvedAt != nil || f.Fix == "" {
			t.Errorf("finding %+v lacks first_seen or fix", f)
		}
	}

	// Fix the partners: their findings are resolved, not forgotten.
	write(t, cfg, strings.Replace(readFile(t, cfg), "  - {name: acme}\n  - {name: globex}\n",
		"  - {name: acme, security_contact: {email: soc@acme.example}, contract: {sla: gold, breach_notice_hours: 24, audit_rights: true}}\n"+
			"  - {name: globex, security_contact: {webhook: \"https://hooks.globex.example/sec\"}, contract: {sla: silver, breach_notice_hours: 48, audit_rights: false}}\n", 1))
	out, _, err = run(t, "audit", "-c", cfg, "--all", "--fail-on", "none")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "GH-PARTNER-CONTRACT partner:acme (resolved ") || !strings.Contains(out, "GH-CRED-EXPIRING") {
		t.Errorf("after the fix:\n%s", out)
	}

	out, _, err = run(t, "audit", "-c", cfg, "--summary", "--fail-on", "none")
	if err != nil || !strings.Contains(out, "Open findings: critical 0 high 0 medium 0 low 1") || !strings.Contains(out, "Open incidents: 0") ||
		!strings.Contains(out, "Traffic on deprecated versions: unknown") {
		t.Errorf("summary: %v\n%s", err, out)
	}
	if _, _, err := run(t, "audit", "-c", cfg, "--fail-on", "severe"); err == nil {
		t.Error("--fail-on severe accepted")
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
