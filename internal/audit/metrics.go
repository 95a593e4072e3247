package audit

import "github.com/prometheus/client_golang/prometheus"

// RegisterMetrics exposes the writer's health for alerting:
// gatehouse_audit_healthy drops to 0 on a full disk or unwritable log.
func RegisterMetrics(reg prometheus.Registerer, w *Writer) error {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gatehouse_audit_healthy",
			Help: "1 while the audit log is writable, 0 after a failed write (durable mode then refuses requests)."},
			func() float64 {
				if w.Stats().Healthy {
					return 1
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gatehouse_audit_records_total",
			Help: "Audit records written."}, func() float64 { return float64(w.Stats().Records) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gatehouse_audit_write_errors_total",
			Help: "Failed audit log writes or fsyncs."}, func() float64 { return float64(w.Stats().Errors) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gatehouse_audit_checkpoints_total",
			Help: "Signed audit checkpoints written."}, func() float64 { return float64(w.Stats().Checkpoints) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gatehouse_audit_queue_length",
			Help: "Audit records waiting for the writer."}, func() float64 { return float64(w.Stats().QueueLen) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
