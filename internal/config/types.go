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
	APIs    []API      `yaml:"apis"`

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
	Spec        string   `yaml:"spec"`
	Upstream    string   `yaml:"upstream"`
	Route       APIRoute `yaml:"route"`

	// Line is where this API was declared, for later error messages.
	File string `yaml:"-"`
	Line int    `yaml:"-"`
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

// UnmarshalYAML accepts Go duration strings and plain integers (seconds).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	// A *yaml.TypeError lets the decoder go on with the other fields, so
	// every problem is still reported in one run.
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: expected a duration like 5s", n.Line)}}
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
