// Package config loads, validates and watches Gatehouse's declarative
// configuration: one YAML file or a folder of them, checked against the JSON
// Schema in schema.json, with every problem reported as file:line: path: message.
package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// CurrentVersion is the only config format version this build understands.
const CurrentVersion = 1

// Config is the whole declarative configuration after loading and defaults.
// Relative file paths in it have been resolved against the directory of the
// file that named them.
type Config struct {
	Version int        `yaml:"version"`
	Listen  Listen     `yaml:"listen"`
	Admin   Admin      `yaml:"admin"`
	Limits  Limits     `yaml:"limits"`
	Paths   PathPolicy `yaml:"paths"`
	Store   Store      `yaml:"store"`
	Redis   string     `yaml:"redis"`
	// Redaction tunes what logs and audit records hide beyond the
	// always-on rules (see internal/redact).
	Redaction Redaction `yaml:"redaction"`
	// IPDeny refuses clients in these CIDRs on every API.
	IPDeny []string `yaml:"ip_deny"`

	Identity      Identity        `yaml:"identity"`
	Issuers       []Issuer        `yaml:"issuers"`
	Introspection []Introspection `yaml:"introspection"`
	TokenEndpoint TokenEndpoint   `yaml:"token_endpoint"`
	Partners      []Partner       `yaml:"partners"`
	Consumers     []Consumer      `yaml:"consumers"`

	APIs []API `yaml:"apis"`

	Discovery Discovery `yaml:"discovery"`

	Governance Governance `yaml:"governance"`
	Detection  Detection  `yaml:"detection"`

	// Response is the response hygiene applied to every API (hygiene.go).
	Response ResponsePolicy `yaml:"response"`

	Audit Audit `yaml:"audit"`

	// Files are the files this config was loaded from, in load order.
	Files []string `yaml:"-"`
	// Dir is the data directory default base (the first file's directory).
	Dir string `yaml:"-"`
}

// Listen describes the data-plane listeners.
type Listen struct {
	// HTTPS is the TLS listener address, e.g. 127.0.0.1:8443.
	HTTPS string `yaml:"https"`
	// HTTP is an optional plain-HTTP address. It only redirects to HTTPS
	// unless AllowPlaintext is set.
	HTTP           string `yaml:"http"`
	AllowPlaintext bool   `yaml:"allow_plaintext"`
	TLS            TLS    `yaml:"tls"`
	// TrustedProxies are CIDRs whose X-Forwarded-For is believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// TLS configures the HTTPS listener's certificate and protocol floor.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// DevCert generates a self-signed certificate for 127.0.0.1/localhost
	// into Cert/Key when they do not exist. Meant for the quickstart only.
	DevCert bool `yaml:"dev_cert"`
}

// Admin configures the admin listener.
type Admin struct {
	Listen string `yaml:"listen"`
	// Token is the bootstrap admin token (use ${ENV} substitution), or
	// TokenFile names a file holding it. One of them is needed for any admin
	// endpoint beyond health and metrics.
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
}

// Limits bounds what one client can make the gateway hold.
type Limits struct {
	MaxHeaderBytes          int      `yaml:"max_header_bytes"`
	MaxBodyBytes            int64    `yaml:"max_body_bytes"`
	ReadHeaderTimeout       Duration `yaml:"read_header_timeout"`
	ReadTimeout             Duration `yaml:"read_timeout"`
	WriteTimeout            Duration `yaml:"write_timeout"`
	IdleTimeout             Duration `yaml:"idle_timeout"`
	UpstreamConnectTimeout  Duration `yaml:"upstream_connect_timeout"`
	UpstreamResponseTimeout Duration `yaml:"upstream_response_timeout"`
	UpstreamMaxIdlePerHost  int      `yaml:"upstream_max_idle_per_host"`
	// Rate-limit engine settings (the limits themselves are per API).
	RateLimitSettings `yaml:",inline"`
}

// PathPolicy tunes path normalisation.
type PathPolicy struct {
	// AllowEncodedSlash lets %2F and %5C through (kept encoded). Off by
	// default: backends disagree on whether they are separators.
	AllowEncodedSlash bool `yaml:"allow_encoded_slash"`
}

