package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lifecycleConfig renders a config with one API (v1) carrying the given
// YAML lines (4-space indent) and a live v2 successor.
func lifecycleConfig(v1 string) string {
	return `version: 1
listen:
  https: 127.0.0.1:8443
  tls: {cert: c.pem, key: k.pem}
apis:
  - name: orders
    version: v1
    spec: spec.yaml
    upstream: http://127.0.0.1:9000
    route: {base_path: /orders/v1}
    policies: [{operation: "*", public: true}]
` + v1 + `  - name: orders
    version: v2
    owner: {team: t, contact: t@example.com}
    spec: spec.yaml
    upstream: http://127.0.0.1:9000
    route: {base_path: /orders/v2}
    policies: [{operation: "*", public: true}]
`
}

func loadText(t *testing.T, text string) (*Loaded, Problems) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := Load(path, env(nil))
	if err == nil {
		return l, l.Warnings
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Load: %v", err)
	}
	return l, ps
}

func TestLifecycleRules(t *testing.T) {
	recent := time.Now().AddDate(0, 0, -10).Format(time.DateOnly)
	stale := time.Now().AddDate(0, 0, -200).Format(time.DateOnly)
	future := time.Now().AddDate(0, 1, 0).Format(time.DateOnly)
	owner := "    owner: {team: payments, contact: sec@example.com}\n"
	review := fmt.Sprintf("    reviewed: {on: %s, by: appsec}\n", recent)
	cases := []struct {
		name string
		v1   string
		// wantErr and wantWarn are "pointer: fragment" substrings; empty
		// means none of that kind at all.
		wantErr, wantWarn string
	}{
		{"internal active API needs little", "", "", "/apis/0/owner"},
		{"public active API without owner", "    exposure: public\n" + review, "/apis/0/owner: an active public API needs owner", ""},
		{"partner active API without review", "    exposure: partner\n" + owner, "/apis/0/reviewed: an active partner API needs a security review", ""},
		{"public API with owner only team", "    exposure: public\n    owner: {team: payments}\n" + review, "/apis/0/owner:", ""},
		{"public API complete", "    exposure: public\n" + owner + review, "", ""},
		{"review overdue warns", "    exposure: public\n" + owner + fmt.Sprintf("    reviewed: {on: %s, by: appsec}\n", stale), "", "/apis/0/reviewed/on: the last security review"},
		{"review in the future", "    exposure: public\n" + owner + fmt.Sprintf("    reviewed: {on: %s, by: appsec}\n", future), "/apis/0/reviewed/on: review date", ""},
		{"deprecated without date", owner + "    lifecycle: deprecated\n", "/apis/0/deprecation/on: a deprecated API needs deprecation.on", ""},
		{"deprecated without sunset warns", owner + "    lifecycle: deprecated\n    deprecation: {on: 2026-01-01, successor: v2}\n", "", "/apis/0/deprecation/sunset: deprecated API orders v1 has no sunset"},
		{"deprecated without successor warns", owner + "    lifecycle: deprecated\n    deprecation: {on: 2026-01-01, sunset: 2027-01-01}\n", "", "/apis/0/deprecation/successor: deprecated API"},
		{"deprecated complete", owner + "    lifecycle: deprecated\n    deprecation: {on: 2026-01-01, sunset: 2099-01-01, successor: v2, link: https://developer.example.com/orders-v1}\n", "", ""},
		{"sunset before deprecation", owner + "    lifecycle: deprecated\n    deprecation: {on: 2026-06-01, sunset: 2026-01-01, successor: v2}\n", "/apis/0/deprecation/sunset: sunset 2026-01-01 must come after", ""},
		{"unknown successor", owner + "    lifecycle: deprecated\n    deprecation: {on: 2026-01-01, sunset: 2099-01-01, successor: v9}\n", `/apis/0/deprecation/successor: no API orders with version "v9"`, ""},
		{"successor is itself", owner + "    lifecycle: deprecated\n    deprecation: {on: 2026-01-01, sunset: 2099-01-01, successor: v1}\n", `/apis/0/deprecation/successor: no API orders`, ""},
		{"bad date", owner + "    lifecycle: deprecated\n    deprecation: {on: 01/02/2026, sunset: 2099-01-01, successor: v2}\n", "/apis/0/deprecation/on: \"01/02/2026\" is neither", ""},
		{"RFC 3339 dates", owner + "    lifecycle: deprecated\n    deprecation: {on: \"2023-06-30T23:59:59Z\", sunset: \"2099-12-31T23:59:59+02:00\", successor: v2}\n", "", ""},
		{"sunset on an active API", owner + "    deprecation: {sunset: 2099-01-01}\n", "/apis/0/deprecation/sunset: a sunset date needs lifecycle: deprecated", ""},
		{"planned deprecation on an active API", owner + fmt.Sprintf("    deprecation: {on: %s, successor: v2}\n", future), "", ""},
		{"relative deprecation link", owner + "    lifecycle: deprecated\n    deprecation: {on: 2026-01-01, sunset: 2099-01-01, successor: v2, link: /docs}\n", "/apis/0/deprecation/link: link must be an absolute", ""},
		{"bad criticality", owner + "    criticality: extreme\n", "/apis/0/criticality", ""},
		{"data flows", owner + "    criticality: high\n    use_case: partner order intake\n    data_flows: [{system: erp, direction: write, data: orders}, {system: crm, direction: read}]\n", "", ""},
		{"data flow without system", owner + "    data_flows: [{direction: write}]\n", "/apis/0/data_flows/0", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := loadText(t, lifecycleConfig(tc.v1))
			var errs, warns []string
			for _, p := range ps {
				if strings.Contains(p.Path, "/tls") || strings.Contains(p.Path, "/apis/1") {
					continue // the fixture's certificate files do not exist: not this test's concern
				}
				if p.Warning {
					warns = append(warns, p.String())
				} else {
					errs = append(errs, p.String())
				}
			}
			check := func(kind, want string, got []string) {
				if want == "" {
					if len(got) > 0 && kind == "error" {
						t.Errorf("unexpected %ss: %q", kind, got)
					}
					return
				}
				if !strings.Contains(strings.Join(got, "\n"), want) {
					t.Errorf("want %s containing %q, got %q", kind, want, got)
				}
			}
			check("error", tc.wantErr, errs)
			check("warning", tc.wantWarn, warns)
			if tc.wantWarn == "" && tc.wantErr == "" {
				for _, w := range warns {
					if strings.Contains(w, "/deprecation") || strings.Contains(w, "/reviewed") {
						t.Errorf("unexpected warning %q", w)
					}
				}
			}
		})
	}
}

