package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Registry metadata and lifecycle of an API version: what a governance
// review needs to know beyond how to route it.

// Criticality values, lowest first.
var criticalities = []string{"low", "medium", "high", "critical"}

// Governance tunes the registry's alerts.
type Governance struct {
	// SunsetAlert: a partner still calling a version this close to its
	// sunset raises an alert (default 30 days).
	SunsetAlert Duration `yaml:"sunset_alert"`
	// Thresholds of `gatehouse audit` (defaults in govern.DefaultPolicy).
	UnusedAfter      Duration `yaml:"unused_after"`
	RotateAfter      Duration `yaml:"rotate_after"`
	ExpiryWarning    Duration `yaml:"expiry_warning"`
	OrphanAfter      Duration `yaml:"orphan_after"`
	AdminTokenMaxAge Duration `yaml:"admin_token_max_age"`
}

// SecurityContact is who a partner wants told about a security incident.
type SecurityContact struct {
	Email   string `yaml:"email"`
	Webhook string `yaml:"webhook"`
}

// Contract is what a partner agreed to.
type Contract struct {
	SLA               string `yaml:"sla"`
	BreachNoticeHours int    `yaml:"breach_notice_hours"`
	AuditRights       *bool  `yaml:"audit_rights"`
}

// DataFlow names a system an API reads from or writes to.
type DataFlow struct {
	System string `yaml:"system"`
	// Direction is read, write or read_write.
	Direction string `yaml:"direction"`
	// Data describes what crosses, e.g. "customer PII".
	Data string `yaml:"data"`
}

// Deprecation schedules an API version's end.
type Deprecation struct {
	// On is when the version was (or will be) deprecated: a date
	// (YYYY-MM-DD, midnight UTC) or an RFC 3339 time. Sent as the
	// Deprecation header (RFC 9745).
	On string `yaml:"on"`
	// Sunset is when it stops answering (410 afterwards). Sent as the
	// Sunset header (RFC 8594).
	Sunset string `yaml:"sunset"`
	// Successor is the version of the same API callers should move to.
	Successor string `yaml:"successor"`
	// Link is a human-readable page about the deprecation (rel="deprecation").
	Link string `yaml:"link"`
}

// ParseWhen parses a lifecycle date: YYYY-MM-DD (00:00 UTC) or RFC 3339.
func ParseWhen(s string) (time.Time, error) {
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a date (YYYY-MM-DD) nor an RFC 3339 time", s)
	}
	return t.UTC(), nil
}

// ReviewOverdue is how old a security review may get before config
// validation warns (and `gatehouse audit` reports a finding).
const ReviewOverdue = 90 * 24 * time.Hour