// Store selects the persistence backend. Exactly one may be set; none means
// SQLite at data/gatehouse.db beside the config.
type Store struct {
	SQLite   string `yaml:"sqlite"`
	Postgres string `yaml:"postgres"`
	// Encryption seals sensitive columns at rest (see internal/seal).
	Encryption StoreEncryption `yaml:"encryption"`
}

// StoreEncryption names where the data key ring comes from: a file (mode
// 0600) or an environment variable, holding base64 keys of 32 bytes, the
// active key first, older keys after it until rotate-data-key has run.
type StoreEncryption struct {
	KeyFile string `yaml:"key_file"`
	KeyEnv  string `yaml:"key_env"`
}

// Enabled reports whether a data key source is configured.
func (e StoreEncryption) Enabled() bool { return e.KeyFile != "" || e.KeyEnv != "" }

// Redaction configures the redaction engine beyond its always-on rules
// (credential headers, secret-named parameters and fields, JWTs, API keys).
type Redaction struct {
	// Fields are JSON field paths: a bare name matches at any depth, a
	// dotted path from the root, "*" any one name.
	Fields []string `yaml:"fields"`
	// Headers are extra header names whose values are always redacted.
	Headers []string `yaml:"headers"`
	// Detectors enables personal-data detectors: email, pan, iban, ssn.
	Detectors []string `yaml:"detectors"`
	// KeyFile holds the key (at least 32 bytes) of the hash suffixes in
	// redaction marks, so they correlate across restarts and replicas.
	// Without it the key derives from the store data key, or is random
	// per process when there is none.
	KeyFile string `yaml:"key_file"`
}

// API is one registered API version.
type API struct {
	Name        string   `yaml:"name"`
	Version     string   `yaml:"version"`
	Description string   `yaml:"description"`
	Owner       Owner    `yaml:"owner"`
	Exposure    string   `yaml:"exposure"`
	Sensitivity string   `yaml:"sensitivity"`
	Lifecycle   string   `yaml:"lifecycle"`
	Reviewed    Reviewed `yaml:"reviewed"`
	// Registry metadata (see lifecycle.go).
	UseCase     string      `yaml:"use_case"`
	Criticality string      `yaml:"criticality"`
	DataFlows   []DataFlow  `yaml:"data_flows"`
	Deprecation Deprecation `yaml:"deprecation"`
	Spec        string      `yaml:"spec"`
	Upstream    string      `yaml:"upstream"`
	Route       APIRoute    `yaml:"route"`

	// Auth lists the ways a caller may authenticate, any one of which
	// suffices: apikey, jwt:<issuer>, introspect:<name>, token (Gatehouse's
	// own token endpoint), mtls.
	Auth []string `yaml:"auth"`
	// RequireMTLS demands a verified partner client certificate in
	// addition to whatever Auth accepted.
	RequireMTLS bool `yaml:"require_mtls"`
	// BoundTokens demands RFC 8705 certificate-bound tokens: a JWT's
	// cnf.x5t#S256 must match the presented client certificate.
	BoundTokens bool `yaml:"bound_tokens"`
	// AllowPartners restricts callers to consumers of these partners
	// (consumers without a partner are refused when set).
	AllowPartners []string `yaml:"allow_partners"`
	// Policies grant access per operation. An operation no policy names is
	// unreachable (403): deny by default.
	Policies []Policy `yaml:"policies"`

	// IPAllow, when set, admits only clients in these CIDRs; IPDeny refuses
	// clients in these CIDRs (checked first).
	IPAllow []string `yaml:"ip_allow"`
	IPDeny  []string `yaml:"ip_deny"`
	// MaxInFlight caps concurrent requests to the upstream (0: no cap), so
	// one caller's burst cannot take the backend down; excess gets 503.
	MaxInFlight int `yaml:"max_in_flight"`
	// WAF inspects requests with the OWASP Core Rule Set (nil: off).
	WAF *WAF `yaml:"waf"`
	// RateLimits apply to the API's requests (see ratelimit.go).
	RateLimits []RateLimit `yaml:"limits"`
	// ObserveUnregistered forwards paths under the base path that the spec
	// does not declare to the upstream, for discovery to record. Only for
	// an API whose one policy is a non-public "*" (see gateway/passthrough.go).
	ObserveUnregistered bool `yaml:"observe_unregistered"`

	// Validate checks requests against the spec; Response filters what
	// leaves (hygiene.go).
	Validate Validation  `yaml:"validate"`
	Response APIResponse `yaml:"response"`

	// Line is where this API was declared, for later error messages.
	File string `yaml:"-"`
	Line int    `yaml:"-"`
}

