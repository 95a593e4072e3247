package config

import (
	"strings"
	"testing"
)

const hygieneBase = `version: 1
listen: {https: 127.0.0.1:0, tls: {cert: c.pem, key: k.pem}}
admin: {listen: 127.0.0.1:0}
limits: {max_body_bytes: 65536}
apis:
  - name: a
    version: v1
    owner: {team: t}
    spec: s.yaml
    upstream: http://127.0.0.1:9000
    route: {base_path: /a}
`

func loadHygiene(t *testing.T, extra string) (*Loaded, error) {
	t.Helper()
	return LoadBytes("/cfg/gatehouse.yaml", []byte(hygieneBase+extra), env(nil))
}

func TestValidateShortAndLongForm(t *testing.T) {
	l, err := loadHygiene(t, "    validate: enforce\n")
	if err != nil {
		t.Fatal(err)
	}
	v := l.Config.APIs[0].Validate
	if v.Mode != ModeEnforce || v.MaxDepth != DefaultValidateMaxDepth || v.MaxBodyBytes != 65536 {
		t.Errorf("short form: %+v (max_body_bytes is capped by limits.max_body_bytes)", v)
	}
	l, err = loadHygiene(t, "    validate: {mode: report, strict: true, max_depth: 5, operations: {createX: {mode: enforce, strict: false}}}\n")
	if err != nil {
		t.Fatal(err)
	}
	v = l.Config.APIs[0].Validate
	if mode, strict := v.For("other"); mode != ModeReport || !strict || v.MaxDepth != 5 {
		t.Errorf("long form: %+v", v)
	}
	if mode, strict := v.For("createX"); mode != ModeEnforce || strict {
		t.Errorf("operation override: %s %v", mode, strict)
	}
}

func TestHygieneDefaultsBySensitivity(t *testing.T) {
	for sens, want := range map[string][2]string{
		"public":       {ModeOff, OversizePass},
		"internal":     {ModeOff, OversizePass},
		"confidential": {FilterDocument, OversizePass},
		"restricted":   {FilterDocument, OversizeFail},
	} {
		l, err := loadHygiene(t, "    sensitivity: "+sens+"\n")
		if err != nil {
			t.Fatal(err)
		}
		r := l.Config.APIs[0].Response
		if r.Filter != want[0] || r.Oversize != want[1] || r.MaxBytes != DefaultResponseMaxBytes {
			t.Errorf("%s: %+v, want filter %s oversize %s", sens, r, want[0], want[1])
		}
		if l.Config.APIs[0].Validate.Mode != ModeOff {
			t.Errorf("%s: validation on by default", sens)
		}
	}
}

func TestHygieneConfigProblems(t *testing.T) {
	rows := []struct {
		name, extra, want string
		warning           bool
	}{
		{"unknown mode", "    validate: block\n", "validate", false},
		{"unknown key", "    validate: {mode: enforce, strictly: true}\n", "strictly", false},
		{"bad filter", "    response: {filter: all}\n", "filter", false},
		{"bad header pattern", "    response: {strip_headers: [\"X Internal*\"]}\n", "strip_headers", false},
		{"restricted with filter off", "    sensitivity: restricted\n    response: {filter: off}\n", "restricted", true},
		{"restricted operation off", "    sensitivity: restricted\n    response: {operations: {getX: {filter: off}}}\n", "getX", true},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			l, err := loadHygiene(t, tc.extra)
			if tc.warning {
				if err != nil {
					t.Fatalf("warning case refused: %v", err)
				}
				found := false
				for _, p := range l.Warnings {
					found = found || (p.Warning && strings.Contains(p.Message+p.Path, tc.want))
				}
				if !found {
					t.Errorf("no warning about %s in %v", tc.want, l.Warnings)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "gatehouse.yaml:") {
				t.Errorf("error %v does not name %s with file:line", err, tc.want)
			}
		})
	}
	// Benign twin: everything set right loads without a warning.
	l, err := loadHygiene(t, "    sensitivity: restricted\n    validate: {mode: enforce}\n    response: {filter: documented, deny_fields: [ssn, /customer/email], strip_headers: [X-Internal-*], max_bytes: 65536, oversize: fail}\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range l.Warnings {
		if strings.Contains(p.Path, "response") || strings.Contains(p.Path, "validate") {
			t.Errorf("unexpected warning %v", p)
		}
	}
}
