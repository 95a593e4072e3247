package redact

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Secrets used across tests (fakes with valid shapes and check digits).
const (
	tJWT  = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1LTQyIn0.c2lnbmF0dXJlLWJ5dGVzLWhlcmUtMTIzNDU2"
	tPAN  = "4111111111111111"
	tIBAN = "DE89370400440532013000"
	tSSN  = "123-45-6789"
	tMail = "jane.doe@example.com"
)

func TestNewRejects(t *testing.T) {
	for _, o := range []Options{
		{Detectors: []string{"phone"}},
		{Fields: []string{"a..b"}},
		{Headers: []string{""}},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) = nil error", o)
		}
	}
}

func TestDetectorsOffByDefault(t *testing.T) {
	r, err := New(Options{Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	in := "mail " + tMail + " card " + tPAN + " iban " + tIBAN + " ssn " + tSSN
	if got := r.Text(in); got != in {
		t.Errorf("PII detectors ran while not enabled: %q", got)
	}
	// The always-on rules still hold.
	if got := r.Text("t=" + tJWT); strings.Contains(got, tJWT) {
		t.Errorf("JWT survived: %q", got)
	}
}

func TestMarkKeyedAndStable(t *testing.T) {
	a, _ := New(Options{Key: []byte("key-a")})
	b, _ := New(Options{Key: []byte("key-b")})
	if a.Mark("x", "v") != a.Mark("x", "v") {
		t.Error("same key, same value: marks differ")
	}
	if a.Mark("x", "v") == b.Mark("x", "v") {
		t.Error("different keys give the same mark: the suffix is not keyed")
	}
	if a.Mark("x", "v") == a.Mark("x", "w") {
		t.Error("different values give the same mark")
	}
}

func TestJSONFieldPaths(t *testing.T) {
	r, err := New(Options{Key: testKey, Fields: []string{"notes", "customer.address.street", "items.*.serial"}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, in, gone, kept string
	}{
		{"bare name any depth", `{"a":{"notes":"private stuff"}}`, "private stuff", `"a"`},
		{"dotted path", `{"customer":{"address":{"street":"1 Main St","city":"Oslo"}}}`, "1 Main St", "Oslo"},
		{"dotted path elsewhere kept", `{"shop":{"address":{"street":"2 High St"}}}`, "", "2 High St"},
		{"wildcard through arrays", `{"items":[{"x":{"serial":"SN-1"}},{"y":{"serial":"SN-2"}}]}`, "SN-2", `"x"`},
		{"secret name whole subtree", `{"credentials":{"user":"u","pw":"p4ss"},"id":1}`, "p4ss", `"id":1`},
		{"order kept", `{"z":1,"a":2}`, "", `{"z":1,"a":2}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := r.JSON([]byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if c.gone != "" && bytes.Contains(out, []byte(c.gone)) {
				t.Errorf("%q survives in %s", c.gone, out)
			}
			if !bytes.Contains(out, []byte(c.kept)) {
				t.Errorf("%q lost from %s", c.kept, out)
			}
		})
	}
}

func TestJSONRejects(t *testing.T) {
	r := Default()
	deep := strings.Repeat("[", maxJSONDepth+2) + strings.Repeat("]", maxJSONDepth+2)
	for _, in := range []string{`{"a":`, `{"a":1}{`, deep, `{1:2}`} {
		if _, err := r.JSON([]byte(in)); err == nil {
			t.Errorf("JSON(%.40q) = nil error", in)
		}
	}
	if _, err := r.JSON(make([]byte, MaxJSONBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: err = %v, want ErrTooLarge", err)
	}
}

func TestHeaderAndURL(t *testing.T) {
	r, _ := New(Options{Key: testKey, Headers: []string{"X-Internal-Auth"}, Detectors: Detectors})
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tJWT)
	h.Set("X-Internal-Auth", "plain-shared-secret")
	h.Set("X-Api-Key", "k-123")
	h.Set("Accept", "application/json")
	h.Set("X-Note", "card "+tPAN)
	out := r.Header(h)
	dump := fmt.Sprint(out)
	for _, sec := range []string{tJWT, "plain-shared-secret", "k-123", tPAN} {
		if strings.Contains(dump, sec) {
			t.Errorf("%q survives: %s", sec, dump)
		}
	}
	if out.Get("Accept") != "application/json" || !strings.HasPrefix(out.Get("Authorization"), "Bearer [REDACTED:") {
		t.Errorf("benign or scheme lost: %s", dump)
	}
	if h.Get("X-Api-Key") != "k-123" {
		t.Error("Header modified its input")
	}
	u := r.URL("/u/" + url.PathEscape(tMail) + "?api_key=abc&page=2#frag")
	if strings.Contains(u, "abc") || strings.Contains(u, "jane") || !strings.Contains(u, "page=2") {
		t.Errorf("URL = %q", u)
	}
}

func TestHandlerRedactsEveryRecord(t *testing.T) {
	var buf bytes.Buffer
	h := NewHandler(slog.NewTextHandler(&buf, nil), nil)
	log := slog.New(h).With("token", "with-token-value", slog.String("api", "orders"))
	hdr := http.Header{"Cookie": {"sid=cookie-value-1"}}
	u, _ := url.Parse("https://x.example/p?access_token=url-token-1")
	log.Info("auth failed for "+tJWT,
		"err", fmt.Errorf("upstream said: Bearer %s", "opaqueTok3n99"),
		"headers", hdr,
		"url", u,
		slog.Group("req", slog.String("password", "grouped-pw"), slog.String("q", "id_token="+tJWT)),
		"body", []byte(`{"client_secret":"bytes-secret"}`),
		"plain", "nothing here", "n", 42)
	h.SetRedactor(Default()) // a reload swaps the engine for derived loggers too
	log.Warn("again", "card", tPAN)
	out := buf.String()
	for _, sec := range []string{tJWT, "with-token-value", "opaqueTok3n99", "cookie-value-1", "url-token-1", "grouped-pw", "bytes-secret"} {
		if strings.Contains(out, sec) {
			t.Errorf("%q reached the log:\n%s", sec, out)
		}
	}
	for _, keep := range []string{"api=orders", "plain=\"nothing here\"", "n=42", "auth failed for [REDACTED:jwt:"} {
		if !strings.Contains(out, keep) {
			t.Errorf("%q missing from the log:\n%s", keep, out)
		}
	}
	if !h.Enabled(context.Background(), slog.LevelInfo) {
		t.Error("Enabled lost")
	}
}

func TestTextNoSecretNoAlloc(t *testing.T) {
	r, _ := New(Options{Key: testKey, Detectors: Detectors})
	msg := "upstream 127.0.0.1:9000 answered 503 after 12.5ms for GET /orders/v2/items/42 (request 3f2b8c1e)"
	if n := testing.AllocsPerRun(100, func() { _ = r.Text(msg) }); n != 0 {
		t.Errorf("Text allocated %.0f times on a clean message", n)
	}
}

func FuzzText(f *testing.F) {
	for _, s := range []string{"", "eyJ.a.b", "ghk_", "a=b&password=c", `{"token":"x"}`, "Bearer abcDEF123",
		"4111 1111 1111 1111", "GB82 WEST 1234 5698 7654 32", "123-45-6789", "a@b.co", tJWT} {
		f.Add(s)
	}
	r, _ := New(Options{Key: testKey, Detectors: Detectors})
	f.Fuzz(func(t *testing.T, s string) {
		out := r.Text(s)
		if out == s && r.Contains(s) {
			t.Fatalf("Contains true but Text unchanged: %q", s)
		}
		_ = r.Query(s)
		_ = r.URL(s)
		_, _ = r.JSON([]byte(s))
		_ = r.HeaderValue("X-Note", s)
	})
}

// FuzzSecretNeverSurvives embeds a known secret between arbitrary text
// (separated by a space, as any log format does) and checks it never comes
// out verbatim, whatever surrounds it.
func FuzzSecretNeverSurvives(f *testing.F) {
	secrets := []string{tJWT, tPAN, "5500-0000-0000-0004", tIBAN, tSSN, tMail,
		"ghk_AbCdEfGhIjKlMnOp_0123456789abcdefghijABCDEFGHIJ0123456789abcdefghij"}
	f.Add("before", "after", uint8(0))
	f.Add("password=", "&x=1", uint8(1))
	f.Add(`{"a":"`, `"}`, uint8(2))
	f.Add("12", "2026", uint8(1))
	r, _ := New(Options{Key: testKey, Detectors: Detectors})
	f.Fuzz(func(t *testing.T, pre, post string, which uint8) {
		sec := secrets[int(which)%len(secrets)]
		in := pre + " " + sec + " " + post
		if out := r.Text(in); strings.Contains(out, sec) {
			t.Fatalf("secret survived:\nin  %q\nout %q", in, out)
		}
		if out, err := r.JSON([]byte(fmt.Sprintf(`{"v":%q}`, in))); err == nil && bytes.Contains(out, []byte(sec)) {
			t.Fatalf("secret survived JSON: %s", out)
		}
	})
}

func BenchmarkText(b *testing.B) {
	r, _ := New(Options{Key: testKey, Detectors: Detectors})
	cases := map[string]string{
		"clean-100B":     "upstream 127.0.0.1:9000 answered 503 after 12.5ms for GET /orders/v2/items/42 (request 3f2b8c1e)",
		"clean-1KB":      strings.Repeat("request handled: status=200 api=orders op=getOrder 12.5ms; ", 17),
		"jwt-100B":       "rejected token " + tJWT,
		"pii-200B":       "customer " + tMail + " paid with " + tPAN + " from " + tIBAN + " ssn " + tSSN,
		"query-secret":   "GET /orders?page=2&api_key=abcdef123456&sort=asc",
		"clean-defaults": "listen 127.0.0.1:8443 config reloaded in 3ms (apis=4, consumers=12)",
	}
	for name, s := range cases {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(s)))
			b.ReportAllocs()
			for b.Loop() {
				_ = r.Text(s)
			}
		})
	}
}

func BenchmarkHandler(b *testing.B) {
	log := slog.New(NewHandler(slog.NewTextHandler(discard{}, nil), nil))
	base := slog.New(slog.NewTextHandler(discard{}, nil))
	for _, c := range []struct {
		name string
		l    *slog.Logger
	}{{"bare", base}, {"redacting", log}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.l.Info("request", "request_id", "3f2b8c1e", "api", "orders", "status", 200, "path", "/orders/v2/items/42")
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
