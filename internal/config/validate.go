package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Defaults, chosen so that an empty limits block is safe to face the internet.
const (
	DefaultHTTPS                   = "127.0.0.1:8443"
	DefaultAdmin                   = "127.0.0.1:8444"
	DefaultMaxHeaderBytes          = 32 << 10
	DefaultMaxBodyBytes            = 10 << 20
	DefaultReadHeaderTimeout       = 5 * time.Second
	DefaultReadTimeout             = 60 * time.Second
	DefaultWriteTimeout            = 120 * time.Second
	DefaultIdleTimeout             = 90 * time.Second
	DefaultUpstreamConnectTimeout  = 5 * time.Second
	DefaultUpstreamResponseTimeout = 30 * time.Second
	DefaultUpstreamMaxIdlePerHost  = 256
)

func applyDefaults(c *Config, rep *Reporter) {
	if c.Listen.HTTPS == "" {
		c.Listen.HTTPS = DefaultHTTPS
	}
	if c.Admin.Listen == "" {
		c.Admin.Listen = DefaultAdmin
	}
	if c.Listen.TLS.MinVersion == "" {
		c.Listen.TLS.MinVersion = "1.2"
	}
	l := &c.Limits
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxBodyBytes == 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	setDur(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDur(&l.ReadTimeout, DefaultReadTimeout)
	setDur(&l.WriteTimeout, DefaultWriteTimeout)
	setDur(&l.IdleTimeout, DefaultIdleTimeout)
	setDur(&l.UpstreamConnectTimeout, DefaultUpstreamConnectTimeout)
	setDur(&l.UpstreamResponseTimeout, DefaultUpstreamResponseTimeout)
	if l.UpstreamMaxIdlePerHost == 0 {
		l.UpstreamMaxIdlePerHost = DefaultUpstreamMaxIdlePerHost
	}

	// Relative paths are relative to the file that wrote them, so a config
	// folder can be moved as a whole.
	if c.Listen.TLS.DevCert {
		if c.Listen.TLS.Cert == "" {
			c.Listen.TLS.Cert = filepath.Join(c.Dir, "certs", "dev-gateway.crt")
		}
		if c.Listen.TLS.Key == "" {
			c.Listen.TLS.Key = filepath.Join(c.Dir, "certs", "dev-gateway.key")
		}
	}
	c.Listen.TLS.Cert = resolvePath(rep.Src, "/listen/tls/cert", c.Listen.TLS.Cert)
	c.Listen.TLS.Key = resolvePath(rep.Src, "/listen/tls/key", c.Listen.TLS.Key)
	c.Admin.TokenFile = resolvePath(rep.Src, "/admin/token_file", c.Admin.TokenFile)
	if c.Store.SQLite == "" && c.Store.Postgres == "" {
		c.Store.SQLite = filepath.Join(c.Dir, "data", "gatehouse.db")
	} else {
		c.Store.SQLite = resolvePath(rep.Src, "/store/sqlite", c.Store.SQLite)
	}
	c.Store.Encryption.KeyFile = resolvePath(rep.Src, "/store/encryption/key_file", c.Store.Encryption.KeyFile)
	c.Redaction.KeyFile = resolvePath(rep.Src, "/redaction/key_file", c.Redaction.KeyFile)
	applyIdentityDefaults(c, rep)
	applyRateLimitDefaults(c)
	applyAuditDefaults(c, rep)
	for i := range c.APIs {
		a := &c.APIs[i]
		ptr := fmt.Sprintf("/apis/%d", i)
		pos := rep.Src.At(ptr)
		a.File, a.Line = pos.File, pos.Line
		a.Spec = resolvePath(rep.Src, ptr+"/spec", a.Spec)
		if a.Lifecycle == "" {
			a.Lifecycle = "active"
		}
		if a.Exposure == "" {
			a.Exposure = "internal"
		}
		if a.Sensitivity == "" {
			// Unclassified data is treated as confidential until someone
			// says otherwise: the safe side of a missing label.
			a.Sensitivity = "confidential"
		}
		a.Route.Host = strings.ToLower(a.Route.Host)
	}
	applyHygieneDefaults(c)
}

func setDur(d *Duration, def time.Duration) {
	if *d == 0 {
		*d = Duration(def)
	}
}

func resolvePath(src Sources, ptr, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	pos, ok := src[ptr]
	if !ok || pos.File == "" {
		return p
	}
	return filepath.Join(filepath.Dir(pos.File), p)
}

// validate checks what the schema cannot express. It reports every problem.
func validate(c *Config, rep *Reporter) {
	validateAudit(c, rep)
	checkAddr(rep, "/listen/https", c.Listen.HTTPS)
	if c.Listen.HTTP != "" {
		checkAddr(rep, "/listen/http", c.Listen.HTTP)
		if c.Listen.HTTP == c.Listen.HTTPS && !strings.HasSuffix(c.Listen.HTTP, ":0") {
			rep.Errorf("/listen/http", "http and https cannot share the address %s", c.Listen.HTTP)
		}
	}
	if c.Listen.AllowPlaintext {
		if c.Listen.HTTP == "" {
			rep.Errorf("/listen/allow_plaintext", "allow_plaintext needs listen.http to be set")
		} else {
			rep.Warnf("/listen/allow_plaintext", "APIs are served over plain HTTP on %s: credentials and data cross the network unencrypted", c.Listen.HTTP)
		}
	}
	checkAddr(rep, "/admin/listen", c.Admin.Listen)
	if !strings.HasSuffix(c.Admin.Listen, ":0") && (c.Admin.Listen == c.Listen.HTTPS || (c.Listen.HTTP != "" && c.Admin.Listen == c.Listen.HTTP)) {
		rep.Errorf("/admin/listen", "the admin listener needs its own address")
	}
	if host, _, err := net.SplitHostPort(c.Admin.Listen); err == nil && !isLoopback(host) {
		rep.Warnf("/admin/listen", "the admin listener (plain HTTP) is reachable beyond loopback on %s; put it behind TLS or a private network", c.Admin.Listen)
	}
	if c.Admin.Token != "" && c.Admin.TokenFile != "" {
		rep.Errorf("/admin/token", "set admin.token or admin.token_file, not both")
	}
	if c.Admin.Token != "" && len(c.Admin.Token) < 16 {
		rep.Errorf("/admin/token", "admin token is too short: use at least 16 random characters")
	}

	t := c.Listen.TLS
	switch {
	case (t.Cert == "") != (t.Key == ""):
		rep.Errorf("/listen/tls", "set both tls.cert and tls.key")
	case t.Cert == "" && !t.DevCert:
		rep.Errorf("/listen/tls", "tls.cert and tls.key are required (or dev_cert: true for local development only)")
	}
	if t.DevCert {
		rep.Warnf("/listen/tls/dev_cert", "dev_cert is on: the gateway uses a self-signed certificate; never use this in production")
	}

	checkPrefixes(rep, "/listen/trusted_proxies", c.Listen.TrustedProxies)
	checkPrefixes(rep, "/ip_deny", c.IPDeny)
	for i, p := range c.Partners {
		checkPrefixes(rep, fmt.Sprintf("/partners/%d/networks", i), p.Networks)
	}
	for i, a := range c.APIs {
		checkPrefixes(rep, fmt.Sprintf("/apis/%d/ip_allow", i), a.IPAllow)
		checkPrefixes(rep, fmt.Sprintf("/apis/%d/ip_deny", i), a.IPDeny)
	}

	if c.Store.Postgres != "" {
		u, err := url.Parse(c.Store.Postgres)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			rep.Errorf("/store/postgres", "expected a URL like postgres://user@host:5432/db")
		}
	}
	if c.Store.SQLite != "" && c.Store.Postgres != "" {
		rep.Errorf("/store", "set store.sqlite or store.postgres, not both")
	}
	if c.Store.Encryption.KeyFile != "" && c.Store.Encryption.KeyEnv != "" {
		rep.Errorf("/store/encryption", "set encryption.key_file or encryption.key_env, not both")
	}
	if !c.Store.Encryption.Enabled() {
		// Allowed (a laptop trial should not need key management), but
		// said out loud: production stores hold contact details and IPs.
		rep.Warnf("/store", "store.encryption is not set: credential metadata, last-use IPs and revocation reasons are stored in plaintext; create a key with gatehouse keys gen-data-key")
	}
	if c.Redis != "" {
		u, err := url.Parse(c.Redis)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			rep.Errorf("/redis", "expected a URL like redis://host:6379/0")
		}
	}

	seen := map[string]int{}
	for i := range c.APIs {
		validateAPI(rep, i, &c.APIs[i], seen)
		validateLifecycle(rep, c, i, time.Now())
	}
	validateIdentity(c, rep)
	validateRateLimits(c, rep)
	validateHygiene(c, rep)
}

