// Package server runs a whole Gatehouse process: it loads the config, opens
// the store, starts the data-plane and admin listeners, and reloads the
// config on SIGHUP or file change, keeping the old one when the new is bad.
package server

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/admin"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/detect"
	"github.com/gatehouse/gatehouse/internal/gateway"
	"github.com/gatehouse/gatehouse/internal/metrics"
	"github.com/gatehouse/gatehouse/internal/redact"
	"github.com/gatehouse/gatehouse/internal/revoke"
	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Options configure a server.
type Options struct {
	ConfigPath string
	Version    string
	Logger     *slog.Logger
	// Env resolves ${VAR} in the config; os.LookupEnv when nil.
	Env config.LookupEnv
	// Watch enables reload on config file change (SIGHUP is handled by the
	// caller through Reload).
	Watch bool
	// WAFTesting is test-only WAF behaviour (zero in production).
	WAFTesting gateway.WAFTesting
}

// Server is a running Gatehouse.
type Server struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics.Metrics
	gw      *gateway.Gateway
	admin   *admin.Server
	store   store.Store
	ready   atomic.Bool
	// redaction filters every record s.log writes; keys is the store's
	// data key ring (nil when encryption is off).
	redaction *redact.Handler
	keys      *seal.KeyRing

	reloadMu sync.Mutex
	startCfg *config.Config

	https, plain, adminSrv *http.Server
	httpsLn, plainLn       net.Listener
	adminLn                net.Listener
	watcher                *watcher
	revocations            *revoke.List
	notifier               *revoke.RedisNotifier
	discovery              *discoveryRun
	alerts                 *detect.Manager
	ctx                    context.Context
	cancel                 context.CancelFunc
	done                   chan struct{}
	errc                   chan error

	auditW   *audit.Writer
	auditIdx *auditIndex
}

// Start loads the config and starts every listener. It returns once the
// server is ready, or with the config's problems if it is not valid.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Server{opts: o, done: make(chan struct{}), errc: make(chan error, 3)}
	// Everything the server and the gateway log passes through redaction,
	// from the first line on (with the always-on rules until the config
	// names more).
	s.log, s.redaction = redactingLogger(o.Logger)
	s.metrics = metrics.New(o.Version)
	s.gw = gateway.New(s.metrics, s.log)
	s.gw.SetWAFTesting(o.WAFTesting)

	loaded, err := config.Load(o.ConfigPath, o.Env)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			return nil, append(ps, gateway.SpecProblems(loaded)...)
		}
		return nil, err
	}
	cfg := loaded.Config

	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	opened, err := OpenSealedStore(sctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	s.store, s.keys = opened.Store, opened.Keys
	if opened.Plaintext > 0 {
		s.log.Warn("store holds sensitive values written before encryption was enabled; run gatehouse keys rotate-data-key to seal them",
			"values", opened.Plaintext)
	}
	red, err := newRedactor(cfg, s.keys)
	if err != nil {
		s.store.Close()
		return nil, err
	}
	s.redaction.SetRedactor(red)
	// The server's own lifetime: background work (JWKS refresh, revocation
	// sync) stops on Close, not when the caller's start context ends.
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := s.startRevocations(sctx, cfg); err != nil {
		s.cancel()
		s.store.Close()
		return nil, err
	}
	s.gw.SetIdentity(gateway.IdentityDeps{Ctx: s.ctx, Store: s.store, Revocations: s.revocations})
	s.startDetection(cfg)
	s.gw.SetLimits(gateway.LimitDeps{Quotas: s.store})
	rt, err := s.gw.Compile(loaded)
	if err != nil {
		s.cancel()
		s.store.Close()
		return nil, err
	}
	s.startCfg = cfg
	if err := s.startAudit(cfg); err != nil {
		s.cancel()
		s.store.Close()
		return nil, err
	}

	s.admin = admin.New(admin.Options{Metrics: s.metrics, Store: s.store, Ready: s.ready.Load, Reload: s.Reload,
		Revoke:       s.revocations.Revoke,
		Deprecations: s.gw.Deprecations().Usage,
		Alerts:       s.alerts,
		Quota:        s.gw.QuotaUsage,
		// The key service is rebuilt when the pepper changes: look it up per call.
		Keys: admin.DynamicKeys(func() admin.KeyService {
			if k := s.gw.Keys(); k != nil {
				return k
			}
			return nil
		}),
		Audit: s.adminAudit(), AuditQuery: s.store.QueryAudit})
	tok, err := adminToken(cfg.Admin)
	if err != nil {
		s.closeAudit()
		s.store.Close()
		return nil, err
	}
	s.admin.SetToken(tok)
	s.apply(ctx, rt)

	if err := s.listen(cfg); err != nil {
		s.closeAudit()
		s.store.Close()
		return nil, err
	}
	s.startDiscovery(rt)
	if o.Watch {
		s.watcher, err = newWatcher(s.log, func() { _ = s.Reload(context.Background()) })
		if err != nil {
			s.log.Warn("config file watching unavailable; reload with SIGHUP", "error", err.Error())
		} else {
			s.watcher.set(watchedFiles(rt))
		}
	}
	s.ready.Store(true)
	s.log.Info("gatehouse ready", "https", s.HTTPSAddr(), "admin", s.AdminAddr(), "apis", len(rt.Registry.APIs), "version", o.Version)
	return s, nil
}

