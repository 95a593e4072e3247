package waf

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func TestConfigDefaults(t *testing.T) {
	w := mustWAF(t, Config{Mode: ModeBlock})
	want := Config{Mode: ModeBlock, Paranoia: 1, InboundThreshold: 5, BodyLimit: 128 << 10, ExcludeRuleIDs: []int{}, ExcludeTags: []string{}}
	got := w.Config()
	if got.key() != want.key() {
		t.Errorf("defaults: got %+v, want %+v", got, want)
	}
}

func TestConfigReportsEveryProblem(t *testing.T) {
	_, err := New(Config{
		Mode:             "blokc",
		Paranoia:         7,
		InboundThreshold: -1,
		BodyLimit:        -5,
		ExcludeRuleIDs:   []int{949110, 901100, 942013, 1234567},
		ExcludeTags:      []string{"attack-sqli\"\nSecRuleEngine Off", "OWASP_CRS", "anomaly-evaluation", "no-such-tag"},
	})
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{
		`mode: "blokc"`, "paranoia: 7", "inbound_threshold: -1", "body_limit: -5",
		"exclude_rule_ids: 949110", "exclude_rule_ids: 901100", "exclude_rule_ids: 942013 is a CRS paranoia-level switch", "exclude_rule_ids: 1234567 is not a rule of CRS",
		`may contain only letters`, `exclude_tags: "OWASP_CRS" would remove`, `exclude_tags: "anomaly-evaluation" would remove`, `"no-such-tag" is not a tag`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestConfigModeRequired(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "mode: missing") {
		t.Errorf("got %v", err)
	}
}

func TestConfigAcceptsKnownExclusions(t *testing.T) {
	n, err := Config{Mode: ModeDetect, ExcludeRuleIDs: []int{942100, 920420, 942100, RuleBodyParseFailure}, ExcludeTags: []string{"language-php", "attack-sqli", "paranoia-level/2"}}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(n.ExcludeRuleIDs, []int{RuleBodyParseFailure, 920420, 942100}) {
		t.Errorf("ids not sorted and de-duplicated: %v", n.ExcludeRuleIDs)
	}
	if !slices.Equal(n.ExcludeTags, []string{"attack-sqli", "language-php", "paranoia-level/2"}) {
		t.Errorf("tags not sorted: %v", n.ExcludeTags)
	}
}

func TestOffModeIsFreeAndInert(t *testing.T) {
	w, err := New(Config{Mode: ModeOff, Paranoia: 99}) // other fields are ignored
	if err != nil {
		t.Fatal(err)
	}
	if v := w.Inspect(nil, "", nil); v.Block || v.Matched || v.RuleIDs != nil || v.Err != nil {
		t.Errorf("off mode verdict %+v", v)
	}
	var nilWAF *WAF
	if v := nilWAF.Inspect(nil, "", nil); v.Block {
		t.Error("nil WAF blocked")
	}
	if err := w.Close(); err != nil {
		t.Error(err)
	}
}

func TestCRSVersion(t *testing.T) {
	if v := CRSVersion(); !regexp.MustCompile(`^4\.\d+\.\d+$`).MatchString(v) {
		t.Errorf("CRSVersion() = %q", v)
	}
}

// The compiled SecLang for a config is a plan worth reading in review:
// `go test ./internal/waf -run Golden -update` rewrites it.
func TestDirectivesGolden(t *testing.T) {
	for name, cfg := range map[string]Config{
		"block-pl1": {Mode: ModeBlock},
		"detect-pl2-tuned": {Mode: ModeDetect, Paranoia: 2, InboundThreshold: 10, BodyLimit: 1 << 20,
			ExcludeRuleIDs: []int{942200, 920420}, ExcludeTags: []string{"language-php"}},
	} {
		t.Run(name, func(t *testing.T) {
			n, err := cfg.normalize()
			if err != nil {
				t.Fatal(err)
			}
			got := n.directives()
			path := filepath.Join("testdata", name+".conf")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("directives differ from %s (run with -update if intended):\n%s", path, got)
			}
		})
	}
}
