// Package mtls authenticates partners' applications by client certificate.
// The TLS listener only requests a certificate; verification happens here,
// per partner, so one partner's CA can never vouch for another's consumers.
package mtls

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/config"
)

// Scheme is the challenge scheme reported for certificate failures.
const Scheme = "Mutual-TLS"

// partnerTrust is one partner's client-certificate trust.
type partnerTrust struct {
	name string
	pool *x509.CertPool
	pins map[string]bool // base64 SPKI SHA-256; empty: any certificate of the CA
}

// Authenticator verifies client certificates against partner CAs and maps
// each certificate, by its SPKI pin, to one consumer.
type Authenticator struct {
	partners []partnerTrust
	byPin    map[string]*config.Consumer
	now      func() time.Time
	// Pool holds every partner CA, sent to clients as the acceptable
	// issuers hint in the TLS CertificateRequest.
	Pool *x509.CertPool
}

// New builds the authenticator from the partners with mtls.client_ca and the
// consumers' certificate pins.
func New(partners []config.Partner, consumers []config.Consumer) (*Authenticator, error) {
	a := &Authenticator{byPin: map[string]*config.Consumer{}, now: time.Now, Pool: x509.NewCertPool()}
	for _, p := range partners {
		if p.MTLS.ClientCA == "" {
			continue
		}
		pemBytes, err := os.ReadFile(p.MTLS.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("partner %s: read client CA: %w", p.Name, err)
		}
		pool := x509.NewCertPool()
		n := 0
		for rest := pemBytes; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("partner %s: client CA: %w", p.Name, err)
			}
			pool.AddCert(c)
			a.Pool.AddCert(c)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("partner %s: client CA file %s holds no certificate", p.Name, p.MTLS.ClientCA)
		}
		pt := partnerTrust{name: p.Name, pool: pool, pins: map[string]bool{}}
		for _, pin := range p.MTLS.Pins {
			if err := checkPin(pin); err != nil {
				return nil, fmt.Errorf("partner %s: pin %q: %w", p.Name, pin, err)
			}
			pt.pins[pin] = true
		}
		a.partners = append(a.partners, pt)
	}
	for i := range consumers {
		c := &consumers[i]
		for _, pin := range c.Certificates {
			if err := checkPin(pin); err != nil {
				return nil, fmt.Errorf("consumer %s: certificate pin %q: %w", c.Name, pin, err)
			}
			if prev, dup := a.byPin[pin]; dup {
				return nil, fmt.Errorf("certificate pin %s is claimed by consumers %s and %s", pin, prev.Name, c.Name)
			}
			a.byPin[pin] = c
		}
	}
	return a, nil
}

func checkPin(pin string) error {
	b, err := base64.StdEncoding.DecodeString(pin)
	if err != nil || len(b) != sha256.Size {
		return errors.New("want the base64 SHA-256 of the certificate's SubjectPublicKeyInfo")
	}
	return nil
}

// SPKIPin returns the base64 SHA-256 of a certificate's public key info,
// the value consumers' certificates and partners' pins list.
func SPKIPin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Thumbprint returns the RFC 8705 x5t#S256 of a certificate: base64url
// (unpadded) SHA-256 of its DER encoding.
func Thumbprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Enabled reports whether any partner trusts client certificates.
func (a *Authenticator) Enabled() bool { return len(a.partners) > 0 }

// Scheme implements authn.Authenticator.
func (a *Authenticator) Scheme() string { return Scheme }

// Verified is a client certificate that chains to a partner's CA and
// passes its pins.
type Verified struct {
	Partner string
	Leaf    *x509.Certificate
	Pin     string
}

// Verify checks the connection's client certificate. It returns
// authn.ErrNoCredential when none was presented.
func (a *Authenticator) Verify(r *http.Request) (*Verified, error) {
	chain := authn.TLSInfo(r)
	if len(chain) == 0 {
		return nil, authn.ErrNoCredential
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	pin := SPKIPin(leaf)
	for _, p := range a.partners {
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots: p.pool, Intermediates: inter, CurrentTime: a.now(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		if err != nil {
			continue
		}
		if len(p.pins) > 0 && !p.pins[pin] {
			return nil, authn.Fail(Scheme, "pin_mismatch")
		}
		return &Verified{Partner: p.name, Leaf: leaf, Pin: pin}, nil
	}
	return nil, authn.Fail(Scheme, "unknown_ca")
}

// Authenticate maps a verified certificate to its consumer.
func (a *Authenticator) Authenticate(r *http.Request) (*authn.Principal, error) {
	v, err := a.Verify(r)
	if err != nil {
		return nil, err
	}
	c, ok := a.byPin[v.Pin]
	if !ok || c.Partner != v.Partner {
		// A certificate of the right CA that no consumer claims, or one a
		// consumer of another partner claims: not an identity.
		return nil, authn.Fail(Scheme, "unmapped_certificate")
	}
	sum := sha256.Sum256(v.Leaf.Raw)
	return &authn.Principal{
		Kind: authn.KindMTLS, Consumer: c.Name, Partner: c.Partner,
		CredentialID: "spki:" + v.Pin, Subject: v.Leaf.Subject.CommonName,
		Scopes: c.Scopes, Roles: c.Roles, Claims: c.Claims,
		ExpiresAt: v.Leaf.NotAfter, CertSHA256: sum[:],
	}, nil
}