// RedisPrefix namespaces Gatehouse's Redis keys and channels; every
// replica and the CLI use it.
const RedisPrefix = "gatehouse:"

// startRevocations loads the revocation list and keeps it in sync with the
// store (and with other replicas through Redis, when configured).
func (s *Server) startRevocations(ctx context.Context, cfg *config.Config) error {
	o := revoke.Options{Poll: cfg.Identity.RevocationPoll.D(), Logger: s.log}
	if cfg.Redis != "" {
		n, err := revoke.NewRedisNotifier(cfg.Redis, RedisPrefix, s.log)
		if err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		s.notifier = n
		o.Notifier = n
	}
	s.revocations = revoke.New(s.store, o)
	if err := s.revocations.Sync(ctx); err != nil {
		return fmt.Errorf("load revocations: %w", err)
	}
	go func() {
		if err := s.revocations.Run(s.ctx); err != nil {
			s.log.Error("revocation sync stopped", "error", err.Error())
		}
	}()
	return nil
}

// OpenStore opens the store a config names (SQLite by default, PostgreSQL
// when configured); the CLI uses it too, so both open stores the same way.
func OpenStore(ctx context.Context, c config.Store) (store.Store, error) {
	o, err := OpenSealedStore(ctx, c)
	return o.Store, err
}

func adminToken(a config.Admin) (string, error) {
	if a.TokenFile != "" {
		b, err := os.ReadFile(a.TokenFile)
		if err != nil {
			return "", fmt.Errorf("read admin token file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if len(tok) < 16 {
			return "", fmt.Errorf("admin token in %s is too short: use at least 16 random characters", a.TokenFile)
		}
		return tok, nil
	}
	return a.Token, nil
}

func (s *Server) listen(cfg *config.Config) error {
	var err error
	s.httpsLn, err = net.Listen("tcp", cfg.Listen.HTTPS)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen.HTTPS, err)
	}
	s.https = gateway.NewServer(s.gw, cfg.Limits)
	s.https.TLSConfig = s.gw.TLSConfig(cfg.Listen.TLS.MinVersion)
	s.https.ErrorLog = slogLogger(s.log)
	go s.serve(s.https, s.httpsLn, true)

	if cfg.Listen.HTTP != "" {
		s.plainLn, err = net.Listen("tcp", cfg.Listen.HTTP)
		if err != nil {
			s.httpsLn.Close()
			return fmt.Errorf("listen on %s: %w", cfg.Listen.HTTP, err)
		}
		var h http.Handler = gateway.RedirectToHTTPS(s.httpsLn.Addr().String())
		if cfg.Listen.AllowPlaintext {
			h = s.gw
		}
		s.plain = gateway.NewServer(h, cfg.Limits)
		s.plain.ErrorLog = slogLogger(s.log)
		go s.serve(s.plain, s.plainLn, false)
	}

	s.adminLn, err = net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		s.httpsLn.Close()
		if s.plainLn != nil {
			s.plainLn.Close()
		}
		return fmt.Errorf("listen on %s: %w", cfg.Admin.Listen, err)
	}
	s.adminSrv = &http.Server{Handler: s.admin, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10, ErrorLog: slogLogger(s.log)}
	go s.serve(s.adminSrv, s.adminLn, false)
	return nil
}

func (s *Server) serve(srv *http.Server, ln net.Listener, useTLS bool) {
	var err error
	if useTLS {
		// ServeTLS adds HTTP/2 to the ALPN list; the certificate comes from
		// TLSConfig.GetCertificate, hence no file names.
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.errc <- err
	}
}