// TestLifecycleErrorLine: a lifecycle error names the file and the line of
// the offending key, like every other config problem.
func TestLifecycleErrorLine(t *testing.T) {
	text := lifecycleConfig("    owner: {team: p, contact: p@example.com}\n    lifecycle: deprecated\n    deprecation:\n      on: 2026-01-01\n      successor: v7\n")
	_, ps := loadText(t, text)
	line := 0
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "successor: v7") {
			line = i + 1
		}
	}
	for _, p := range ps {
		if p.Path == "/apis/0/deprecation/successor" && !p.Warning {
			if p.Line != line || !strings.HasSuffix(p.File, "gatehouse.yaml") {
				t.Errorf("problem at %s:%d, want line %d", p.File, p.Line, line)
			}
			return
		}
	}
	t.Fatalf("no successor error in %v", ps)
}

func TestParseWhen(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"2023-06-30T23:59:59Z", 1688169599, true}, // RFC 9745's example instant
		{"2018-12-31T23:59:59Z", 1546300799, true}, // RFC 8594's example instant
		{"2026-01-01", 1767225600, true},
		{"2026-01-01T02:00:00+02:00", 1767225600, true},
		{"2026-13-01", 0, false},
		{"yesterday", 0, false},
		{"", 0, false},
	} {
		got, err := ParseWhen(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got.Unix() != tc.want) {
			t.Errorf("ParseWhen(%q) = %v, %v; want %d ok=%v", tc.in, got.Unix(), err, tc.want, tc.ok)
		}
	}
}
