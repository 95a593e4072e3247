package config

import (
	"fmt"
	"strings"
)

// Audit configures the tamper-evident audit trail (internal/audit). It is
// off until Dir is set.
type Audit struct {
	// Dir holds the segment files and the latest checkpoint.
	Dir string `yaml:"dir"`
	// Mode is "buffered" (default: flushed at least every 100 ms) or
	// "durable" (a response leaves only after its record is fsynced).
	Mode string `yaml:"mode"`
	// SigningKeyFile holds the Ed25519 note signer key written by
	// 'gatehouse logs keygen'.
	SigningKeyFile     string   `yaml:"signing_key_file"`
	CheckpointEvery    int      `yaml:"checkpoint_every"`
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
	SegmentMaxBytes    int64    `yaml:"segment_max_bytes"`
	SegmentMaxAge      Duration `yaml:"segment_max_age"`
	QueueSize          int      `yaml:"queue_size"`
	// IndexInterval is how often new records are copied into the store's
	// audit index (default 1s).
	IndexInterval Duration `yaml:"index_interval"`
	// Index is "store" (default: this process fills the store's audit
	// index) or "off" (another process or an exporter takes the log).
	Index string `yaml:"index"`
	// Exporters ship the log elsewhere; the log is their spool.
	Exporters []AuditExporter `yaml:"exporters"`
}

// AuditExporter is one destination for the audit log.
type AuditExporter struct {
	// Name keys the exporter's saved position (default: its type).
	Name string `yaml:"name"`
	// Type is stdout, file, http or syslog.
	Type string `yaml:"type"`
	Path string `yaml:"path"` // file
	URL  string `yaml:"url"`  // http: batches POSTed as application/x-ndjson
	// Address is host:port of an RFC 5424 syslog receiver over TCP.
	Address string `yaml:"address"`
	TLS     bool   `yaml:"tls"`     // syslog over TLS (RFC 5425)
	CAFile  string `yaml:"ca_file"` // CA for the syslog TLS server (default: system roots)
}

// SameAs reports whether a and b configure the same trail (reload needs a
// restart when they differ).
func (a Audit) SameAs(b Audit) bool {
	ea, eb := a.Exporters, b.Exporters
	if len(ea) != len(eb) {
		return false
	}
	for i := range ea {
		if ea[i] != eb[i] {
			return false
		}
	}
	return a.equalScalars(b)
}

func (a Audit) equalScalars(b Audit) bool {
	return a.Dir == b.Dir && a.Mode == b.Mode && a.SigningKeyFile == b.SigningKeyFile && a.CheckpointEvery == b.CheckpointEvery &&
		a.CheckpointInterval == b.CheckpointInterval && a.SegmentMaxBytes == b.SegmentMaxBytes && a.SegmentMaxAge == b.SegmentMaxAge &&
		a.QueueSize == b.QueueSize && a.IndexInterval == b.IndexInterval && a.Index == b.Index
}

// Enabled reports whether the audit trail is configured.
func (a Audit) Enabled() bool { return a.Dir != "" }

func applyAuditDefaults(c *Config, rep *Reporter) {
	a := &c.Audit
	if !a.Enabled() {
		return
	}
	a.Dir = resolvePath(rep.Src, "/audit/dir", a.Dir)
	a.SigningKeyFile = resolvePath(rep.Src, "/audit/signing_key_file", a.SigningKeyFile)
	if a.Mode == "" {
		a.Mode = "buffered"
	}
	if a.CheckpointEvery == 0 {
		a.CheckpointEvery = 1000
	}
	if a.CheckpointInterval == 0 {
		a.CheckpointInterval = Duration(5e9)
	}
	if a.SegmentMaxBytes == 0 {
		a.SegmentMaxBytes = 64 << 20
	}
	if a.QueueSize == 0 {
		a.QueueSize = 8192
	}
	if a.Index == "" {
		a.Index = "store"
	}
	for i := range a.Exporters {
		e := &a.Exporters[i]
		if e.Name == "" {
			e.Name = e.Type
		}
		ptr := fmt.Sprintf("/audit/exporters/%d", i)
		e.Path = resolvePath(rep.Src, ptr+"/path", e.Path)
		e.CAFile = resolvePath(rep.Src, ptr+"/ca_file", e.CAFile)
	}
	if a.IndexInterval == 0 {
		a.IndexInterval = Duration(1e9)
	}
}

func validateAudit(c *Config, rep *Reporter) {
	a := c.Audit
	if !a.Enabled() {
		if a.SigningKeyFile != "" || a.Mode != "" {
			rep.Errorf("/audit", "audit needs dir: the directory the signed log is written to")
		}
		return
	}
	if a.SigningKeyFile == "" {
		rep.Errorf("/audit/signing_key_file", "a signing key is required to sign checkpoints; create one with 'gatehouse logs keygen'")
	}
	if a.SegmentMaxBytes < 4096 {
		rep.Errorf("/audit/segment_max_bytes", "segment_max_bytes must be at least 4096")
	}
	seen := map[string]bool{}
	for i, e := range a.Exporters {
		ptr := fmt.Sprintf("/audit/exporters/%d", i)
		if seen[e.Name] {
			rep.Errorf(ptr+"/name", "exporter name %q is used twice: each exporter keeps its own position in the log", e.Name)
		}
		seen[e.Name] = true
		need := map[string]string{"file": e.Path, "http": e.URL, "syslog": e.Address}
		field := map[string]string{"file": "path", "http": "url", "syslog": "address"}
		if f, ok := field[e.Type]; ok && need[e.Type] == "" {
			rep.Errorf(ptr, "a %s exporter needs %s", e.Type, f)
		}
		if e.Type == "http" && e.URL != "" && !strings.HasPrefix(e.URL, "https://") && !strings.HasPrefix(e.URL, "http://127.") && !strings.HasPrefix(e.URL, "http://localhost") {
			rep.Warnf(ptr+"/url", "audit records leave over plain HTTP; use https://")
		}
	}
	if a.QueueSize > 1<<20 {
		rep.Errorf("/audit/queue_size", "queue_size must be at most 1048576: the queue is held in memory")
	}
}