// Reload loads and compiles the config again and swaps it in. On any
// problem the running config keeps serving and the problems are returned.
func (s *Server) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	rt, err := s.gw.LoadAndCompile(s.opts.ConfigPath, s.opts.Env)
	if err != nil {
		s.metrics.ConfigReloads.WithLabelValues("failure").Inc()
		var ps config.Problems
		if errors.As(err, &ps) {
			ps.Sort()
			for _, p := range ps {
				if p.Warning {
					continue // warnings do not reject a config; they are logged when one applies
				}
				s.log.Error("config rejected; keeping the running config", "problem", p.String())
			}
		} else {
			s.log.Error("config rejected; keeping the running config", "error", err.Error())
		}
		return err
	}
	for _, w := range restartOnlyChanges(s.startCfg, rt.Config) {
		s.log.Warn("config change needs a restart to take effect", "setting", w)
	}
	if r, err := newRedactor(rt.Config, s.keys); err == nil {
		s.redaction.SetRedactor(r)
	} else {
		s.log.Error("redaction settings not reloaded", "error", err.Error())
	}
	if tok, err := adminToken(rt.Config.Admin); err == nil {
		s.admin.SetToken(tok)
	} else {
		s.log.Error("admin token not reloaded", "error", err.Error())
	}
	// Counted before the swap so that anyone who sees the new config also
	// sees the success in the metric.
	s.metrics.ConfigReloads.WithLabelValues("success").Inc()
	s.apply(ctx, rt)
	if s.watcher != nil {
		s.watcher.set(watchedFiles(rt))
	}
	s.log.Info("config reloaded", "apis", len(rt.Registry.APIs))
	return nil
}

// apply publishes rt and records its registry snapshot.
func (s *Server) apply(ctx context.Context, rt *gateway.Runtime) {
	s.gw.Swap(rt)
	s.applyDiscovery(rt)
	s.metrics.ConfigGeneration.Inc()
	s.metrics.ConfigLastOK.SetToCurrentTime()
	for _, w := range rt.Warnings {
		s.log.Warn("config warning", "problem", w.String())
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, created, err := s.store.SaveSnapshot(sctx, rt.Registry.Snapshot()); err != nil {
		// Serving does not depend on the inventory history; say so loudly
		// and go on.
		s.log.Error("registry snapshot not saved", "error", err.Error())
	} else if created {
		s.log.Info("registry snapshot saved", "apis", len(rt.Registry.APIs))
	}
}

func restartOnlyChanges(old, cur *config.Config) []string {
	var out []string
	if old.Listen.HTTPS != cur.Listen.HTTPS || old.Listen.HTTP != cur.Listen.HTTP || old.Listen.AllowPlaintext != cur.Listen.AllowPlaintext {
		out = append(out, "listen")
	}
	if old.Listen.TLS.MinVersion != cur.Listen.TLS.MinVersion {
		out = append(out, "listen.tls.min_version")
	}
	if old.Admin.Listen != cur.Admin.Listen {
		out = append(out, "admin.listen")
	}
	if old.Store != cur.Store {
		out = append(out, "store")
	}
	ol, cl := old.Limits, cur.Limits
	if ol.ReadHeaderTimeout != cl.ReadHeaderTimeout || ol.ReadTimeout != cl.ReadTimeout || ol.WriteTimeout != cl.WriteTimeout || ol.IdleTimeout != cl.IdleTimeout {
		out = append(out, "limits (server timeouts)")
	}
	if !old.Audit.SameAs(cur.Audit) {
		out = append(out, "audit")
	}
	return out
}

// Wait blocks until ctx is done or a listener fails, then shuts down.
func (s *Server) Wait(ctx context.Context) error {
	var err error
	select {
	case <-ctx.Done():
	case err = <-s.errc:
		s.log.Error("listener failed", "error", err.Error())
	}
	s.Close()
	return err
}

// Close stops accepting, lets in-flight requests finish (up to the grace
// period), and releases the store.
func (s *Server) Close() {
	select {
	case <-s.done:
		return
	default:
		close(s.done)
	}
	s.ready.Store(false)
	if s.watcher != nil {
		s.watcher.close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), gateway.ShutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range []*http.Server{s.https, s.plain, s.adminSrv} {
		if srv == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = srv.Shutdown(ctx) }()
	}
	wg.Wait()
	s.closeAudit()
	if s.cancel != nil {
		s.cancel()
	}
	if s.notifier != nil {
		_ = s.notifier.Close()
	}
	s.gw.CloseLimits()
	s.stopDiscovery()
	if s.store != nil {
		_ = s.store.Close()
	}
}

// HTTPSAddr is the data-plane TLS listener's address.
func (s *Server) HTTPSAddr() string { return s.httpsLn.Addr().String() }

// HTTPAddr is the plain listener's address, or "".
func (s *Server) HTTPAddr() string {
	if s.plainLn == nil {
		return ""
	}
	return s.plainLn.Addr().String()
}

// AdminAddr is the admin listener's address.
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// Metrics exposes the process metrics (for tests and the CLI).
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// Gateway exposes the data plane (for tests).
func (s *Server) Gateway() *gateway.Gateway { return s.gw }

// Revocations exposes the revocation list (for tests and the incident tools).
func (s *Server) Revocations() *revoke.List { return s.revocations }

// Store exposes the store (for tests and admin tools).
func (s *Server) Store() store.Store { return s.store }

func slogLogger(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelWarn)
}
