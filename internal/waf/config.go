package waf

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Mode says what the WAF does with a request the Core Rule Set flags.
type Mode string

const (
	// ModeOff skips the WAF entirely: no rule set is loaded and Inspect
	// returns a zero Verdict.
	ModeOff Mode = "off"
	// ModeDetect evaluates every rule and reports matches and the anomaly
	// score, but never blocks (Coraza's SecRuleEngine DetectionOnly).
	ModeDetect Mode = "detect"
	// ModeBlock refuses requests whose inbound anomaly score reaches the
	// threshold (Coraza's SecRuleEngine On).
	ModeBlock Mode = "block"
)

// Defaults applied by New to zero-valued fields.
const (
	DefaultParanoia         = 1
	DefaultInboundThreshold = 5
	DefaultBodyLimit        = 128 << 10

	// maxBodyLimit is Coraza's own hard ceiling for SecRequestBodyLimit.
	maxBodyLimit = 1 << 30
)

// Config is one WAF policy. Equal configs (after defaults, with exclusions
// compared as sets) share one instance through Cache.
type Config struct {
	Mode Mode
	// Paranoia is the CRS paranoia level, 1 (few false positives) to 4
	// (many). It sets both the blocking and the detection level. 0 means 1.
	Paranoia int
	// InboundThreshold is the anomaly score at which a request is refused.
	// One critical match scores 5. 0 means 5.
	InboundThreshold int
	// ExcludeRuleIDs removes CRS rules by ID (a tuning tool for false
	// positives). Unknown IDs and CRS bookkeeping rules are rejected so a
	// typo cannot silently leave a rule on, and an exclusion cannot switch
	// the anomaly evaluation itself off (use ModeDetect or ModeOff for that).
	ExcludeRuleIDs []int
	// ExcludeTags removes every CRS rule carrying one of these tags, e.g.
	// "attack-sqli" or "language-php". Matching is exact and case-sensitive.
	ExcludeTags []string
	// BodyLimit is how many bytes of a body are inspected. Inspect looks at
	// the first BodyLimit bytes of a longer one; the gateway refuses such a
	// body in block mode (a payload padded past the limit would otherwise
	// pass unseen) and passes it in detect mode. 0 means 128 KiB.
	BodyLimit int64

	// regression sets the CRS variables the CRS's own regression suite
	// assumes (argument limits, UTF-8 validation). Tests only; see
	// RegressionProfile.
	regression bool
}

// RegressionProfile returns c with the CRS settings the Core Rule Set's own
// regression tests (go-ftw) expect, the same ones Coraza's test harness sets:
// argument count and length limits, file size limits and UTF-8 validation.
// They are CRS options that are off by default; the gateway turns them on
// only in its CRS regression test.
func RegressionProfile(c Config) Config {
	c.regression = true
	return c
}

// Rule IDs Gatehouse adds to the CRS: the IDs crs-setup.conf.example uses for
// the same settings (9000xx, commented out there) and the 2000xx IDs
// coraza.conf-recommended uses for body processing, so a reader who knows
// either file recognises them.
const (
	ruleSetParanoia    = 900000
	ruleSetThreshold   = 900110
	ruleSetMethods     = 900200
	ruleSetRegression  = 900005
	ruleXMLProcessor   = 200000
	ruleJSONProcessor  = 200001
	ruleJSONSuffix     = 200006
	ruleAllowJSONTypes = 200007

	// RuleBodyParseFailure refuses (400) a JSON, XML or form body its parser
	// rejects. Reported in Verdict.RuleIDs; may be excluded.
	RuleBodyParseFailure = 200002
	// RuleMultipartStrict refuses (400) a multipart body that fails strict
	// validation. Reported in Verdict.RuleIDs; may be excluded.
	RuleMultipartStrict = 200003
)

