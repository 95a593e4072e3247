package config

import (
	"strings"
	"testing"
	"time"
)

func TestDiscoveryConfig(t *testing.T) {
	base := "version: 1\nlisten: {tls: {dev_cert: true}}\n"
	l, err := LoadBytes("t.yaml", []byte(base), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Config.Discovery.On() {
		t.Error("discovery is off by default; it should be on")
	}
	l, err = LoadBytes("t.yaml", []byte(base+"discovery: {enabled: false, sample_above_rps: 0, max_templates: 500, merge_after: 20, flush_interval: 5s, retention: 400d}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := l.Config.Discovery
	if d.On() || d.SampleAboveRPS == nil || *d.SampleAboveRPS != 0 || d.MaxTemplates != 500 || d.MergeAfter != 20 || d.FlushInterval.D() != 5*time.Second || d.Retention.D() != 400*24*time.Hour {
		t.Errorf("discovery = %+v", d)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"discovery: {max_templates: 5}\n", "t.yaml:3: /discovery/max_templates"},
		{"discovery: {sample_above_rps: -1}\n", "/discovery/sample_above_rps"},
		{"discovery: {merge_after: 1}\n", "/discovery/merge_after"},
		{"discovery: {flush_interval: soon}\n", "/discovery/flush_interval"},
		{"discovery: {observe: true}\n", "/discovery/observe: unknown key"},
	} {
		_, err := LoadBytes("t.yaml", []byte(base+bad.yaml), nil)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: error %v, want it to contain %q", strings.TrimSpace(bad.yaml), err, bad.want)
		}
	}
}
