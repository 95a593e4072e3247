package server

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/discover"
	"github.com/gatehouse/gatehouse/internal/gateway"
)

// discoveryRun is traffic discovery's background part: the observer on the
// gateway and the flusher writing it to the store.
type discoveryRun struct {
	obs    *discover.Observer
	cancel context.CancelFunc
	done   chan struct{}
}

func discoveryOptions(d config.Discovery) discover.Options {
	o := discover.Options{MaxTemplates: d.MaxTemplates, MergeAfter: d.MergeAfter}
	if d.SampleAboveRPS != nil {
		o.SampleAboveRPS = *d.SampleAboveRPS
		if o.SampleAboveRPS == 0 {
			o.SampleAboveRPS = -1 // configured 0: never sample
		}
	}
	return o
}

// startDiscovery attaches an observer to the gateway and starts flushing
// it. The observer exists even when discovery is disabled, so a reload can
// turn it on; disabled, it records nothing.
func (s *Server) startDiscovery(rt *gateway.Runtime) {
	cfg := rt.Config.Discovery
	obs := discover.NewObserver(discoveryOptions(cfg))
	ctx, cancel := context.WithCancel(s.ctx)
	d := &discoveryRun{obs: obs, cancel: cancel, done: make(chan struct{})}
	s.discovery = d
	s.applyDiscovery(rt)
	s.gw.SetObserver(obs)
	bodies := discover.NewBodySampler()
	if cfg.Enabled == nil || *cfg.Enabled {
		s.gw.SetBodySampler(bodies)
	}
	f := &discover.Flusher{Observer: obs, Bodies: bodies, Store: s.store, Interval: cfg.FlushInterval.D(), Retention: cfg.Retention.D(), Log: s.log}
	s.metrics.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gatehouse_discovery_dropped_total",
			Help: "Calls discovery did not record because a memory cap was reached."}, func() float64 { return float64(obs.Dropped()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gatehouse_discovery_endpoints",
			Help: "Endpoint templates discovery holds in memory."}, func() float64 { return float64(obs.Endpoints()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gatehouse_discovery_sample_every",
			Help: "Discovery records 1 call in this many (1: every call)."}, func() float64 { return float64(obs.SampleEvery()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gatehouse_discovery_flush_failures_total",
			Help: "Discovery flushes the store refused (retried with the next)."}, func() float64 { return float64(f.Failures()) }),
	)
	go func() {
		defer close(d.done)
		f.Run(ctx)
	}()
}

// applyDiscovery follows a new config: bounds, on/off, registry pins.
func (s *Server) applyDiscovery(rt *gateway.Runtime) {
	d := s.discovery
	if d == nil {
		return
	}
	cfg := rt.Config.Discovery
	d.obs.SetOptions(discoveryOptions(cfg))
	d.obs.SetEnabled(cfg.On())
	gateway.PinRegistry(d.obs, rt)
}

// stopDiscovery stops the flusher after a last flush; the store must still
// be open.
func (s *Server) stopDiscovery() {
	if d := s.discovery; d != nil {
		d.cancel()
		<-d.done
	}
}
