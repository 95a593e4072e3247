package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/discover"
	"github.com/gatehouse/gatehouse/internal/gateway"
	"github.com/gatehouse/gatehouse/internal/metrics"
	"github.com/gatehouse/gatehouse/internal/registry"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/store"
)

func newDiscoverCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "discover",
		Short: "Report shadow, zombie and orphan endpoints; write a learned OpenAPI document",
		Long: `Compare the traffic 'gatehouse serve' observed (stored every discovery.flush_interval)
with the registry the config declares.

Every call is reduced to a host, a method and a path template: numbers, UUIDs,
long hex strings, dates and machine-made identifiers become {int}, {uuid},
{hex}, {date} and {str}; free-text segments with many values at one position
are merged into {str}.`,
		Example: `  gatehouse discover report -c gatehouse.yaml
  gatehouse discover report --json --orphan-days 60
  gatehouse discover openapi --host api.example.com -o learned.yaml`,
	}
	cmd.PersistentFlags().StringVarP(&cfgPath, "config", "c", "gatehouse.yaml", "config file or folder of *.yaml files")
	cmd.AddCommand(newDiscoverReportCmd(&cfgPath), newDiscoverOpenAPICmd(&cfgPath))
	return cmd
}

func newDiscoverReportCmd(cfgPath *string) *cobra.Command {
	var asJSON bool
	var orphanDays int
	cmd := &cobra.Command{
		Use:   "report [--json] [--orphan-days N]",
		Short: "List shadow, zombie and orphan endpoints",
		Long: `Shadow endpoints: traffic to templates no registered spec declares (including
declared paths called with an undeclared method).
Zombie endpoints: calls to operations of APIs whose lifecycle is deprecated or
retired, with the consumers and partners making them (calls to a retired API
are answered 404 before authentication, so their callers are anonymous).
Orphan operations: registered operations without traffic for --orphan-days.
Drift: requests that violated their operation's schema while validation ran in
report mode, by operation, over the last 30 days (read from the audit trail;
empty without one).

Exits 0 whatever it finds; use --json for machines.`,
		Example: `  gatehouse discover report
  gatehouse discover report -c /etc/gatehouse --json | jq '.shadow[]'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if orphanDays < 1 || orphanDays > 3650 {
				return errors.New("--orphan-days must be between 1 and 3650")
			}
			return withDiscovery(cmd, *cfgPath, "", func(ctx context.Context, reg *registry.Registry, obs []store.DiscoveredEndpoint, drift discover.DriftSource) error {
				rep, err := discover.Analyze(ctx, discover.NewCatalog(reg), obs, time.Now(), time.Duration(orphanDays)*24*time.Hour, drift)
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					return enc.Encode(rep)
				}
				printReport(cmd.OutOrStdout(), rep)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().IntVar(&orphanDays, "orphan-days", 30, "days without traffic that make a registered operation an orphan")
	return cmd
}

func newDiscoverOpenAPICmd(cfgPath *string) *cobra.Command {
	var host, output, title string
	var hostSet bool
	cmd := &cobra.Command{
		Use:   "openapi --host HOST [-o FILE]",
		Short: "Write what was observed on a host as an OpenAPI 3.1 document",
		Long: `Write the endpoints observed on one host as an OpenAPI 3.1 document (YAML):
paths, methods, path parameters named after the resource before them and typed
from the values seen, and observed counts under x-gatehouse-observed. Review it,
name things, add schemas, then register it as an API spec.

--host is the Host the calls named, without port; --host "" selects calls that
sent no Host.`,
		Example: `  gatehouse discover openapi --host api.example.com -o learned.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !hostSet {
				return errors.New("--host is required")
			}
			host = strings.TrimSuffix(strings.ToLower(host), ".")
			return withDiscovery(cmd, *cfgPath, host, func(ctx context.Context, _ *registry.Registry, obs []store.DiscoveredEndpoint, _ discover.DriftSource) error {
				doc, err := discover.LearnedOpenAPI(obs, discover.OpenAPIOptions{Host: host, Title: title, Now: time.Now()})
				if err != nil {
					return err
				}
				if output == "" || output == "-" {
					_, err = cmd.OutOrStdout().Write(doc)
					return err
				}
				if err := os.WriteFile(output, doc, 0o644); err != nil {
					return fmt.Errorf("write %s: %w", output, err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", output)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&host, "host", "", "host whose traffic to describe (required)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "file to write (default stdout)")
	cmd.Flags().StringVar(&title, "title", "", "info.title of the document")
	cmd.PreRun = func(cmd *cobra.Command, _ []string) { hostSet = cmd.Flags().Changed("host") }
	return cmd
}

// withDiscovery loads and compiles the config (for the registry), opens
// its store and lists the stored observations (of one host, when set; ""
// lists every host).
func withDiscovery(cmd *cobra.Command, cfgPath, host string, fn func(context.Context, *registry.Registry, []store.DiscoveredEndpoint, discover.DriftSource) error) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	gw := gateway.New(metrics.New(version()), slog.New(slog.DiscardHandler))
	rt, err := gw.LoadAndCompile(cfgPath, nil)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			ps.Sort()
			for _, p := range ps {
				fmt.Fprintln(cmd.ErrOrStderr(), p.String())
			}
			return fmt.Errorf("config %s is invalid (%d errors); run gatehouse config validate %s", cfgPath, len(ps.Errors()), cfgPath)
		}
		return err
	}
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	st, err := server.OpenStore(octx, rt.Config.Store)
	cancel()
	if err != nil {
		return err
	}
	defer st.Close()
	lctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	obs, err := st.ListDiscovery(lctx, store.DiscoveryFilter{Host: host})
	if err != nil {
		return err
	}
	var drift discover.DriftSource
	if rt.Config.Audit.Dir != "" {
		// Requests validation let through in report mode are flagged in
		// the audit trail; the last 30 days of them are the drift.
		drift = discover.AuditDrift{Stats: st, Since: time.Now().Add(-30 * 24 * time.Hour)}
	}
	return fn(ctx, rt.Registry, obs, drift)
}

func printReport(w io.Writer, r discover.Report) {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04")
	}
	since := "no traffic observed yet"
	if !r.ObservedSince.IsZero() {
		since = "observed since " + ts(r.ObservedSince)
	}
	fmt.Fprintf(w, "Discovery report, %s (%s)\n", ts(r.GeneratedAt), since)

	fmt.Fprintf(w, "\nShadow endpoints (%d): traffic no registered spec declares\n", len(r.Shadow))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(r.Shadow) > 0 {
		fmt.Fprintln(tw, "  HOST\tMETHOD\tTEMPLATE\tWHY\tCALLS\t2xx/3xx/4xx/5xx\tLAST SEEN")
	}
	for _, s := range r.Shadow {
		host := s.Host
		if host == "" {
			host = "(none)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%d/%d/%d/%d\t%s\n", host, s.Method, s.Template, s.Reason, s.Count,
			s.Status.S2xx, s.Status.S3xx, s.Status.S4xx, s.Status.S5xx, ts(s.LastSeen))
	}
	tw.Flush()

	fmt.Fprintf(w, "\nZombie endpoints (%d): deprecated or retired versions still called\n", len(r.Zombie))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(r.Zombie) > 0 {
		fmt.Fprintln(tw, "  API\tVERSION\tLIFECYCLE\tOPERATION\tCALLS\tLAST SEEN\tCALLERS")
	}
	for _, z := range r.Zombie {
		var cs []string
		for _, c := range z.Callers {
			name := c.Consumer
			if name == "" {
				name = "(anonymous)"
			}
			if c.Partner != "" {
				name += " [" + c.Partner + "]"
			}
			cs = append(cs, fmt.Sprintf("%s ×%d", name, c.Count))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s %s %s\t%d\t%s\t%s\n", z.API, z.Version, z.Lifecycle, z.OperationID, z.Method, z.Template,
			z.Count, ts(z.LastSeen), strings.Join(cs, ", "))
	}
	tw.Flush()

	fmt.Fprintf(w, "\nOrphan operations (%d): registered, no traffic for %d days\n", len(r.Orphans), r.OrphanDays)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(r.Orphans) > 0 {
		fmt.Fprintln(tw, "  API\tVERSION\tOPERATION\tMETHOD\tTEMPLATE\tLAST SEEN")
	}
	for _, o := range r.Orphans {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", o.API, o.Version, o.OperationID, o.Method, o.Template, ts(o.LastSeen))
	}
	tw.Flush()

	fmt.Fprintf(w, "\nDrift (%d): spec violations by operation", len(r.Drift))
	if len(r.Drift) == 0 {
		fmt.Fprint(w, " (fed by request validation in report mode)")
	}
	fmt.Fprintln(w)
	for _, d := range r.Drift {
		fmt.Fprintf(w, "  %s %s %s: %d request, %d response violations\n", d.API, d.Version, d.OperationID, d.RequestViolations, d.ResponseViolations)
	}
}
