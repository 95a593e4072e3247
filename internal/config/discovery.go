package config

// Discovery configures traffic discovery (package discover).
type Discovery struct {
	// Enabled is on when unset: observation is bounded and cheap, and the
	// reports are only as good as the traffic they have seen.
	Enabled        *bool    `yaml:"enabled"`
	SampleAboveRPS *int     `yaml:"sample_above_rps"`
	MaxTemplates   int      `yaml:"max_templates"`
	MergeAfter     int      `yaml:"merge_after"`
	FlushInterval  Duration `yaml:"flush_interval"`
	Retention      Duration `yaml:"retention"`
}

// On reports whether discovery is enabled.
func (d Discovery) On() bool { return d.Enabled == nil || *d.Enabled }
