package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) LookupEnv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadValid(t *testing.T) {
	l, err := Load("testdata/valid/gatehouse.yaml", env(map[string]string{"TEST_ADMIN_TOKEN": "0123456789abcdef0123"}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	c := l.Config
	if c.Admin.Token != "0123456789abcdef0123" {
		t.Errorf("env substitution: got %q", c.Admin.Token)
	}
	if got, want := c.Limits.ReadHeaderTimeout.D(), 2*time.Second; got != want {
		t.Errorf("read_header_timeout = %v, want %v", got, want)
	}
	if got, want := c.Limits.UpstreamResponseTimeout.D(), 90*time.Second; got != want {
		t.Errorf("upstream_response_timeout = %v, want %v", got, want)
	}
	if c.Limits.MaxHeaderBytes != DefaultMaxHeaderBytes || c.Limits.IdleTimeout.D() != DefaultIdleTimeout {
		t.Errorf("defaults not applied: %+v", c.Limits)
	}
	if want := filepath.Join("testdata", "valid", "spec.yaml"); c.APIs[0].Spec != want {
		t.Errorf("spec path = %q, want %q (relative to the config file)", c.APIs[0].Spec, want)
	}
	if want := filepath.Join("testdata", "valid", "certs", "c.pem"); c.Listen.TLS.Cert != want {
		t.Errorf("cert path = %q, want %q", c.Listen.TLS.Cert, want)
	}
	if c.APIs[0].Route.Host != "api.example.com" {
		t.Errorf("host not lower-cased: %q", c.APIs[0].Route.Host)
	}
	if c.APIs[0].Sensitivity != "confidential" || c.APIs[0].Lifecycle != "active" {
		t.Errorf("API defaults: %+v", c.APIs[0])
	}
	if c.APIs[0].Line != 14 {
		t.Errorf("API line = %d, want 14", c.APIs[0].Line)
	}
	if c.Store.SQLite != filepath.Join("testdata", "valid", "data", "gatehouse.db") {
		t.Errorf("default store = %q", c.Store.SQLite)
	}
}

func TestLoadFolderMergesLists(t *testing.T) {
	l, err := Load("testdata/folder", env(nil))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(l.Config.APIs) != 2 || l.Config.APIs[0].Name != "a" || l.Config.APIs[1].Name != "b" {
		t.Fatalf("APIs = %+v", l.Config.APIs)
	}
	if !strings.HasSuffix(l.Config.APIs[1].File, "10-more.yaml") || l.Config.APIs[1].Line != 3 {
		t.Errorf("second API position = %s:%d", l.Config.APIs[1].File, l.Config.APIs[1].Line)
	}
	if got := l.Config.APIs[1].Spec; got != filepath.Join("testdata", "valid", "spec.yaml") {
		t.Errorf("spec resolved against its own file: %q", got)
	}
	if len(l.Warnings) == 0 || !strings.Contains(l.Warnings.Error(), "dev_cert") {
		t.Errorf("want a dev_cert warning, got %v", l.Warnings)
	}
}

// TestLoadReportsEveryProblem checks that one run names every mistake of a
// bad file, each with its own line.
func TestLoadReportsEveryProblem(t *testing.T) {
	_, err := Load("testdata/bad/many.yaml", env(nil))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("want Problems, got %v", err)
	}
	out := ps.Error()
	f := "testdata/bad/many.yaml"
	want := []string{
		f + ":4: /listen/tls: set both tls.cert and tls.key",
		f + ":5: /listen/bogus: unknown key \"bogus\"",
		f + ":7: /admin/token: environment variable UNSET_GATEHOUSE_TEST_VAR is not set",
		f + ":9: /limits/read_header_timeout:",
		f + ":10: /limits/max_body_bytes:",
		f + ":12: /apis/0/name:",
		f + ":15: /apis/0/upstream:",
		f + ":16: /apis/0/route/base_path:",
		f + ":17: /apis/0/lifecycle:",
		f + ":21: /apis/1/upstream: credentials in the upstream URL are not allowed",
		f + ":22: /apis/1/route/base_path:",
		f + ":24: /apis/2/version: API orders version v1 is already declared at /apis/1",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("missing problem %q in:\n%s", w, out)
		}
	}
	if strings.Contains(out, "pw@") {
		t.Errorf("problem output echoes a credential:\n%s", out)
	}
}