// Policy grants access to one operation (or "*": every operation of the
// API without a policy of its own).
type Policy struct {
	Operation string `yaml:"operation"`
	// Public lets unauthenticated callers in. It cannot be combined with
	// scopes, roles or conditions.
	Public bool     `yaml:"public"`
	Scopes []string `yaml:"scopes"`
	Roles  []string `yaml:"roles"`
	// When is a CEL condition over principal and request that must hold.
	When string `yaml:"when"`
}

// Identity holds the gateway-wide credential settings.
type Identity struct {
	// Pepper (via ${ENV}) or PepperFile is the server secret API keys and
	// client secrets are hashed with (HMAC-SHA-256). At least 32 bytes.
	Pepper     string `yaml:"pepper"`
	PepperFile string `yaml:"pepper_file"`
	// KeyMaxTTL is the longest lifetime an issued API key may have.
	KeyMaxTTL Duration `yaml:"key_max_ttl"`
	// RevocationPoll is how often the store is polled for revocations made
	// by other replicas when Redis is not configured (or as its fallback).
	RevocationPoll Duration `yaml:"revocation_poll"`
}

// Issuer is a trusted JWT issuer.
type Issuer struct {
	Name string `yaml:"name"`
	// Issuer is the exact iss claim expected.
	Issuer string `yaml:"issuer"`
	// Discovery is the OIDC discovery URL; JWKSURL names the key set
	// directly. One of them is required.
	Discovery string `yaml:"discovery"`
	JWKSURL   string `yaml:"jwks_url"`
	// CAFile is a PEM bundle trusted for the IdP's TLS instead of the
	// system roots (private PKI, tests).
	CAFile         string   `yaml:"ca_file"`
	Audiences      []string `yaml:"audiences"`
	Algorithms     []string `yaml:"algorithms"`
	Skew           Duration `yaml:"skew"`
	MaxLifetime    Duration `yaml:"max_lifetime"`
	RequiredClaims []string `yaml:"required_claims"`
	// Claim mapping. Defaults: consumer from azp then client_id, scopes from
	// scope then scp, no partner or roles claim.
	ConsumerClaim string `yaml:"consumer_claim"`
	PartnerClaim  string `yaml:"partner_claim"`
	ScopesClaim   string `yaml:"scopes_claim"`
	RolesClaim    string `yaml:"roles_claim"`
	// Refresh is the background JWKS refresh interval.
	Refresh Duration `yaml:"refresh"`
}

// Introspection is an RFC 7662 token introspection endpoint for opaque tokens.
type Introspection struct {
	Name         string   `yaml:"name"`
	URL          string   `yaml:"url"`
	ClientID     string   `yaml:"client_id"`
	ClientSecret string   `yaml:"client_secret"`
	CAFile       string   `yaml:"ca_file"`
	Timeout      Duration `yaml:"timeout"`
	// CacheMaxTTL caps how long an active result is cached (never past the
	// token's exp); InactiveTTL is how long an inactive result is cached.
	CacheMaxTTL   Duration `yaml:"cache_max_ttl"`
	InactiveTTL   Duration `yaml:"inactive_ttl"`
	ConsumerClaim string   `yaml:"consumer_claim"`
	PartnerClaim  string   `yaml:"partner_claim"`
	RolesClaim    string   `yaml:"roles_claim"`
}

// TokenEndpoint configures Gatehouse's own OAuth 2.0 client-credentials
// token endpoint (POST /oauth2/token, keys at /.well-known/jwks.json).
type TokenEndpoint struct {
	Enabled bool `yaml:"enabled"`
	// Issuer is the iss of issued tokens, normally the gateway's public URL.
	Issuer string `yaml:"issuer"`
	// Audience is the aud of issued tokens (default: the issuer).
	Audience string `yaml:"audience"`
	// TTL of issued tokens (default 15m, at most 1h).
	TTL Duration `yaml:"ttl"`
	// Algorithm is ES256 (default) or EdDSA.
	Algorithm string `yaml:"algorithm"`
	// KeyDir holds the signing keys (created 0700 if missing).
	KeyDir string `yaml:"key_dir"`
	// RotateEvery is a signing key's active life; the previous key keeps
	// verifying for Overlap after rotation.
	RotateEvery Duration `yaml:"rotate_every"`
	Overlap     Duration `yaml:"overlap"`
}

