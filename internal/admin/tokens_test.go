package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/metrics"
	"github.com/gatehouse/gatehouse/internal/revoke"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/sqlite"
)

func TestRevokeToken(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	list := revoke.New(db, revoke.Options{})
	s := New(Options{Metrics: metrics.New("test"), Store: db, Revoke: list.Revoke})
	s.SetToken("admin-token-0123456789")
	srv := httptest.NewServer(s)
	defer srv.Close()
	post := func(jti, body, token string) int {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/tokens/"+jti+"/revoke", strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if c := post("tok-1", `{"until":"`+until+`"}`, ""); c != 401 {
		t.Fatalf("without admin token: %d", c)
	}
	for _, bad := range []string{`{}`, `{"until":"2001-01-01T00:00:00Z"}`, `{"until":"` + time.Now().Add(90*24*time.Hour).UTC().Format(time.RFC3339) + `"}`, `{"until":"` + until + `","extra":1}`, `nope`} {
		if c := post("tok-1", bad, "admin-token-0123456789"); c != 400 {
			t.Errorf("body %s: %d, want 400", bad, c)
		}
	}
	if c := post("tok-1", `{"until":"`+until+`","reason":"leaked"}`, "admin-token-0123456789"); c != 200 {
		t.Fatalf("revoke: %d", c)
	}
	if ok, kind := list.Revoked(&authn.Principal{TokenID: "tok-1"}); !ok || kind != store.RevokeToken {
		t.Fatalf("token not revoked in the list: %v %s", ok, kind)
	}
	if ok, _ := db.IsRevoked(ctx, store.RevokeToken, "tok-1", time.Now()); !ok {
		t.Fatal("token revocation not persisted")
	}
}
