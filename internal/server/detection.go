package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/detect"
	"github.com/gatehouse/gatehouse/internal/govern"
	"github.com/gatehouse/gatehouse/internal/limit"
	"github.com/gatehouse/gatehouse/internal/store"
)

// startDetection runs the anomaly detectors over the gateway's request
// events and the alert manager that stores, delivers and acts on them.
// Detection settings apply at start (a reload logs that they need a restart).
func (s *Server) startDetection(cfg *config.Config) {
	d := cfg.Detection
	if d.Enabled != nil && !*d.Enabled {
		return
	}
	hooks := make([]detect.Webhook, 0, len(d.Webhooks))
	for _, h := range d.Webhooks {
		hooks = append(hooks, detect.Webhook{URL: h.URL, Format: h.Format, MinSeverity: h.MinSeverity})
	}
	s.alerts = detect.NewManager(detect.ManagerOptions{Store: s.store, Responder: revocationResponder{s}, Responses: d.Responses,
		ResponseTTL: d.ResponseTTL.D(), Webhooks: hooks, Registerer: s.metrics.Registry, Log: s.log})
	th := d.Thresholds
	en := detect.NewEngine(detect.Options{Log: s.log, OnFinding: s.alerts.Handle, Detectors: detect.Defaults(detect.Thresholds{
		AuthFailIP: th.AuthFailIP, AuthFailConsumer: th.AuthFailConsumer, Enum404: th.Enumeration, IDWalk: th.IDWalk,
		SpikeMin: th.SpikeMin, NoveltyWarmup: th.NoveltyWarmup.D(), HoursWarmup: th.HoursWarmup.D(),
		VolumeMin: th.VolumeMinBytes})})
	if d.ThrottleRate != "" {
		if n, per, err := config.ParseRate(d.ThrottleRate); err == nil {
			s.gw.SetThrottleRule(limit.Rule{Rate: n, Period: per, Burst: max(n/6, 1)})
		}
	}
	s.alerts.Start(s.ctx)
	// Partners still calling a version close to its sunset become alerts too.
	s.gw.Deprecations().SetOnAlert(func(c govern.Caller, sunset time.Time, days int) {
		s.alerts.Handle(detect.Finding{Detector: "sunset_approaching", Severity: "medium", Subject: "partner:" + c.Partner,
			Summary:  fmt.Sprintf("partner %s still calls %s %s, %d days before its sunset", c.Partner, c.API, c.Version, days),
			Evidence: map[string]any{"api": c.API, "version": c.Version, "consumer": c.Consumer, "sunset": sunset.Format(time.RFC3339), "days_left": days},
			At:       time.Now()})
	})
	go en.Run(s.ctx)
	s.gw.SetDetector(en)
}

// revocationResponder carries automatic responses out on the cluster-wide
// revocation list, with an expiry, so every replica enforces them and they
// end on their own.
type revocationResponder struct{ s *Server }

func (r revocationResponder) Revoke(ctx context.Context, kind, subject, reason string, until time.Time) error {
	return r.s.revocations.Revoke(ctx, store.Revocation{Kind: kind, Subject: subject, Reason: reason, ExpiresAt: until, CreatedBy: "detector"})
}

func (r revocationResponder) Lift(ctx context.Context, kind, subject, by, reason string) error {
	if kind == detect.KindThrottle {
		if !r.s.gw.Unthrottle(subject) {
			return store.ErrNotFound
		}
		return nil
	}
	return r.s.revocations.Lift(ctx, kind, subject, by, reason)
}

// Throttle holds subject to the throttle rate on this replica.
func (r revocationResponder) Throttle(_ context.Context, subject string, until time.Time) error {
	if !r.s.gw.Throttle(subject, until) {
		return errors.New("throttle table full")
	}
	return nil
}
