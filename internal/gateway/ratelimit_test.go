package gateway

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/authn"
)

// TestLimitKey: keys name the limit, the request's values for its keys,
// fall back to the client address for an anonymous caller, and stay short
// whatever a token claims.
func TestLimitKey(t *testing.T) {
	ip := netip.MustParsePrefix("2001:db8:1:2::/64")
	acme := &authn.Principal{Consumer: "acme-billing", Partner: "acme", CredentialID: "k1"}
	solo := &authn.Principal{Consumer: "solo"}
	long := &authn.Principal{Consumer: strings.Repeat("x", 5000)}
	cases := []struct {
		name string
		per  uint8
		p    *authn.Principal
		want string
	}{
		{"consumer", byConsumer, acme, "P:c=acme-billing|"},
		{"partner and operation", byPartner | byOperation, acme, "P:p=acme|o=getOrder|"},
		{"credential", byCredential, acme, "P:k=k1|"},
		{"ip", byIP, acme, "P:ip:2001:db8:1:2::/64"},
		{"api", 0, acme, "P:"},
		{"anonymous by consumer counts by IP", byConsumer, nil, "P:ip:2001:db8:1:2::/64"},
		{"no partner counts by IP", byPartner, solo, "P:ip:2001:db8:1:2::/64"},
		{"consumer and ip", byConsumer | byIP, solo, "P:c=solo|ip:2001:db8:1:2::/64"},
	}
	for _, tc := range cases {
		l := opLimit{per: tc.per, prefix: "P:"}
		if got := l.key(nil, tc.p, ip, "getOrder"); got != tc.want {
			t.Errorf("%s: key %q, want %q", tc.name, got, tc.want)
		}
	}
	l := opLimit{per: byConsumer, prefix: "P:"}
	k := l.key(nil, long, ip, "getOrder")
	if len(k) > 2+maxKeyPart || !strings.HasPrefix(k, "P:") || k == l.key(nil, &authn.Principal{Consumer: strings.Repeat("x", 4999)}, ip, "getOrder") {
		t.Errorf("long consumer: key %q (%d bytes): want a short, distinct digest", k, len(k))
	}
	if got := l.key(nil, nil, netip.Prefix{}, ""); got != "P:ip:invalid" {
		t.Errorf("unknown client address: key %q, want the shared invalid-IP budget", got)
	}
}