func TestLoadTable(t *testing.T) {
	spec := "spec.yaml"
	base := "version: 1\nlisten: {tls: {dev_cert: true}}\n"
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want string // substring of the error; "" means valid
	}{
		{"minimal", "version: 1\nlisten: {tls: {dev_cert: true}}\n", nil, ""},
		{"no version", "listen: {tls: {dev_cert: true}}\n", nil, "t.yaml:1: /version: missing version"},
		{"wrong version", "version: 2\nlisten: {tls: {dev_cert: true}}\n", nil, "t.yaml:1: /version:"},
		{"empty file", "", nil, "config file is empty"},
		{"not a mapping", "- a\n- b\n", nil, "mapping"},
		{"yaml syntax", "version: 1\nlisten: {tls: \n", nil, "t.yaml:2: invalid YAML"},
		{"duplicate key", base + "limits: {max_body_bytes: 1}\nlimits: {max_body_bytes: 2}\n", nil, "t.yaml:4: /limits: duplicate key \"limits\" (first set at line 3)"},
		{"duplicate nested key", base + "limits: {max_body_bytes: 1, max_body_bytes: 2}\n", nil, "duplicate key"},
		{"alias", "version: 1\nlisten: &l {tls: {dev_cert: true}}\nadmin: *l\n", nil, "t.yaml:3: /admin: YAML anchors and aliases are not supported"},
		{"two documents", base + "---\nversion: 1\n", nil, "more than one YAML document"},
		{"no tls", "version: 1\n", nil, "t.yaml:1: /listen/tls: tls.cert and tls.key are required"},
		{"bad address", base + "admin: {listen: nope}\n", nil, "t.yaml:3: /admin/listen:"},
		{"plaintext without http", "version: 1\nlisten: {allow_plaintext: true, tls: {dev_cert: true}}\n", nil, "/listen/allow_plaintext: allow_plaintext needs listen.http"},
		{"plaintext warns", "version: 1\nlisten: {http: '127.0.0.1:8080', allow_plaintext: true, tls: {dev_cert: true}}\n", nil, ""},
		{"short admin token", base + "admin: {token: abc}\n", nil, "/admin/token: admin token is too short"},
		{"env secret not echoed", base + "admin: {listen: \"${ADDR}\"}\n", map[string]string{"ADDR": "s3cr3t-value"}, "value taken from ${ADDR} is invalid"},
		{"env literal dollar", base + "admin: {token: \"$${NOT_A_VAR}-long-enough-token\"}\n", nil, ""},
		{"bad env name", base + "admin: {token: \"${1BAD}\"}\n", nil, "invalid environment variable name"},
		{"unterminated env", base + "admin: {token: \"${OOPS\"}\n", nil, "unterminated ${"},
		{"bad cidr", "version: 1\nlisten: {tls: {dev_cert: true}, trusted_proxies: [10.0.0.0/33]}\n", nil, "/listen/trusted_proxies/0: invalid CIDR"},
		{"two stores", base + "store: {sqlite: a.db, postgres: 'postgres://x'}\n", nil, "/store:"},
		{"bad postgres", base + "store: {postgres: 'mysql://x'}\n", nil, "/store/postgres: expected a URL"},
		{"bad redis", base + "redis: 'http://x'\n", nil, "/redis: expected a URL"},
		{"api missing fields", base + "apis:\n  - {name: a}\n", nil, "t.yaml:4: /apis/0: missing properties"},
		{"api bad review date", base + "apis:\n  - {name: a, version: v1, spec: " + spec + ", upstream: 'http://x', route: {base_path: /a}, reviewed: {on: 2026-13-45}}\n", nil, "/apis/0/reviewed/on: not a date"},
		{"api base path dots", base + "apis:\n  - {name: a, version: v1, spec: " + spec + ", upstream: 'http://x', route: {base_path: /a/../b}}\n", nil, "/apis/0/route/base_path:"},
		{"api host with port", base + "apis:\n  - {name: a, version: v1, spec: " + spec + ", upstream: 'http://x', route: {host: 'a.com:443', base_path: /a}}\n", nil, "/apis/0/route/host:"},
		{"api upstream query", base + "apis:\n  - {name: a, version: v1, spec: " + spec + ", upstream: 'http://x/?a=1', route: {base_path: /a}}\n", nil, "/apis/0/upstream: upstream URL must not have a query"},
		{"unknown nested key", base + "apis:\n  - {name: a, version: v1, spec: " + spec + ", upstream: 'http://x', route: {base_path: /a, strip: true}}\n", nil, "/apis/0/route/strip: unknown key"},
		{"duration int seconds", base + "limits: {idle_timeout: 30}\n", nil, ""},
		{"store encryption file", base + "store: {sqlite: a.db, encryption: {key_file: k}}\n", nil, ""},
		{"store encryption env", base + "store: {postgres: 'postgres://x@h/db', encryption: {key_env: GATEHOUSE_DATA_KEY}}\n", nil, ""},
		{"store encryption both", base + "store: {encryption: {key_file: k, key_env: K}}\n", nil, "/store/encryption: set encryption.key_file or encryption.key_env, not both"},
		{"store encryption unknown key", base + "store: {encryption: {key: abc}}\n", nil, "/store/encryption/key: unknown key"},
		{"redaction valid", base + "redaction: {detectors: [email, pan, iban, ssn], fields: [notes, 'a.*.b'], headers: [X-Partner-Secret]}\n", nil, ""},
		{"redaction bad detector", base + "redaction: {detectors: [phone]}\n", nil, "/redaction/detectors/0: value must be one of"},
		{"redaction bad path", base + "redaction: {fields: ['a..b']}\n", nil, "/redaction/fields/0:"},
		{"redaction bad header", base + "redaction: {headers: ['X Bad']}\n", nil, "/redaction/headers/0:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadBytes("t.yaml", []byte(tc.yaml), env(tc.env))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want valid, got:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want error containing %q, got valid", tc.want)
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want Problems, got %T %v", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q in:\n%v", tc.want, err)
			}
			for k, v := range tc.env {
				if strings.Contains(err.Error(), v) {
					t.Errorf("error echoes the value of %s", k)
				}
			}
		})
	}
}