// tagPattern bounds exclusion tags to the characters CRS tags use. The value is
// spliced into a SecLang directive, so anything looser (quotes, spaces,
// newlines) would let a config file inject directives of its own.
var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_./:-]+$`)

// normalize applies defaults, validates, and returns a copy with the
// exclusion lists sorted and de-duplicated. Every problem is reported at once.
func (c Config) normalize() (Config, error) {
	var errs []error
	n := c
	switch n.Mode {
	case ModeOff:
		// Nothing else matters when the WAF is off; one shared instance.
		return Config{Mode: ModeOff}, nil
	case ModeDetect, ModeBlock:
	case "":
		errs = append(errs, fieldErr("mode", -1, `missing: set "off", "detect" or "block"`))
	default:
		errs = append(errs, fieldErr("mode", -1, `%q is not one of "off", "detect", "block"`, string(n.Mode)))
	}
	if n.Paranoia == 0 {
		n.Paranoia = DefaultParanoia
	}
	if n.Paranoia < 1 || n.Paranoia > 4 {
		errs = append(errs, fieldErr("paranoia", -1, "%d is outside 1-4", c.Paranoia))
	}
	if n.InboundThreshold == 0 {
		n.InboundThreshold = DefaultInboundThreshold
	}
	if n.InboundThreshold < 1 {
		errs = append(errs, fieldErr("inbound_threshold", -1, "%d must be at least 1", c.InboundThreshold))
	}
	if n.BodyLimit == 0 {
		n.BodyLimit = DefaultBodyLimit
	}
	if n.BodyLimit < 1 || n.BodyLimit > maxBodyLimit {
		errs = append(errs, fieldErr("body_limit", -1, "%d bytes is outside 1 B - 1 GiB", c.BodyLimit))
	}

	idx, err := crsIndex()
	if err != nil {
		return Config{}, err
	}
	n.ExcludeRuleIDs = slices.Compact(slices.Sorted(slices.Values(c.ExcludeRuleIDs)))
	for _, id := range n.ExcludeRuleIDs {
		i := slices.Index(c.ExcludeRuleIDs, id)
		switch {
		case isBookkeepingRule(id):
			errs = append(errs, fieldErr("exclude_rule_ids", i, "%d is a CRS setup or anomaly-evaluation rule; excluding it would disable the WAF silently (use mode: detect or off instead)", id))
		case idx.skips[id]:
			errs = append(errs, fieldErr("exclude_rule_ids", i, "%d is a CRS paranoia-level switch, not a check (set paranoia instead)", id))
		case id == RuleBodyParseFailure, id == RuleMultipartStrict:
		case !idx.ids[id]:
			errs = append(errs, fieldErr("exclude_rule_ids", i, "%d is not a rule of CRS %s", id, idx.version))
		}
	}
	n.ExcludeTags = slices.Compact(slices.Sorted(slices.Values(c.ExcludeTags)))
	for _, tag := range n.ExcludeTags {
		i := slices.Index(c.ExcludeTags, tag)
		switch {
		case !tagPattern.MatchString(tag):
			errs = append(errs, fieldErr("exclude_tags", i, "%q may contain only letters, digits and _ . / : -", tag))
		case idx.protectedTags[tag]:
			errs = append(errs, fieldErr("exclude_tags", i, "%q would remove the CRS setup or anomaly evaluation and disable the WAF silently (use mode: detect or off instead)", tag))
		case !idx.tags[tag]:
			errs = append(errs, fieldErr("exclude_tags", i, "%q is not a tag of CRS %s", tag, idx.version))
		}
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("waf config: %w", errors.Join(errs...))
	}
	return n, nil
}

// FieldError is one problem with one Config field, so the config loader can
// point at the offending line. Index is the position in an exclusion list,
// or -1.
type FieldError struct {
	Field string // exclude_rule_ids, exclude_tags, mode, paranoia, ...
	Index int
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field string, i int, format string, args ...any) error {
	return &FieldError{Field: field, Index: i, Msg: fmt.Sprintf(format, args...)}
}

// FieldErrors unwraps the per-field problems of an error from New or
// Cache.Get (none when the error is not about the config).
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		switch x := e.(type) {
		case *FieldError:
			out = append(out, x)
		case interface{ Unwrap() []error }:
			for _, y := range x.Unwrap() {
				walk(y)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	return out
}

// key identifies a normalized config for Cache.
func (c Config) key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|pl%d|t%d|b%d|ids", c.Mode, c.Paranoia, c.InboundThreshold, c.BodyLimit)
	for _, id := range c.ExcludeRuleIDs {
		b.WriteByte(',')
		b.WriteString(strconv.Itoa(id))
	}
	if c.regression {
		b.WriteString("|regression")
	}
	b.WriteString("|tags")
	for _, t := range c.ExcludeTags {
		b.WriteByte(',')
		b.WriteString(t)
	}
	return b.String()
}

// isBookkeepingRule reports the CRS rules that set variables, skip paranoia
// levels or add up and evaluate the anomaly score, as opposed to rules that
// detect something. They are not reported in Verdict.RuleIDs and cannot be
// excluded.
func isBookkeepingRule(id int) bool {
	switch {
	case id >= 900000 && id <= 901999: // setup and initialization
		return true
	case id >= 949000 && id <= 949999, id >= 959000 && id <= 959999: // anomaly evaluation
		return true
	case id >= 980000 && id <= 980999: // correlation (logging phase)
		return true
	case id >= 200000 && id <= 200099 && id != RuleBodyParseFailure && id != RuleMultipartStrict:
		return true // Gatehouse body processor selection
	}
	return false
}

// directives renders the SecLang configuration for a normalized config.
//
// Order matters: the setvar actions must come after crs-setup.conf.example and
// before REQUEST-901-INITIALIZATION, which only fills in values still unset;
// SecRuleRemove* must come after the rules they remove exist.
func (c Config) directives() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	w("Include @crs-setup.conf.example")
	if c.Mode == ModeBlock {
		w("SecRuleEngine On")
	} else {
		w("SecRuleEngine DetectionOnly")
	}
	// The caller has already read and bounded the body; Coraza keeps what it
	// inspects in memory (never in temporary files) and inspects the first
	// BodyLimit bytes of longer bodies rather than refusing them.
	w("SecRequestBodyAccess On")
	w("SecRequestBodyLimit %d", c.BodyLimit)
	w("SecRequestBodyInMemoryLimit %d", c.BodyLimit)
	w("SecRequestBodyLimitAction ProcessPartial")
	// Responses are not inspected: phases 3 and 4 never run.
	w("SecResponseBodyAccess Off")
	w("SecAuditEngine Off")
	// SecRxPreFilter is deliberately not turned on: it made a 1 KiB JSON
	// body 1.35x cheaper, but with it CRS regression tests 932311-7 and
	// 942220-2 no longer detect their attacks (server.TestCRSRegressionSuite).

	// JSON and XML bodies are parsed only when a rule selects their processor
	// (Coraza picks URLENCODED and MULTIPART by itself). Same rules as
	// coraza.conf-recommended.
	w(`SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" "id:%d,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"`, ruleXMLProcessor)
	w(`SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:%d,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"`, ruleJSONProcessor)
	w(`SecRule REQUEST_HEADERS:Content-Type "^application/[a-z0-9.-]+[+]json" "id:%d,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"`, ruleJSONSuffix)
	// CRS 920420 allows application/json but no other JSON media type, so
	// application/merge-patch+json (RFC 7396) or a vendor type such as
	// application/vnd.api+json would score as a forbidden content type. They
	// are parsed and inspected as JSON above, so their type is no anomaly.
	// Only with a single Content-Type header: two would be a smuggling
	// attempt that CRS should still see.
	w(`SecRule &REQUEST_HEADERS:Content-Type "@eq 1" "id:%d,phase:1,t:none,pass,nolog,chain"`, ruleAllowJSONTypes)
	w(`SecRule REQUEST_HEADERS:Content-Type "@rx ^application/[a-z0-9.-]+\+json\s*(?:;|$)" "t:none,t:lowercase,ctl:ruleRemoveById=920420"`)

	w(`SecAction "id:%d,phase:1,pass,t:none,nolog,setvar:tx.blocking_paranoia_level=%d,setvar:tx.detection_paranoia_level=%d"`, ruleSetParanoia, c.Paranoia, c.Paranoia)
	w(`SecAction "id:%d,phase:1,pass,t:none,nolog,setvar:tx.inbound_anomaly_score_threshold=%d"`, ruleSetThreshold, c.InboundThreshold)
	if c.regression {
		w(`SecAction "id:%d,phase:1,pass,t:none,nolog,setvar:tx.crs_validate_utf8_encoding=1,setvar:tx.arg_name_length=100,setvar:tx.arg_length=400,setvar:tx.total_arg_length=64000,setvar:tx.max_num_args=255,setvar:tx.max_file_size=64100,setvar:tx.combined_file_sizes=65535"`, ruleSetRegression)
	}
	// CRS allows GET HEAD POST OPTIONS only (rule 911100), which refuses every
	// REST update. Which methods an operation accepts is the router's job.
	w(`SecAction "id:%d,phase:1,pass,t:none,nolog,setvar:'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE'"`, ruleSetMethods)

	// Only the request rules: the RESPONSE-95x rules run in phases 3 and 4,
	// which Gatehouse never evaluates, and loading them costs build time and
	// memory for nothing.
	w("Include @owasp_crs/REQUEST-*.conf")

	// A body the JSON or form parser rejects would otherwise reach the
	// upstream uninspected (ARGS stays empty), so refuse it, the way
	// coraza.conf-recommended does. The chain spares bodies that were cut at
	// BodyLimit: their tail is missing by design, not by an attacker.
	w(`SecRule REQBODY_ERROR "!@eq 0" "id:%d,phase:2,t:none,log,deny,status:400,severity:'CRITICAL',msg:'Failed to parse request body',tag:'gatehouse',chain"`, RuleBodyParseFailure)
	w(`SecRule INBOUND_DATA_ERROR "@eq 0" "t:none"`)
	w(`SecRule MULTIPART_STRICT_ERROR "!@eq 0" "id:%d,phase:2,t:none,log,deny,status:400,severity:'CRITICAL',msg:'Multipart request body failed strict validation',tag:'gatehouse',chain"`, RuleMultipartStrict)
	w(`SecRule INBOUND_DATA_ERROR "@eq 0" "t:none"`)

	if len(c.ExcludeRuleIDs) > 0 {
		ids := make([]string, len(c.ExcludeRuleIDs))
		for i, id := range c.ExcludeRuleIDs {
			ids[i] = strconv.Itoa(id)
		}
		w("SecRuleRemoveById %s", strings.Join(ids, " "))
	}
	for _, tag := range c.ExcludeTags {
		w("SecRuleRemoveByTag %s", tag)
	}
	return b.String()
}
