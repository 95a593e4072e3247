package gateway

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/validate"
)

func plainPlan() *responsePlan {
	return &responsePlan{api: "a", op: "o", strip: newHeaderMatcher([]string{"X-Internal-*"}, []string{"X-Debug"}),
		maxBytes: config.DefaultResponseMaxBytes, log: slog.New(slog.DiscardHandler)}
}

func upstreamResponse(status int, authenticated bool, body string) *http.Response {
	req, _ := http.NewRequest("GET", "http://upstream/x", nil)
	req.Header.Set("X-Request-Id", "rid-1234567890")
	if authenticated {
		req.Header["X-Gatehouse-Consumer"] = []string{"acme-billing"}
	}
	h := http.Header{}
	for _, k := range []string{"Server", "X-Powered-By", "X-Aspnet-Version", "X-Aspnetmvc-Version", "X-Internal-Shard", "X-Debug", "X-Public", "Cache-Control"} {
		h.Set(k, "v")
	}
	h.Set("Content-Type", "application/json")
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)), Request: req, ContentLength: int64(len(body))}
}

// TestHeaderScrubbing: fingerprinting and internal headers never leave;
// an ordinary header does; responses to authenticated calls are no-store.
func TestHeaderScrubbing(t *testing.T) {
	for _, authenticated := range []bool{false, true} {
		resp := upstreamResponse(200, authenticated, `{}`)
		if err := plainPlan().modify(resp); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"Server", "X-Powered-By", "X-Aspnet-Version", "X-Aspnetmvc-Version", "X-Internal-Shard", "X-Debug"} {
			if resp.Header.Get(k) != "" {
				t.Errorf("authenticated=%v: %s not removed", authenticated, k)
			}
		}
		if resp.Header.Get("X-Public") != "v" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("authenticated=%v: headers %v", authenticated, resp.Header)
		}
		want := "v" // the upstream's own caching stays for anonymous calls
		if authenticated {
			want = "no-store"
		}
		if cc := resp.Header.Get("Cache-Control"); cc != want {
			t.Errorf("authenticated=%v: Cache-Control %q, want %q", authenticated, cc, want)
		}
	}
}

// TestServerErrorReplaced: a 5xx body goes to the log hook, the client
// gets a problem with the request ID; a 4xx body is the upstream's own.
func TestServerErrorReplaced(t *testing.T) {
	var logged []byte
	prev := LogUpstreamBody
	LogUpstreamBody = func(b []byte) string { logged = append([]byte(nil), b...); return "redacted" }
	defer func() { LogUpstreamBody = prev }()
	var logs bytes.Buffer
	p := plainPlan()
	p.log = slog.New(slog.NewTextHandler(&logs, nil))
	trace := "java.lang.NullPointerException at com.corp.db.UserDao(UserDao.java:42) " + strings.Repeat("x", 5000)
	resp := upstreamResponse(503, false, trace)
	resp.Header.Set("Retry-After", "7")
	if err := p.modify(resp); err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || bytes.Contains(body, []byte("java")) || !bytes.Contains(body, []byte("rid-1234567890")) {
		t.Errorf("replaced 5xx: %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Content-Type") != "application/problem+json" || resp.Header.Get("Retry-After") != "7" ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("headers %v", resp.Header)
	}
	if len(logged) != maxLoggedErrorBody || !bytes.HasPrefix(logged, []byte("java.lang")) {
		t.Errorf("log hook got %d bytes, want the first %d", len(logged), maxLoggedErrorBody)
	}
	if !strings.Contains(logs.String(), "redacted") || strings.Contains(logs.String(), "UserDao") {
		t.Errorf("log did not go through the hook: %s", logs.String())
	}
	// Benign twin: a 404 body passes untouched.
	resp = upstreamResponse(404, false, `{"error":"no such order"}`)
	if err := plainPlan().modify(resp); err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(resp.Body); string(body) != `{"error":"no such order"}` {
		t.Errorf("4xx body changed: %s", body)
	}
}

// TestUnreadableEncoding: a JSON body in an encoding the filter cannot
// read is refused on a fail-closed API and passed whole otherwise.
func TestUnreadableEncoding(t *testing.T) {
	for _, fail := range []bool{true, false} {
		p := plainPlan()
		p.filter = validateFilterForTest(t)
		p.oversizeFail = fail
		resp := upstreamResponse(200, false, "\x1b\x2a\x00brotli-bytes")
		resp.Header.Set("Content-Encoding", "br")
		if err := p.modify(resp); err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if fail && resp.StatusCode != 502 {
			t.Errorf("fail closed: status %d", resp.StatusCode)
		}
		if !fail && (resp.StatusCode != 200 || string(body) != "\x1b\x2a\x00brotli-bytes") {
			t.Errorf("pass: %d %q", resp.StatusCode, body)
		}
	}
}

func validateFilterForTest(t *testing.T) *validate.ResponseFilter {
	t.Helper()
	f := validate.NewResponseFilter(nil, "GET", "/x", validate.Enforce, validate.NewDenyList([]string{"secret"}))
	if f == nil {
		t.Fatal("no filter")
	}
	return f
}