func TestFolderSingletonTwice(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), "version: 1\nlisten: {tls: {dev_cert: true}}\n")
	write(t, filepath.Join(dir, "b.yaml"), "version: 1\n\nlisten: {https: '127.0.0.1:1'}\n")
	_, err := Load(dir, env(nil))
	if err == nil || !strings.Contains(err.Error(), "b.yaml:3: /listen: listen is already set in "+filepath.Join(dir, "a.yaml")+":2") {
		t.Fatalf("got %v", err)
	}
}

func TestEmptyFolder(t *testing.T) {
	_, err := Load(t.TempDir(), env(nil))
	if err == nil || !strings.Contains(err.Error(), "no .yaml") {
		t.Fatalf("got %v", err)
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("got %v", err)
	}
}

func TestSchemaIsValidJSONSchema(t *testing.T) {
	if _, err := compiledSchema(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(Schema()), `"additionalProperties": false`) {
		t.Fatal("schema must be strict")
	}
}

func write(t *testing.T, name, s string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// FuzzLoadBytes: arbitrary bytes never panic the loader, and any failure
// is reported as Problems.
func FuzzLoadBytes(f *testing.F) {
	for _, p := range []string{"testdata/valid/gatehouse.yaml", "testdata/bad/many.yaml", "testdata/folder/00-base.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("version: 1\nlisten: {tls: {dev_cert: true}}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("version: ${X}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := LoadBytes("f.yaml", data, env(map[string]string{"X": "1"}))
		if err == nil {
			return
		}
		var ps Problems
		if !errors.As(err, &ps) || len(ps) == 0 {
			t.Fatalf("error is not Problems: %T %v", err, err)
		}
	})
}
