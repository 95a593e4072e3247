package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	root := NewRoot(&o, &e)
	root.SetArgs(args)
	err = root.Execute()
	return o.String(), e.String(), err
}

func TestVersion(t *testing.T) {
	out, _, err := run(t, "version")
	if err != nil || !strings.HasPrefix(out, "gatehouse ") {
		t.Fatalf("version: %q %v", out, err)
	}
}

// Every command's help says what it does and shows an example.
func TestHelpHasExamples(t *testing.T) {
	root := NewRoot(&bytes.Buffer{}, &bytes.Buffer{})
	cmds := root.Commands()
	for len(cmds) > 0 {
		c := cmds[0]
		cmds = append(cmds[1:], c.Commands()...)
		if c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		if c.Short == "" || c.Example == "" {
			t.Errorf("command %q lacks Short or Example", c.CommandPath())
		}
	}
}

func TestConfigSchemaIsJSON(t *testing.T) {
	out, _, err := run(t, "config", "schema")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	if v["additionalProperties"] != false {
		t.Fatal("schema is not strict at the top level")
	}
}

func TestConfigValidateQuickstart(t *testing.T) {
	// Copy the quickstart so the dev certificate lands in a temp dir.
	dir := t.TempDir()
	copyFile(t, "../../examples/quickstart/gatehouse.yaml", filepath.Join(dir, "gatehouse.yaml"))
	copyFile(t, "../../examples/quickstart/specs/orders-v1.yaml", filepath.Join(dir, "specs", "orders-v1.yaml"))
	// make run writes the pepper; the test writes its own.
	write(t, filepath.Join(dir, "data", "pepper"), strings.Repeat("p3pper-", 8))
	out, errOut, err := run(t, "config", "validate", filepath.Join(dir, "gatehouse.yaml"))
	if err != nil {
		t.Fatalf("validate: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "valid (1 APIs") {
		t.Fatalf("stdout %q", out)
	}
	if !strings.Contains(errOut, "warning: /listen/tls/dev_cert") {
		t.Fatalf("want dev_cert warning, got %q", errOut)
	}
}

func TestConfigValidateReportsAllWithLines(t *testing.T) {
	dir := t.TempDir()
	spec := "openapi: 3.0.3\npaths:\n  /a:\n    get: {}\n"
	cfg := `version: 1
listen:
  tls: {dev_cert: true}
  htps: 127.0.0.1:1
apis:
  - name: a
    version: v1
    spec: spec.yaml
    upstream: http://127.0.0.1:1
    route: {base_path: /a}
`
	write(t, filepath.Join(dir, "spec.yaml"), spec)
	write(t, filepath.Join(dir, "g.yaml"), cfg)
	_, errOut, err := run(t, "config", "validate", filepath.Join(dir, "g.yaml"))
	var ee ExitError
	if !errors.As(err, &ee) || ee.Code != 1 {
		t.Fatalf("want exit 1, got %v", err)
	}
	for _, want := range []string{
		filepath.Join(dir, "g.yaml") + ":4: /listen/htps: unknown key",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("missing %q in:\n%s", want, errOut)
		}
	}
	// Fix the key: now the spec's own problem is reported with the spec's line.
	write(t, filepath.Join(dir, "g.yaml"), strings.Replace(cfg, "htps", "https", 1))
	_, errOut, err = run(t, "config", "validate", filepath.Join(dir, "g.yaml"))
	if err == nil || !strings.Contains(errOut, filepath.Join(dir, "spec.yaml")+":4: /apis/0/spec: operation GET /a has no operationId") {
		t.Fatalf("spec problem not reported with its line:\n%s", errOut)
	}
}

func TestConfigValidateOverlappingRoutes(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), "openapi: 3.0.3\npaths:\n  /x/{id}:\n    get: {operationId: a}\n")
	write(t, filepath.Join(dir, "b.yaml"), "openapi: 3.0.3\npaths:\n  /x/{key}:\n    get: {operationId: b}\n")
	write(t, filepath.Join(dir, "g.yaml"), `version: 1
listen: {tls: {dev_cert: true}}
apis:
  - {name: a, version: v1, owner: {team: t}, spec: a.yaml, upstream: "http://127.0.0.1:1", route: {base_path: /s}}
  - {name: b, version: v1, owner: {team: t}, spec: b.yaml, upstream: "http://127.0.0.1:2", route: {base_path: /s}}
`)
	_, errOut, err := run(t, "config", "validate", filepath.Join(dir, "g.yaml"))
	if err == nil || !strings.Contains(errOut, "ambiguous") {
		t.Fatalf("overlap not reported:\n%s", errOut)
	}
}

func write(t *testing.T, name, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	write(t, to, string(b))
}
