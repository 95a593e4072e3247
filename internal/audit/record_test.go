package audit

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestQueryNamesOnly(t *testing.T) {
	cases := []struct{ path, query, want string }{
		{"/a", "", "/a"},
		{"/a", "token=s3cret&x=1", "/a?token&x"},
		{"/a", "flag&&=v&e=", "/a?flag&e"}, // an empty name is dropped, a bare flag kept
		{"/a", "email=alice%40example.com", "/a?email"},
		{"/a", "a=1;b=2", "/a?a"}, // ';' is not a separator: its value never leaks
	}
	for _, c := range cases {
		if got := QueryNamesOnly(c.path, c.query); got != c.want {
			t.Errorf("QueryNamesOnly(%q, %q) = %q, want %q", c.path, c.query, got, c.want)
		}
	}
}

func FuzzQueryNamesOnly(f *testing.F) {
	f.Add("/p", "a=secret&b=c")
	f.Add("/p", "=x&&y=")
	f.Fuzz(func(t *testing.T, path, q string) {
		got := QueryNamesOnly(path, q)
		// No value ever survives: a value is whatever follows a '=', and
		// no '=' is left in the redacted query.
		if strings.Contains(strings.TrimPrefix(got, path), "=") {
			t.Fatalf("'=' in the redacted query %q", got)
		}
	})
}

// Hostile strings (quotes, newlines, invalid UTF-8) must neither break the
// line nor forge a field.
func FuzzRecordEncoding(f *testing.F) {
	f.Add("ua\n\"consumer\":\"root\"", "/p\x00\xff", "\u2028")
	f.Fuzz(func(t *testing.T, ua, path, consumer string) {
		r := &Record{Time: time.Unix(1, 0), UserAgent: ua, Path: path, Consumer: consumer, Status: 200}
		b := append([]byte{'{'}, r.appendBody(nil)...)
		if strings.ContainsAny(string(b), "\n\r") {
			t.Fatalf("newline in encoded record %q", b)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("invalid JSON %q: %v", b, err)
		}
		if m["type"] != "request" || m["status"] != float64(200) {
			t.Fatalf("fields forged: %v", m)
		}
		if strings.ToValidUTF8(ua, "\ufffd") == ua && m["user_agent"] != ua {
			t.Fatalf("user_agent %q round-tripped as %q", ua, m["user_agent"])
		}
	})
}

// Verify reads files an attacker may have written: any line must give a
// break or pass, never a panic.
func FuzzVerifyLine(f *testing.F) {
	_, v := testKeys(f, "fuzz")
	f.Add([]byte(`{"seq":1,"prev":"` + strings.Repeat("0", 64) + `","type":"request"}`))
	f.Add([]byte(`{"checkpoint":"gatehouse audit checkpoint v1\n1\nAAAA\nx\n\n— fuzz abc\n"}`))
	f.Add([]byte(`{"seq":18446744073709551615}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var rep Report
		var seq uint64
		var head [32]byte
		_ = checkLine(&rep, line, &seq, &head, v)
	})
}
