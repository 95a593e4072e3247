package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/govern"
	"github.com/gatehouse/gatehouse/internal/store"
)

// trafficSource is the observed traffic for audits: the store's audit
// index when the config keeps an audit trail, nil otherwise (the traffic
// rules are then reported as skipped rather than guessed).
func trafficSource(cfg *config.Config, st store.Store) govern.Traffic {
	if cfg.Audit.Dir == "" {
		return nil
	}
	return govern.StoreTraffic{Stats: st}
}

func newAuditCmd() *cobra.Command {
	var cfgPath, output, failOn string
	var summary, noRecord, all bool
	cmd := &cobra.Command{
		Use:   "audit [--summary] [--fail-on high] [-o text|json]",
		Short: "Report governance findings: stale credentials, unowned or unreviewed APIs, idle grants",
		Long: `Evaluate the governance rules over the registry (config), the credentials in the
store and the traffic the gateway observed, print the findings with rule ID,
severity, subject, evidence and the fix, and record them in the store so each
finding keeps its first-seen, last-seen and resolved times across runs.

Exit status: 0 when no open finding is at or above --fail-on, 3 when one is
(for CI), 1 on errors. --summary prints the executive view instead: APIs by
exposure and sensitivity, the share with an owner and a recent review, open
findings by severity and the share of traffic on deprecated versions.
Thresholds come from the config's governance: section.`,
		Example: `  gatehouse audit -c examples/quickstart/gatehouse.yaml
  gatehouse audit --fail-on medium -o json > findings.json
  gatehouse audit --summary`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if govern.SeverityRank(failOn) < 0 && failOn != "none" {
				return fmt.Errorf("--fail-on: want one of %s or none", strings.Join(govern.Severities, ", "))
			}
			cfg, err := loadRegistry(cmd, cfgPath)
			if err != nil {
				return err
			}
			ctx, st, err := openStore(cmd, cfg)
			if err != nil {
				return err
			}
			defer st.Close()
			creds, err := st.ListCredentials(ctx, store.CredentialFilter{})
			if err != nil {
				return err
			}
			now := time.Now()
			pol := govern.PolicyFrom(cfg.Governance)
			traffic := trafficSource(cfg, st)
			res, err := govern.Evaluate(ctx, govern.Input{Config: cfg, Credentials: creds, Traffic: traffic, Policy: pol, Now: now})
			if err != nil {
				return err
			}
			findings := res.Findings
			if !noRecord {
				if _, _, err := st.SyncFindings(ctx, now, res.Findings); err != nil {
					return err
				}
				// The stored view carries first-seen and resolved times.
				if findings, err = st.ListFindings(ctx, all); err != nil {
					return err
				}
				sortFindings(findings)
			}
			out := cmd.OutOrStdout()
			if summary {
				s := govern.Summarize(cfg, res, findings, pol, now, traffic != nil)
				incs, err := st.ListIncidents(ctx, false)
				if err != nil {
					return err
				}
				s.OpenIncidents = len(incs)
				if output == "json" {
					return writeJSONTo(out, s)
				}
				printSummary(out, s)
			} else if output == "json" {
				if err := writeJSONTo(out, map[string]any{"findings": findingsJSON(findings), "skipped": res.Skipped}); err != nil {
					return err
				}
			} else {
				printFindings(out, findings, res.Skipped)
			}
			if failOn != "none" {
				for _, f := range findings {
					if f.ResolvedAt.IsZero() && govern.SeverityRank(f.Severity) >= govern.SeverityRank(failOn) {
						return ExitError{Code: 3}
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "gatehouse.yaml", "config file or folder of *.yaml files")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVar(&failOn, "fail-on", "high", "exit 3 when an open finding has this severity or higher (low, medium, high, critical, none)")
	cmd.Flags().BoolVar(&summary, "summary", false, "print the executive summary instead of the findings")
	cmd.Flags().BoolVar(&noRecord, "no-record", false, "do not record this run's findings in the store")
	cmd.Flags().BoolVar(&all, "all", false, "also list resolved findings")
	return cmd
}

func sortFindings(fs []store.Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.ResolvedAt.IsZero() != b.ResolvedAt.IsZero() {
			return a.ResolvedAt.IsZero()
		}
		if govern.SeverityRank(a.Severity) != govern.SeverityRank(b.Severity) {
			return govern.SeverityRank(a.Severity) > govern.SeverityRank(b.Severity)
		}
		return a.Rule < b.Rule || (a.Rule == b.Rule && a.Subject < b.Subject)
	})
}

type findingJSON struct {
	Rule       string     `json:"id"`
	Severity   string     `json:"severity"`
	Subject    string     `json:"subject"`
	Title      string     `json:"title"`
	Evidence   string     `json:"evidence"`
	Fix        string     `json:"fix"`
	FirstSeen  *time.Time `json:"first_seen,omitempty"`
	LastSeen   *time.Time `json:"last_seen,omitempty"`
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
}

func findingsJSON(fs []store.Finding) []findingJSON {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	out := make([]findingJSON, 0, len(fs))
	for _, f := range fs {
		out = append(out, findingJSON{f.Rule, f.Severity, f.Subject, f.Title, f.Evidence, f.Fix,
			opt(f.FirstSeen), opt(f.LastSeen), opt(f.ResolvedAt)})
	}
	return out
}

func printFindings(w io.Writer, fs []store.Finding, skipped []string) {
	if len(fs) == 0 {
		fmt.Fprintln(w, "No findings.")
	}
	for _, f := range fs {
		state := ""
		if !f.FirstSeen.IsZero() {
			state = " (open since " + f.FirstSeen.Format(time.DateOnly) + ")"
		}
		if !f.ResolvedAt.IsZero() {
			state = " (resolved " + f.ResolvedAt.Format(time.DateOnly) + ")"
		}
		fmt.Fprintf(w, "%-8s %s %s%s\n", strings.ToUpper(f.Severity), f.Rule, f.Subject, state)
		fmt.Fprintf(w, "         %s: %s\n         fix: %s\n", f.Title, f.Evidence, f.Fix)
	}
	for _, s := range skipped {
		fmt.Fprintln(w, "skipped: "+s)
	}
}

func printSummary(w io.Writer, s govern.Summary) {
	fmt.Fprintf(w, "APIs (live): %d\n", s.APIs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  EXPOSURE\tPUBLIC\tINTERNAL\tCONFIDENTIAL\tRESTRICTED")
	for _, e := range []string{"public", "partner", "internal"} {
		m := s.ByExposure[e]
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\n", e, m["public"], m["internal"], m["confidential"], m["restricted"])
	}
	tw.Flush()
	fmt.Fprintf(w, "With an owner: %.0f%%\nReviewed within policy: %.0f%%\n", s.WithOwnerPct, s.ReviewedPct)
	fmt.Fprint(w, "Open findings:")
	for i := len(govern.Severities) - 1; i >= 0; i-- {
		sev := govern.Severities[i]
		fmt.Fprintf(w, " %s %d", sev, s.OpenBySeverity[sev])
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Open incidents: %d\n", s.OpenIncidents)
	switch {
	case s.DeprecatedShare != nil:
		fmt.Fprintf(w, "Traffic on deprecated versions: %.1f%%\n", *s.DeprecatedShare)
	case !s.TrafficAvailable:
		fmt.Fprintln(w, "Traffic on deprecated versions: unknown (no traffic source)")
	default:
		fmt.Fprintln(w, "Traffic on deprecated versions: no traffic in the window")
	}
}
