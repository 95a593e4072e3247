// Package metrics owns Gatehouse's Prometheus collectors. One Metrics lives
// for the whole process, across config reloads, so counters never reset.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Decisions recorded in gatehouse_requests_total.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
	DecisionError = "error"
)

// Metrics are the process-wide collectors.
type Metrics struct {
	Registry         *prometheus.Registry
	Requests         *prometheus.CounterVec
	Latency          *prometheus.HistogramVec
	UpstreamErrors   *prometheus.CounterVec
	Denials          *prometheus.CounterVec
	ConfigReloads    *prometheus.CounterVec
	ConfigLastOK     prometheus.Gauge
	ConfigGeneration prometheus.Gauge
	InFlight         prometheus.Gauge
	WAFDecisions     *prometheus.CounterVec
	WAFRuleMatches   *prometheus.CounterVec
	// LimitDegraded is 1 while the shared (Redis) rate-limit backend is
	// unreachable and its failure policy applies: an alert condition.
	LimitDegraded prometheus.Gauge
	// LimitBackendFailures counts transitions into the degraded state.
	LimitBackendFailures prometheus.Counter
}

// New registers every collector on a fresh registry.
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_requests_total",
			Help: "Requests handled, by API, operation, status class and decision.",
		}, []string{"api", "operation", "status_class", "decision"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_request_duration_seconds",
			Help:    "Time from request received to response headers and body written, by API and operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"api", "operation"}),
		UpstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_upstream_errors_total",
			Help: "Upstream failures by API and kind (refused, timeout, reset, other).",
		}, []string{"api", "kind"}),
		Denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_denials_total",
			Help: "Requests refused by the gateway, by pipeline stage and reason.",
		}, []string{"stage", "reason"}),
		WAFDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_waf_decisions_total",
			Help: "Requests the WAF flagged, by API and action (block: refused; detect: matched and passed).",
		}, []string{"api", "action"}),
		WAFRuleMatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_waf_rule_matches_total",
			Help: "Core Rule Set detection rules matched, by rule ID.",
		}, []string{"rule"}),
		ConfigReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_config_reloads_total",
			Help: "Config reload attempts by result (success, failure).",
		}, []string{"result"}),
		ConfigLastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last config load that was applied.",
		}),
		ConfigGeneration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_config_generation",
			Help: "Number of configs applied since start (1 after the first load).",
		}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_requests_in_flight",
			Help: "Requests currently being handled.",
		}),
		LimitDegraded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_ratelimit_backend_degraded",
			Help: "1 while the shared rate-limit backend (Redis) is unreachable and redis_failure applies.",
		}),
		LimitBackendFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_backend_failures_total",
			Help: "Times the shared rate-limit backend (Redis) became unreachable.",
		}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gatehouse_build_info",
		Help: "Build information; always 1.",
	}, []string{"version"})
	build.WithLabelValues(version).Set(1)
	reg.MustRegister(m.Requests, m.Latency, m.UpstreamErrors, m.Denials, m.ConfigReloads,
		m.ConfigLastOK, m.ConfigGeneration, m.InFlight, build, m.WAFDecisions, m.WAFRuleMatches,
		m.LimitDegraded, m.LimitBackendFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Pre-create the reload series so a dashboard sees 0, not absence.
	m.ConfigReloads.WithLabelValues("success")
	m.ConfigReloads.WithLabelValues("failure")
	return m
}

// Handler serves the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Timeout: 10 * time.Second})
}

// StatusClass returns "2xx" etc. without allocating.
func StatusClass(code int) string {
	switch {
	case code < 200:
		return "1xx"
	case code < 300:
		return "2xx"
	case code < 400:
		return "3xx"
	case code < 500:
		return "4xx"
	default:
		return "5xx"
	}
}

// OperationSeries are the pre-resolved series of one operation, so the hot
// path does no label hashing.
type OperationSeries struct {
	allow   [6]prometheus.Counter // index: status/100 (0 and 1 unused: final statuses are 2xx-5xx)
	Latency prometheus.Observer
}

// ForOperation resolves the series of one operation.
func (m *Metrics) ForOperation(api, op string) *OperationSeries {
	s := &OperationSeries{Latency: m.Latency.WithLabelValues(api, op)}
	for i := 2; i <= 5; i++ {
		s.allow[i] = m.Requests.WithLabelValues(api, op, StatusClass(i*100), DecisionAllow)
	}
	return s
}

// CountAllowed counts a request that passed every stage, by its status.
func (s *OperationSeries) CountAllowed(status int) {
	i := status / 100
	if i < 2 || i > 5 {
		i = 5
	}
	s.allow[i].Inc()
}
