package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Identity defaults.
const (
	DefaultKeyMaxTTL        = 90 * 24 * time.Hour
	DefaultRevocationPoll   = time.Second
	DefaultSkew             = 60 * time.Second
	DefaultMaxLifetime      = 24 * time.Hour
	DefaultJWKSRefresh      = 5 * time.Minute
	DefaultIntrospectTO     = 3 * time.Second
	DefaultIntrospectMaxTTL = 5 * time.Minute
	DefaultInactiveTTL      = 10 * time.Second
	DefaultTokenTTL         = 15 * time.Minute
	MaxTokenTTL             = time.Hour
	DefaultRotateEvery      = 7 * 24 * time.Hour
	DefaultOverlap          = 24 * time.Hour
	MinPepperBytes          = 32
)

func applyIdentityDefaults(c *Config, rep *Reporter) {
	id := &c.Identity
	setDur(&id.KeyMaxTTL, DefaultKeyMaxTTL)
	setDur(&id.RevocationPoll, DefaultRevocationPoll)
	id.PepperFile = resolvePath(rep.Src, "/identity/pepper_file", id.PepperFile)
	for i := range c.Issuers {
		is := &c.Issuers[i]
		setDur(&is.Skew, DefaultSkew)
		setDur(&is.MaxLifetime, DefaultMaxLifetime)
		setDur(&is.Refresh, DefaultJWKSRefresh)
		is.CAFile = resolvePath(rep.Src, fmt.Sprintf("/issuers/%d/ca_file", i), is.CAFile)
	}
	for i := range c.Introspection {
		in := &c.Introspection[i]
		setDur(&in.Timeout, DefaultIntrospectTO)
		setDur(&in.CacheMaxTTL, DefaultIntrospectMaxTTL)
		setDur(&in.InactiveTTL, DefaultInactiveTTL)
		in.CAFile = resolvePath(rep.Src, fmt.Sprintf("/introspection/%d/ca_file", i), in.CAFile)
	}
	te := &c.TokenEndpoint
	setDur(&te.TTL, DefaultTokenTTL)
	setDur(&te.RotateEvery, DefaultRotateEvery)
	setDur(&te.Overlap, DefaultOverlap)
	if te.Algorithm == "" {
		te.Algorithm = "ES256"
	}
	if te.Audience == "" {
		te.Audience = te.Issuer
	}
	if te.KeyDir == "" {
		te.KeyDir = filepath.Join(c.Dir, "data", "keys")
	} else {
		te.KeyDir = resolvePath(rep.Src, "/token_endpoint/key_dir", te.KeyDir)
	}
	for i := range c.Partners {
		p := &c.Partners[i]
		p.MTLS.ClientCA = resolvePath(rep.Src, fmt.Sprintf("/partners/%d/mtls/client_ca", i), p.MTLS.ClientCA)
	}
	for i := range c.Consumers {
		cs := &c.Consumers[i]
		cs.JWKSFile = resolvePath(rep.Src, fmt.Sprintf("/consumers/%d/jwks_file", i), cs.JWKSFile)
	}
}