// validateLifecycle enforces what each lifecycle state needs. An active API
// that partners or the public can reach must name who answers for it and
// when it was last reviewed: these are errors, not warnings, because an
// unowned public entry point is exactly the gap this registry exists to close.
func validateLifecycle(rep *Reporter, c *Config, i int, now time.Time) {
	a := &c.APIs[i]
	ptr := fmt.Sprintf("/apis/%d", i)
	if a.Criticality != "" && !contains(criticalities, a.Criticality) {
		rep.Errorf(ptr+"/criticality", "criticality must be one of %s", strings.Join(criticalities, ", "))
	}
	for j, f := range a.DataFlows {
		fp := fmt.Sprintf("%s/data_flows/%d", ptr, j)
		if f.System == "" {
			rep.Errorf(fp+"/system", "a data flow names the system it reads or writes")
		}
		if f.Direction != "" && f.Direction != "read" && f.Direction != "write" && f.Direction != "read_write" {
			rep.Errorf(fp+"/direction", "direction must be read, write or read_write")
		}
	}

	var reviewed time.Time
	if a.Reviewed.On != "" {
		if t, err := time.Parse("2006-01-02", a.Reviewed.On); err == nil {
			reviewed = t
			if t.After(now.Add(24 * time.Hour)) {
				rep.Errorf(ptr+"/reviewed/on", "review date %s is in the future", a.Reviewed.On)
			}
		}
	}
	exposed := a.Exposure == "public" || a.Exposure == "partner"
	if a.Lifecycle == "active" && exposed {
		if a.Owner.Team == "" || a.Owner.Contact == "" {
			rep.Errorf(ptr+"/owner", "an active %s API needs owner.team and owner.contact: someone must answer for an exposed entry point", a.Exposure)
		}
		if a.Reviewed.On == "" || a.Reviewed.By == "" {
			rep.Errorf(ptr+"/reviewed", "an active %s API needs a security review (reviewed.on and reviewed.by) before it goes live", a.Exposure)
		}
	}
	if !reviewed.IsZero() && a.Lifecycle != "retired" && now.Sub(reviewed) > ReviewOverdue {
		rep.Warnf(ptr+"/reviewed/on", "the last security review of %s %s was on %s, more than %d days ago",
			a.Name, a.Version, a.Reviewed.On, int(ReviewOverdue.Hours()/24))
	}

	d := a.Deprecation
	dp := ptr + "/deprecation"
	var on, sunset time.Time
	if d.On != "" {
		t, err := ParseWhen(d.On)
		if err != nil {
			rep.Errorf(dp+"/on", "%v", err)
		}
		on = t
	}
	if d.Sunset != "" {
		t, err := ParseWhen(d.Sunset)
		if err != nil {
			rep.Errorf(dp+"/sunset", "%v", err)
		}
		sunset = t
	}
	if !on.IsZero() && !sunset.IsZero() && !sunset.After(on) {
		rep.Errorf(dp+"/sunset", "sunset %s must come after the deprecation date %s", d.Sunset, d.On)
	}
	if d.Link != "" {
		if u, err := url.Parse(d.Link); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			rep.Errorf(dp+"/link", "link must be an absolute http(s) URL to the deprecation notice")
		}
	}
	if d.Successor != "" {
		found := false
		for j := range c.APIs {
			s := &c.APIs[j]
			if j == i || s.Name != a.Name || s.Version != d.Successor {
				continue
			}
			found = true
			if s.Lifecycle == "retired" || s.Lifecycle == "deprecated" {
				rep.Errorf(dp+"/successor", "successor %s %s is %s itself; point callers at a live version", s.Name, s.Version, s.Lifecycle)
			}
		}
		if !found {
			rep.Errorf(dp+"/successor", "no API %s with version %q is declared", a.Name, d.Successor)
		}
	}
	switch a.Lifecycle {
	case "deprecated":
		if d.On == "" {
			rep.Errorf(dp+"/on", "a deprecated API needs deprecation.on: clients learn it from the Deprecation header")
		}
		if d.Sunset == "" {
			rep.Warnf(dp+"/sunset", "deprecated API %s %s has no sunset date: callers cannot plan their move", a.Name, a.Version)
		}
		if d.Successor == "" {
			rep.Warnf(dp+"/successor", "deprecated API %s %s names no successor version", a.Name, a.Version)
		}
	case "active", "design":
		if !sunset.IsZero() {
			rep.Errorf(dp+"/sunset", "a sunset date needs lifecycle: deprecated (it is %s)", a.Lifecycle)
		}
		if !on.IsZero() && !on.After(now) {
			rep.Warnf(dp+"/on", "deprecation date %s has passed but lifecycle is still %s", d.On, a.Lifecycle)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Detection configures anomaly detection and alerting.
type Detection struct {
	// Enabled defaults to true.
	Enabled *bool `yaml:"enabled"`
	// Responses maps a detector to an automatic response: block_ip or
	// suspend_credential (temporary, cluster-wide, reversible).
	Responses   map[string]string `yaml:"responses"`
	ResponseTTL Duration          `yaml:"response_ttl"`
	// ThrottleRate is what a throttled subject is held to (default 60/m).
	ThrottleRate string           `yaml:"throttle_rate"`
	Webhooks     []AlertWebhook   `yaml:"webhooks"`
	Thresholds   DetectThresholds `yaml:"thresholds"`
}

// AlertWebhook receives alerts.
type AlertWebhook struct {
	URL         string `yaml:"url"`
	Format      string `yaml:"format"` // slack | json
	MinSeverity string `yaml:"min_severity"`
}

// DetectThresholds override the detectors' defaults (zero: default).
type DetectThresholds struct {
	AuthFailIP       int      `yaml:"auth_fail_ip"`
	AuthFailConsumer int      `yaml:"auth_fail_consumer"`
	Enumeration      int      `yaml:"enumeration"`
	IDWalk           int      `yaml:"id_walk"`
	SpikeMin         float64  `yaml:"spike_min"`
	VolumeMinBytes   float64  `yaml:"volume_min_bytes"`
	NoveltyWarmup    Duration `yaml:"novelty_warmup"`
	HoursWarmup      Duration `yaml:"hours_warmup"`
}
