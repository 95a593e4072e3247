package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
)

// startAudit opens the audit log when the config asks for one. The log
// directory and mode are fixed for the process: a change needs a restart.
func (s *Server) startAudit(cfg *config.Config) error {
	a := cfg.Audit
	if !a.Enabled() {
		return nil
	}
	signer, err := audit.LoadSigner(a.SigningKeyFile)
	if err != nil {
		return err
	}
	w, err := audit.Open(audit.Options{Dir: a.Dir, Mode: audit.Mode(a.Mode), Signer: signer,
		CheckpointEvery: a.CheckpointEvery, CheckpointInterval: a.CheckpointInterval.D(),
		SegmentMaxBytes: a.SegmentMaxBytes, SegmentMaxAge: a.SegmentMaxAge.D(), QueueSize: a.QueueSize, Log: s.log})
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if err := audit.RegisterMetrics(s.metrics.Registry, w); err != nil {
		_ = w.Close()
		return fmt.Errorf("audit metrics: %w", err)
	}
	s.auditW = w
	// Only the query's parameter names are kept, and what is left goes
	// through the redaction engine (e-mails, keys or tokens in a path).
	s.gw.SetAudit(w, func(path, rawQuery string) string {
		out := audit.QueryNamesOnly(path, rawQuery)
		if r := s.redaction.Redactor(); r != nil {
			out = r.Text(out)
		}
		return out
	})
	if a.Index != "off" {
		s.startAuditIndex(cfg)
	}
	if err := s.startExporters(cfg); err != nil {
		s.closeAudit()
		return err
	}
	return nil
}

// closeAudit stops the indexer and flushes the log with a final checkpoint;
// it runs after the listeners have drained.
func (s *Server) closeAudit() {
	if s.auditW == nil {
		return
	}
	if err := s.auditW.Close(); err != nil {
		s.log.Error("audit log close", "error", err.Error())
	}
	s.stopAuditIndex()
}

// adminAudit writes one admin action, or is nil without an audit log.
func (s *Server) adminAudit() func(*audit.AdminRecord) error {
	return func(r *audit.AdminRecord) error {
		if s.auditW == nil {
			return nil
		}
		return s.auditW.WriteAdmin(r)
	}
}

// auditIndex copies the signed log into the store in the background.
type auditIndex struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *Server) startAuditIndex(cfg *config.Config) {
	ctx, cancel := context.WithCancel(s.ctx)
	ix := &auditIndex{cancel: cancel, done: make(chan struct{})}
	s.auditIdx = ix
	dir, every := cfg.Audit.Dir, cfg.Audit.IndexInterval.D()
	go func() {
		defer close(ix.done)
		t := time.NewTicker(every)
		defer t.Stop()
		failing := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			// A store outage only delays the index: the log keeps every
			// record and the next run resumes from the stored position.
			_, err := audit.Index(ctx, dir, s.store)
			switch {
			case err != nil && !failing && ctx.Err() == nil:
				s.log.Warn("audit index behind: store unavailable", "error", err.Error())
				failing = true
			case err == nil && failing:
				s.log.Info("audit index caught up")
				failing = false
			}
		}
	}()
}

// stopAuditIndex stops the loop and indexes what the final flush wrote.
func (s *Server) stopAuditIndex() {
	if s.auditIdx == nil {
		return
	}
	s.auditIdx.cancel()
	<-s.auditIdx.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := audit.Index(ctx, s.startCfg.Audit.Dir, s.store); err != nil {
		s.log.Warn("final audit index", "error", err.Error())
	}
}

// startExporters ships the log to each configured destination until the
// server stops. They read the log from disk, so they never slow a request.
func (s *Server) startExporters(cfg *config.Config) error {
	for _, ec := range cfg.Audit.Exporters {
		var x audit.Exporter
		switch ec.Type {
		case "stdout":
			x = &audit.WriterExporter{Label: ec.Name, W: os.Stdout}
		case "file":
			x = &audit.FileExporter{Label: ec.Name, Path: ec.Path}
		case "http":
			x = &audit.HTTPExporter{Label: ec.Name, URL: ec.URL, Client: &http.Client{Timeout: 30 * time.Second}}
		case "syslog":
			sx := &audit.SyslogExporter{Label: ec.Name, Address: ec.Address}
			sx.Hostname, _ = os.Hostname()
			if ec.TLS {
				tc := &tls.Config{MinVersion: tls.VersionTLS12}
				if ec.CAFile != "" {
					pem, err := os.ReadFile(ec.CAFile)
					if err != nil {
						return fmt.Errorf("audit exporter %s: %w", ec.Name, err)
					}
					tc.RootCAs = x509.NewCertPool()
					if !tc.RootCAs.AppendCertsFromPEM(pem) {
						return fmt.Errorf("audit exporter %s: no certificate in %s", ec.Name, ec.CAFile)
					}
				}
				sx.TLS = tc
			}
			x = sx
		default:
			return fmt.Errorf("audit exporter %s: unknown type %q", ec.Name, ec.Type)
		}
		go audit.RunExporter(s.ctx, x, audit.ExportOptions{Dir: cfg.Audit.Dir, Log: s.log})
	}
	return nil
}