// Partner is an organisation whose consumers call the APIs.
type Partner struct {
	Name string `yaml:"name"`
	// Networks, when set, are the only client addresses this partner's
	// consumers may call from (403 otherwise).
	Networks []string `yaml:"networks"`
	// MTLS: client certificates of this partner's consumers chain to
	// ClientCA; Pins optionally restricts them to given SPKI SHA-256 hashes.
	MTLS PartnerMTLS `yaml:"mtls"`
	// SecurityContact and Contract are governance metadata: who hears of
	// an incident, and what the partner agreed to.
	SecurityContact SecurityContact `yaml:"security_contact"`
	Contract        Contract        `yaml:"contract"`
	// Quota caps the requests of all the partner's consumers together.
	Quota *Quota `yaml:"quota"`
}

// PartnerMTLS is a partner's client-certificate trust.
type PartnerMTLS struct {
	ClientCA string   `yaml:"client_ca"`
	Pins     []string `yaml:"pins"`
}

// Consumer is an application that calls APIs, with its own credentials.
type Consumer struct {
	Name    string   `yaml:"name"`
	Partner string   `yaml:"partner"`
	Scopes  []string `yaml:"scopes"`
	Roles   []string `yaml:"roles"`
	// Certificates are SPKI SHA-256 pins (base64) of client certificates
	// that authenticate as this consumer over mTLS.
	Certificates []string `yaml:"certificates"`
	// JWKSFile holds the public keys this consumer signs private_key_jwt
	// client assertions with at the token endpoint.
	JWKSFile string `yaml:"jwks_file"`
	// Claims are fixed claims object-level rules can use (e.g. customers).
	Claims map[string]any `yaml:"claims"`
	// Quota caps the consumer's requests.
	Quota *Quota `yaml:"quota"`
}

// Owner says who answers for an API.
type Owner struct {
	Team    string `yaml:"team"`
	Contact string `yaml:"contact"`
}

// Reviewed records the last security review.
type Reviewed struct {
	On string `yaml:"on"`
	By string `yaml:"by"`
}

// APIRoute says where an API is exposed on the gateway.
type APIRoute struct {
	Host     string `yaml:"host"`
	BasePath string `yaml:"base_path"`
	// KeepBasePath forwards the full path; by default the base path is
	// stripped, so the upstream sees the paths its own spec declares.
	KeepBasePath bool `yaml:"keep_base_path"`
}

// Duration is a time.Duration written as "5s", "250ms" or "1m".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML accepts Go duration strings, a whole number of days ("90d")
// and plain integers (seconds).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	// A *yaml.TypeError lets the decoder go on with the other fields, so
	// every problem is still reported in one run.
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: expected a duration like 5s", n.Line)}}
	}
	if days, ok := strings.CutSuffix(n.Value, "d"); ok {
		if d64, err := strconv.Atoi(days); err == nil && d64 >= 0 && d64 < 100000 {
			*d = Duration(time.Duration(d64) * 24 * time.Hour)
			return nil
		}
	}
	if secs, err := strconv.Atoi(n.Value); err == nil {
		*d = Duration(time.Duration(secs) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: invalid duration (write e.g. 5s, 250ms, 1m)", n.Line)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration in Go syntax.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// WAF is an API's web application firewall policy (see internal/waf).
// Operations may override it: their entries in Operations replace the
// fields they set and add to the exclusions.
type WAF struct {
	WAFPolicy  `yaml:",inline"`
	Operations map[string]WAFPolicy `yaml:"operations"`
}

// WAFPolicy is one WAF setting; zero fields take the default (or, in an
// operation override, the API's value).
type WAFPolicy struct {
	Mode             string   `yaml:"mode"` // off | detect | block
	Paranoia         int      `yaml:"paranoia"`
	InboundThreshold int      `yaml:"inbound_threshold"`
	ExcludeRules     []int    `yaml:"exclude_rules"`
	ExcludeTags      []string `yaml:"exclude_tags"`
	BodyLimit        int64    `yaml:"body_limit"`
}
