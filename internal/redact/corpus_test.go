package redact

import (
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/corpus.golden.json from the current output")

// corpusSample is one entry of testdata/corpus.json.
type corpusSample struct {
	Name    string   `json:"name"`
	Class   string   `json:"class"` // secret | benign
	Mode    string   `json:"mode"`  // text | query | url | json | header:<Name>
	Input   string   `json:"input"`
	Secrets []string `json:"secrets"`
}

// testKey is fixed so the golden output (hash suffixes included) is stable.
var testKey = []byte("gatehouse-redaction-test-key-000")

func corpusRedactor(t testing.TB) *Redactor {
	r, err := New(Options{Key: testKey, Detectors: Detectors})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *Redactor) redactAs(mode, in string) (string, error) {
	switch {
	case mode == "text":
		return r.Text(in), nil
	case mode == "query":
		return r.Query(in), nil
	case mode == "url":
		return r.URL(in), nil
	case mode == "json":
		b, err := r.JSON([]byte(in))
		return string(b), err
	case strings.HasPrefix(mode, "header:"):
		h := http.Header{}
		h.Set(strings.TrimPrefix(mode, "header:"), in)
		for _, v := range r.Header(h) {
			return v[0], nil
		}
	}
	return "", nil
}

// TestCorpus runs every sample: no secret may survive (false negatives
// fail the test), benign samples must come out unchanged (false positives
// are listed and fail too), and every output must equal the golden file.
func TestCorpus(t *testing.T) {
	raw, err := os.ReadFile("testdata/corpus.json")
	if err != nil {
		t.Fatal(err)
	}
	var samples []corpusSample
	if err := json.Unmarshal(raw, &samples); err != nil {
		t.Fatal(err)
	}
	if len(samples) < 50 {
		t.Fatalf("corpus has %d samples, want at least 50", len(samples))
	}
	r := corpusRedactor(t)
	got := map[string]string{}
	var nSecret, nBenign, falseNeg, falsePos int
	for _, s := range samples {
		out, err := r.redactAs(s.Mode, s.Input)
		if err != nil {
			t.Errorf("%s: %v", s.Name, err)
			continue
		}
		got[s.Name] = out
		switch s.Class {
		case "secret":
			nSecret++
			missed := false
			for _, sec := range s.Secrets {
				if strings.Contains(out, sec) {
					missed = true
					t.Errorf("FALSE NEGATIVE %s: %q survives in %q", s.Name, sec, out)
				}
			}
			if !strings.Contains(out, "[REDACTED:") {
				missed = true
				t.Errorf("FALSE NEGATIVE %s: no mark in %q", s.Name, out)
			}
			if missed {
				falseNeg++
			}
		case "benign":
			nBenign++
			if out != s.Input {
				falsePos++
				t.Errorf("FALSE POSITIVE %s: %q -> %q", s.Name, s.Input, out)
			}
		default:
			t.Errorf("%s: unknown class %q", s.Name, s.Class)
		}
	}
	t.Logf("corpus: %d samples (%d secret, %d benign): %d false negatives, %d false positives",
		len(samples), nSecret, nBenign, falseNeg, falsePos)

	const golden = "testdata/corpus.golden.json"
	if *update {
		b, _ := json.MarshalIndent(got, "", " ")
		if err := os.WriteFile(golden, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	gb, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestCorpus -update)", err)
	}
	var want map[string]string
	if err := json.Unmarshal(gb, &want); err != nil {
		t.Fatal(err)
	}
	for name, out := range got {
		if want[name] != out {
			t.Errorf("%s: output %q, golden %q", name, out, want[name])
		}
	}
}
