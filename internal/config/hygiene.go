package config

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Data hygiene defaults: bounded enough that a hostile body cannot make the
// gateway hold much, generous enough for ordinary APIs.
const (
	DefaultValidateMaxDepth     = 32
	DefaultValidateMaxBodyBytes = 1 << 20
	DefaultResponseMaxBytes     = 4 << 20
)

// Validation modes and response filter modes.
const (
	ModeEnforce    = "enforce"
	ModeReport     = "report"
	ModeOff        = "off"
	FilterDocument = "documented"
	OversizePass   = "pass"
	OversizeFail   = "fail"
)

// Validation is an API's request validation. It is written either as a
// mode (`validate: enforce`) or as an object with the mode and limits.
type Validation struct {
	// Mode is enforce, report or off (the default: validation is opted in
	// per API, so a spec written loosely cannot break a live API on upgrade).
	Mode string `yaml:"mode"`
	// Strict refuses undeclared properties in every request object, not
	// only where the schema says additionalProperties: false.
	Strict bool `yaml:"strict"`
	// MaxDepth bounds JSON nesting; MaxBodyBytes the body validated.
	MaxDepth     int   `yaml:"max_depth"`
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// Operations override the mode and strictness per operationId.
	Operations map[string]ValidationOverride `yaml:"operations"`
}

// ValidationOverride is one operation's validation setting.
type ValidationOverride struct {
	Mode   string `yaml:"mode"`
	Strict *bool  `yaml:"strict"`
}

// UnmarshalYAML accepts the short form `validate: enforce` as well as the
// object form.
func (v *Validation) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		v.Mode = n.Value
		return nil
	}
	type plain Validation
	return n.Decode((*plain)(v))
}

// For returns the mode and strictness of one operation.
func (v Validation) For(operationID string) (mode string, strict bool) {
	mode, strict = v.Mode, v.Strict
	if o, ok := v.Operations[operationID]; ok {
		if o.Mode != "" {
			mode = o.Mode
		}
		if o.Strict != nil {
			strict = *o.Strict
		}
	}
	return mode, strict
}

// ResponsePolicy is the response hygiene every API gets.
type ResponsePolicy struct {
	// DenyFields are JSON field names (removed wherever they appear) or
	// /pointer/paths (* matches any key or array index).
	DenyFields []string `yaml:"deny_fields"`
	// StripHeaders are response headers removed; a trailing * matches a
	// prefix (X-Internal-*).
	StripHeaders []string `yaml:"strip_headers"`
	// MaxBytes is the largest response body buffered for filtering.
	MaxBytes int64 `yaml:"max_bytes"`
}

// APIResponse is one API's response filtering.
type APIResponse struct {
	// Filter is documented, report or off. The default is documented for
	// confidential and restricted APIs, off otherwise.
	Filter       string   `yaml:"filter"`
	DenyFields   []string `yaml:"deny_fields"`
	StripHeaders []string `yaml:"strip_headers"`
	MaxBytes     int64    `yaml:"max_bytes"`
	// Oversize says what happens to a JSON response above MaxBytes, which
	// cannot be filtered: pass (unfiltered) or fail (502). The default is
	// fail for restricted APIs, pass otherwise.
	Oversize   string                      `yaml:"oversize"`
	Operations map[string]ResponseOverride `yaml:"operations"`
}

// ResponseOverride is one operation's filter mode.
type ResponseOverride struct {
	Filter string `yaml:"filter"`
}

// FilterFor returns the filter mode of one operation.
func (r APIResponse) FilterFor(operationID string) string {
	if o, ok := r.Operations[operationID]; ok && o.Filter != "" {
		return o.Filter
	}
	return r.Filter
}

func applyHygieneDefaults(c *Config) {
	if c.Response.MaxBytes == 0 {
		c.Response.MaxBytes = DefaultResponseMaxBytes
	}
	for i := range c.APIs {
		a := &c.APIs[i]
		v := &a.Validate
		if v.Mode == "" {
			v.Mode = ModeOff
		}
		if v.MaxDepth == 0 {
			v.MaxDepth = DefaultValidateMaxDepth
		}
		if v.MaxBodyBytes == 0 {
			v.MaxBodyBytes = DefaultValidateMaxBodyBytes
		}
		if c.Limits.MaxBodyBytes > 0 && v.MaxBodyBytes > c.Limits.MaxBodyBytes {
			v.MaxBodyBytes = c.Limits.MaxBodyBytes
		}
		r := &a.Response
		sensitive := a.Sensitivity == "confidential" || a.Sensitivity == "restricted"
		if r.Filter == "" {
			// Classified data leaves only as documented: a backend that
			// starts returning password_hash does not leak it.
			r.Filter = ModeOff
			if sensitive {
				r.Filter = FilterDocument
			}
		}
		if r.MaxBytes == 0 {
			r.MaxBytes = c.Response.MaxBytes
		}
		if r.Oversize == "" {
			r.Oversize = OversizePass
			if a.Sensitivity == "restricted" {
				r.Oversize = OversizeFail
			}
		}
	}
}

func validateHygiene(c *Config, rep *Reporter) {
	checkHeaderPatterns(rep, "/response/strip_headers", c.Response.StripHeaders)
	checkDenyFields(rep, "/response/deny_fields", c.Response.DenyFields)
	for i, a := range c.APIs {
		ptr := fmt.Sprintf("/apis/%d", i)
		switch a.Validate.Mode {
		case ModeEnforce, ModeReport, ModeOff:
		default:
			rep.Errorf(ptr+"/validate", "unknown validation mode %q (enforce, report or off)", a.Validate.Mode)
		}
		checkHeaderPatterns(rep, ptr+"/response/strip_headers", a.Response.StripHeaders)
		checkDenyFields(rep, ptr+"/response/deny_fields", a.Response.DenyFields)
		if a.Sensitivity == "restricted" {
			if a.Response.Filter == ModeOff {
				rep.Warnf(ptr+"/response/filter", "API %s %s is restricted but its response filtering is off: undocumented fields the backend returns will leave the gateway", a.Name, a.Version)
			}
			for op, o := range a.Response.Operations {
				if o.Filter == ModeOff {
					rep.Warnf(ptr+"/response/operations/"+op, "operation %s of restricted API %s has response filtering off", op, a.Name)
				}
			}
		}
	}
}

func checkHeaderPatterns(rep *Reporter, ptr string, list []string) {
	for i, h := range list {
		name := strings.TrimSuffix(h, "*")
		if name == "" || strings.ContainsAny(name, " :*\t\r\n") {
			rep.Errorf(fmt.Sprintf("%s/%d", ptr, i), "%q is not a header name or Prefix-* pattern", h)
		}
	}
}

func checkDenyFields(rep *Reporter, ptr string, list []string) {
	for i, f := range list {
		if strings.HasPrefix(f, "/") && strings.Contains(f, "//") || f == "/" {
			rep.Errorf(fmt.Sprintf("%s/%d", ptr, i), "%q is not a field name or /json/pointer path", f)
		}
	}
}