func validateAPI(rep *Reporter, i int, a *API, seen map[string]int) {
	ptr := fmt.Sprintf("/apis/%d", i)
	key := a.Name + "@" + a.Version
	if j, dup := seen[key]; dup {
		rep.Errorf(ptr+"/version", "API %s version %s is already declared at /apis/%d", a.Name, a.Version, j)
	} else {
		seen[key] = i
	}
	u, err := url.Parse(a.Upstream)
	switch {
	case err != nil:
		rep.Errorf(ptr+"/upstream", "invalid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		rep.Errorf(ptr+"/upstream", "upstream must be an http:// or https:// URL")
	case u.Host == "":
		rep.Errorf(ptr+"/upstream", "upstream URL has no host")
	case u.User != nil:
		// A password here would end up in logs and the registry.
		rep.Errorf(ptr+"/upstream", "credentials in the upstream URL are not allowed")
	case u.RawQuery != "" || u.Fragment != "":
		rep.Errorf(ptr+"/upstream", "upstream URL must not have a query or fragment")
	}
	bp := a.Route.BasePath
	if bp != "/" && (strings.HasSuffix(bp, "/") || strings.Contains(bp, "//") || strings.ContainsAny(bp, "{}%;\\?#") ||
		strings.Contains(bp+"/", "/./") || strings.Contains(bp+"/", "/../")) {
		rep.Errorf(ptr+"/route/base_path", "base_path must be a canonical path like /orders/v1 (no trailing slash, //, dot segments, escapes or templates)")
	}
	if h := a.Route.Host; h != "" {
		if strings.ContainsAny(h, "/ @") || strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
			rep.Errorf(ptr+"/route/host", "host must be a bare host name without port, e.g. api.example.com")
		}
	}
	if a.Reviewed.On != "" {
		if _, err := time.Parse("2006-01-02", a.Reviewed.On); err != nil {
			rep.Errorf(ptr+"/reviewed/on", "not a date (YYYY-MM-DD)")
		}
	}
	if a.Owner.Team == "" && !(a.Lifecycle == "active" && (a.Exposure == "public" || a.Exposure == "partner")) {
		rep.Warnf(ptr+"/owner", "API %s %s has no owner team: every API needs someone who answers for it", a.Name, a.Version)
	}
}

func checkAddr(rep *Reporter, ptr, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		rep.Errorf(ptr, "expected host:port, e.g. 127.0.0.1:8443")
		return
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		rep.Errorf(ptr, "port must be 0-65535")
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func checkPrefixes(rep *Reporter, ptr string, list []string) {
	for i, cidr := range list {
		if _, err := ParsePrefix(cidr); err != nil {
			rep.Errorf(fmt.Sprintf("%s/%d", ptr, i), "%v", err)
		}
	}
}

// ParsePrefixes parses a validated CIDR list.
func ParsePrefixes(list []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, err := ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// ParsePrefix accepts a CIDR or a single address (as /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid IP address %q", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}
