package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/server"
)

func newServeCmd() *cobra.Command {
	var cfgPath string
	var watch bool
	var cpuProfile string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway (data plane and admin listener)",
		Long: `Run the gateway: the HTTPS data plane, an optional plain-HTTP listener that
redirects to HTTPS, and the admin listener with /healthz, /readyz, /metrics and
the token-protected admin API.

The config is reloaded on SIGHUP and when its files (or the OpenAPI specs they
name) change. A config with problems is rejected, logged and counted in
gatehouse_config_reloads_total{result="failure"}; the running one keeps serving.
SIGINT or SIGTERM stops accepting connections and lets requests in flight finish.`,
		Example: `  gatehouse serve --config examples/quickstart/gatehouse.yaml
  gatehouse serve -c /etc/gatehouse/ --log-level debug
  kill -HUP $(pidof gatehouse)   # reload`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cpuProfile != "" {
				stopProfile, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stopProfile()
			}
			return serve(cmd.Context(), cfgPath, watch)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "gatehouse.yaml", "config file or folder of *.yaml files")
	cmd.Flags().BoolVar(&watch, "watch", true, "reload when config or spec files change")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a Go CPU profile to this file until shutdown (performance work; the profile holds no request data)")
	return cmd
}

// startCPUProfile profiles the whole process until the returned func runs.
// A flag rather than a pprof endpoint: nothing extra listens, and only
// whoever starts the process can turn it on.
func startCPUProfile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			slog.Error("cpu profile", "error", err)
		}
	}, nil
}

func serve(parent context.Context, cfgPath string, watch bool) error {
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.Default()
	srv, err := server.Start(ctx, server.Options{ConfigPath: cfgPath, Version: version(), Logger: log, Watch: watch})
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			ps.Sort()
			for _, p := range ps {
				fmt.Fprintln(os.Stderr, p.String())
			}
			return fmt.Errorf("config %s is invalid (%d errors); nothing started", cfgPath, len(ps.Errors()))
		}
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading config")
				_ = srv.Reload(ctx)
			}
		}
	}()
	return srv.Wait(ctx)
}
