package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/config"
)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &ca{c, key}
}

func (c *ca) issue(t *testing.T, cn string, eku x509.ExtKeyUsage, notAfter time.Time) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter, ExtKeyUsage: []x509.ExtKeyUsage{eku}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return leaf
}

func (c *ca) file(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func req(certs ...*x509.Certificate) *http.Request {
	r, _ := http.NewRequest("GET", "https://gw/", nil)
	if len(certs) > 0 {
		r.TLS = &tls.ConnectionState{PeerCertificates: certs}
	}
	return r
}

func TestAuthenticate(t *testing.T) {
	acmeCA, globexCA, rogueCA := newCA(t, "acme"), newCA(t, "globex"), newCA(t, "rogue")
	in := time.Now().Add(time.Hour)
	acmeGood := acmeCA.issue(t, "acme-billing", x509.ExtKeyUsageClientAuth, in)
	acmeOther := acmeCA.issue(t, "acme-unmapped", x509.ExtKeyUsageClientAuth, in)
	acmeServer := acmeCA.issue(t, "acme-srv", x509.ExtKeyUsageServerAuth, in)
	acmeExpired := acmeCA.issue(t, "acme-old", x509.ExtKeyUsageClientAuth, time.Now().Add(-time.Hour))
	globexGood := globexCA.issue(t, "globex-app", x509.ExtKeyUsageClientAuth, in)
	rogue := rogueCA.issue(t, "acme-billing", x509.ExtKeyUsageClientAuth, in)
	pinnedOut := acmeCA.issue(t, "acme-pinned-out", x509.ExtKeyUsageClientAuth, in)

	partners := []config.Partner{
		{Name: "acme", MTLS: config.PartnerMTLS{ClientCA: acmeCA.file(t)}},
		{Name: "globex", MTLS: config.PartnerMTLS{ClientCA: globexCA.file(t), Pins: []string{SPKIPin(globexGood)}}},
	}
	consumers := []config.Consumer{
		{Name: "acme-billing", Partner: "acme", Scopes: []string{"orders:read"}, Certificates: []string{SPKIPin(acmeGood), SPKIPin(acmeExpired), SPKIPin(acmeServer)}},
		{Name: "globex-app", Partner: "globex", Certificates: []string{SPKIPin(globexGood), SPKIPin(pinnedOut)}},
	}
	a, err := New(partners, consumers)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		r        *http.Request
		consumer string
		reason   string
		noCred   bool
	}{
		{"no certificate", req(), "", "", true},
		{"acme consumer", req(acmeGood), "acme-billing", "", false},
		{"globex pinned consumer", req(globexGood), "globex-app", "", false},
		{"unknown CA with a familiar name", req(rogue), "", "unknown_ca", false},
		{"right CA, no consumer claims it", req(acmeOther), "", "unmapped_certificate", false},
		{"server-auth certificate", req(acmeServer), "", "unknown_ca", false},
		{"expired certificate", req(acmeExpired), "", "unknown_ca", false},
		// globex-app claims this pin, but it chains to acme, not globex.
		{"consumer of another partner", req(pinnedOut), "", "unmapped_certificate", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(tc.r)
			if tc.noCred {
				if !errors.Is(err, authn.ErrNoCredential) {
					t.Fatalf("want ErrNoCredential, got %v", err)
				}
				return
			}
			if tc.reason != "" {
				var f *authn.Failure
				if !errors.As(err, &f) || f.Reason != tc.reason {
					t.Fatalf("want failure %s, got %v", tc.reason, err)
				}
				return
			}
			if err != nil || p.Consumer != tc.consumer || p.Kind != authn.KindMTLS || len(p.CertSHA256) != 32 {
				t.Fatalf("got %+v, %v", p, err)
			}
		})
	}

	// A globex certificate that is not among the partner's pins.
	globexUnpinned := globexCA.issue(t, "globex-new", x509.ExtKeyUsageClientAuth, in)
	if _, err := a.Authenticate(req(globexUnpinned)); err == nil || err.(*authn.Failure).Reason != "pin_mismatch" {
		t.Fatalf("unpinned globex cert: %v", err)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	c := newCA(t, "x")
	if _, err := New([]config.Partner{{Name: "p", MTLS: config.PartnerMTLS{ClientCA: c.file(t), Pins: []string{"not-a-pin"}}}}, nil); err == nil {
		t.Fatal("bad pin accepted")
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(empty, []byte("nothing"), 0o600)
	if _, err := New([]config.Partner{{Name: "p", MTLS: config.PartnerMTLS{ClientCA: empty}}}, nil); err == nil {
		t.Fatal("empty CA accepted")
	}
	leaf := c.issue(t, "a", x509.ExtKeyUsageClientAuth, time.Now().Add(time.Hour))
	pin := SPKIPin(leaf)
	if _, err := New(nil, []config.Consumer{{Name: "a", Certificates: []string{pin}}, {Name: "b", Certificates: []string{pin}}}); err == nil {
		t.Fatal("one pin for two consumers accepted")
	}
}
