package config

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
	if a.QueueSize > 1<<20 {
		rep.Errorf("/audit/queue_size", "queue_size must be at most 1048576: the queue is held in memory")
	}
}