func validateIdentity(c *Config, rep *Reporter) {
	id := c.Identity
	if id.Pepper != "" && id.PepperFile != "" {
		rep.Errorf("/identity/pepper", "set identity.pepper or identity.pepper_file, not both")
	}
	if id.Pepper != "" && len(id.Pepper) < MinPepperBytes {
		rep.Errorf("/identity/pepper", "pepper is too short: use at least %d random bytes", MinPepperBytes)
	}

	issuers := map[string]bool{}
	for i, is := range c.Issuers {
		ptr := fmt.Sprintf("/issuers/%d", i)
		if issuers[is.Name] {
			rep.Errorf(ptr+"/name", "issuer %q is declared twice", is.Name)
		}
		issuers[is.Name] = true
		if (is.Discovery == "") == (is.JWKSURL == "") {
			rep.Errorf(ptr, "set exactly one of discovery and jwks_url")
		}
		for _, u := range []string{is.Discovery, is.JWKSURL} {
			if strings.HasPrefix(u, "http://") && !isLoopbackURL(u) {
				rep.Errorf(ptr, "keys must be fetched over https (http is accepted for loopback only)")
			}
		}
	}
	intros := map[string]bool{}
	for i, in := range c.Introspection {
		ptr := fmt.Sprintf("/introspection/%d", i)
		if intros[in.Name] {
			rep.Errorf(ptr+"/name", "introspection endpoint %q is declared twice", in.Name)
		}
		intros[in.Name] = true
		if strings.HasPrefix(in.URL, "http://") && !isLoopbackURL(in.URL) {
			rep.Errorf(ptr+"/url", "introspection must use https (http is accepted for loopback only)")
		}
	}
	te := c.TokenEndpoint
	if te.Enabled {
		if te.Issuer == "" {
			rep.Errorf("/token_endpoint", "token_endpoint.issuer is required (the gateway's public URL)")
		}
		if te.TTL.D() > MaxTokenTTL {
			rep.Errorf("/token_endpoint/ttl", "issued tokens must be short-lived: at most %s", MaxTokenTTL)
		}
		if te.Overlap.D() < te.TTL.D() {
			rep.Errorf("/token_endpoint/overlap", "overlap must be at least the token ttl, or tokens die with their key")
		}
	}
	partners := map[string]bool{}
	mtlsPartners := 0
	for i, p := range c.Partners {
		if partners[p.Name] {
			rep.Errorf(fmt.Sprintf("/partners/%d/name", i), "partner %q is declared twice", p.Name)
		}
		partners[p.Name] = true
		if p.MTLS.ClientCA != "" {
			mtlsPartners++
		}
	}
	consumers := map[string]bool{}
	for i, cs := range c.Consumers {
		ptr := fmt.Sprintf("/consumers/%d", i)
		if consumers[cs.Name] {
			rep.Errorf(ptr+"/name", "consumer %q is declared twice", cs.Name)
		}
		consumers[cs.Name] = true
		if cs.Partner != "" && !partners[cs.Partner] {
			rep.Errorf(ptr+"/partner", "unknown partner %q", cs.Partner)
		}
	}

	needPepper := te.Enabled
	for i, a := range c.APIs {
		ptr := fmt.Sprintf("/apis/%d", i)
		for j, m := range a.Auth {
			mp := fmt.Sprintf("%s/auth/%d", ptr, j)
			kind, name, _ := strings.Cut(m, ":")
			switch kind {
			case "apikey":
				needPepper = true
			case "jwt":
				if !issuers[name] {
					rep.Errorf(mp, "unknown issuer %q (declare it under issuers)", name)
				}
			case "introspect":
				if !intros[name] {
					rep.Errorf(mp, "unknown introspection endpoint %q", name)
				}
			case "token":
				if !te.Enabled {
					rep.Errorf(mp, "auth method token needs token_endpoint.enabled")
				}
			case "mtls":
				if mtlsPartners == 0 {
					rep.Errorf(mp, "auth method mtls needs a partner with mtls.client_ca")
				}
			}
		}
		if a.RequireMTLS && mtlsPartners == 0 {
			rep.Errorf(ptr+"/require_mtls", "require_mtls needs a partner with mtls.client_ca")
		}
		for j, p := range a.AllowPartners {
			if !partners[p] {
				rep.Errorf(fmt.Sprintf("%s/allow_partners/%d", ptr, j), "unknown partner %q", p)
			}
		}
		ops := map[string]bool{}
		for j, p := range a.Policies {
			pp := fmt.Sprintf("%s/policies/%d", ptr, j)
			if ops[p.Operation] {
				rep.Errorf(pp+"/operation", "operation %q already has a policy", p.Operation)
			}
			ops[p.Operation] = true
			if p.Public && (len(p.Scopes) > 0 || len(p.Roles) > 0 || p.When != "") {
				rep.Errorf(pp+"/public", "a public policy cannot also require scopes, roles or a condition")
			}
			if !p.Public && len(a.Auth) == 0 {
				rep.Errorf(pp, "policy needs an authenticated caller but the API lists no auth methods")
			}
		}
		if len(a.Policies) == 0 && a.Lifecycle != "retired" {
			rep.Warnf(ptr, "API %s %s has no policies: every operation answers 403 (deny by default)", a.Name, a.Version)
		}
	}
	if needPepper && id.Pepper == "" && id.PepperFile == "" {
		rep.Errorf("/identity", "API keys and client secrets need identity.pepper or identity.pepper_file")
	}
}

func isLoopbackURL(u string) bool {
	rest := strings.TrimPrefix(u, "http://")
	host := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		host = rest[:i]
	}
	if h, _, ok := strings.Cut(host, "]:"); ok {
		host = strings.TrimPrefix(h, "[")
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host, "[") {
		host = host[:i]
	}
	return isLoopback(strings.Trim(host, "[]"))
}
