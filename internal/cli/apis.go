package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/govern"
	"github.com/gatehouse/gatehouse/internal/registry"
)

func newAPIsCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "apis",
		Short: "List and show the API registry: owners, classification, lifecycle",
		Long: `The registry is the apis: section of the config: every API version with its
owner, exposure, data sensitivity, criticality, data flows, lifecycle, deprecation
schedule and last security review. 'list' gives one line per version; 'show'
gives everything about one API, with its operations from the OpenAPI spec.`,
		Example: `  gatehouse apis list -c examples/quickstart/gatehouse.yaml
  gatehouse apis list --lifecycle deprecated -o json
  gatehouse apis show orders v1`,
	}
	cmd.PersistentFlags().StringVarP(&cfgPath, "config", "c", "gatehouse.yaml", "config file or folder of *.yaml files")
	cmd.AddCommand(newAPIsListCmd(&cfgPath), newAPIsShowCmd(&cfgPath))
	return cmd
}

// apiView is one registry entry as the CLI prints it.
type apiView struct {
	Name        string            `json:"name"`
	Version     string            `json:"version"`
	Description string            `json:"description,omitempty"`
	UseCase     string            `json:"use_case,omitempty"`
	OwnerTeam   string            `json:"owner_team,omitempty"`
	Contact     string            `json:"owner_contact,omitempty"`
	Exposure    string            `json:"exposure"`
	Sensitivity string            `json:"sensitivity"`
	Criticality string            `json:"criticality,omitempty"`
	Lifecycle   string            `json:"lifecycle"`
	Deprecated  string            `json:"deprecated_on,omitempty"`
	Sunset      string            `json:"sunset,omitempty"`
	Successor   string            `json:"successor,omitempty"`
	ReviewedOn  string            `json:"reviewed_on,omitempty"`
	ReviewedBy  string            `json:"reviewed_by,omitempty"`
	ReviewDue   bool              `json:"review_overdue"`
	Host        string            `json:"host,omitempty"`
	BasePath    string            `json:"base_path"`
	DataFlows   []config.DataFlow `json:"data_flows,omitempty"`
	Operations  []opView          `json:"operations,omitempty"`
	// Traffic is from the audit index, by window (24h, 7d, 30d); absent
	// when the config keeps no audit trail.
	Traffic map[string]*govern.APITraffic `json:"traffic,omitempty"`
}

type opView struct {
	ID     string `json:"operation_id"`
	Method string `json:"method"`
	Path   string `json:"path"`
}

func viewOf(a config.API, now time.Time) apiView {
	v := apiView{Name: a.Name, Version: a.Version, Description: a.Description, UseCase: a.UseCase,
		OwnerTeam: a.Owner.Team, Contact: a.Owner.Contact, Exposure: a.Exposure, Sensitivity: a.Sensitivity,
		Criticality: a.Criticality, Lifecycle: a.Lifecycle, Deprecated: a.Deprecation.On, Sunset: a.Deprecation.Sunset,
		Successor: a.Deprecation.Successor, ReviewedOn: a.Reviewed.On, ReviewedBy: a.Reviewed.By,
		Host: a.Route.Host, BasePath: a.Route.BasePath, DataFlows: a.DataFlows}
	if a.Lifecycle != "retired" {
		t, err := time.Parse(time.DateOnly, a.Reviewed.On)
		v.ReviewDue = err != nil || now.Sub(t) > config.ReviewOverdue
	}
	return v
}

// loadRegistry loads the config for reading only: warnings are not shown,
// errors are (the registry of an invalid config is not trustworthy).
func loadRegistry(cmd *cobra.Command, path string) (*config.Config, error) {
	loaded, err := config.Load(path, nil)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			ps.Sort()
			for _, p := range ps.Errors() {
				fmt.Fprintln(cmd.ErrOrStderr(), p.String())
			}
			return nil, fmt.Errorf("config %s is invalid (%d errors); run gatehouse config validate %s", path, len(ps.Errors()), path)
		}
		return nil, err
	}
	return loaded.Config, nil
}

func newAPIsListCmd(cfgPath *string) *cobra.Command {
	var output, lifecycle, exposure string
	cmd := &cobra.Command{
		Use:   "list [--lifecycle STATE] [--exposure KIND]",
		Short: "List every API version in the registry",
		Example: `  gatehouse apis list
  gatehouse apis list --exposure public -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			cfg, err := loadRegistry(cmd, *cfgPath)
			if err != nil {
				return err
			}
			now := time.Now()
			traffic := liveTraffic(cmd, cfg, now)
			views := []apiView{}
			for _, a := range cfg.APIs {
				if (lifecycle != "" && a.Lifecycle != lifecycle) || (exposure != "" && a.Exposure != exposure) {
					continue
				}
				v := viewOf(a, now)
				v.Traffic = traffic[a.Name+"@"+a.Version]
				views = append(views, v)
			}
			if output == "json" {
				return writeJSONTo(cmd.OutOrStdout(), map[string]any{"apis": views})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tLIFECYCLE\tEXPOSURE\tSENSITIVITY\tOWNER\tREVIEWED\tSUNSET\tBASE PATH\tREQ 24H\tERR 24H")
			for _, v := range views {
				reviewed := dash(v.ReviewedOn)
				if v.ReviewDue && v.ReviewedOn != "" {
					reviewed += " (overdue)"
				}
				req, errs := "-", "-"
				if d := v.Traffic["24h"]; d != nil {
					req, errs = fmt.Sprint(d.Requests), fmt.Sprintf("%.1f%%", d.ErrorRate)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Version, v.Lifecycle, v.Exposure,
					v.Sensitivity, dash(v.OwnerTeam), reviewed, dash(v.Sunset), v.BasePath, req, errs)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&lifecycle, "lifecycle", "", "only this lifecycle: design, active, deprecated or retired")
	cmd.Flags().StringVar(&exposure, "exposure", "", "only this exposure: internal, partner or public")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newAPIsShowCmd(cfgPath *string) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show NAME [VERSION]",
		Short: "Show one API's registry entry and operations (every version without VERSION)",
		Example: `  gatehouse apis show orders
  gatehouse apis show orders v1 -o json`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			cfg, err := loadRegistry(cmd, *cfgPath)
			if err != nil {
				return err
			}
			now := time.Now()
			traffic := liveTraffic(cmd, cfg, now)
			var views []apiView
			for _, a := range cfg.APIs {
				if a.Name != args[0] || (len(args) == 2 && a.Version != args[1]) {
					continue
				}
				v := viewOf(a, now)
				v.Traffic = traffic[a.Name+"@"+a.Version]
				if spec, err := registry.LoadSpec(a.Spec); err == nil {
					for _, o := range spec.Operations {
						v.Operations = append(v.Operations, opView{o.ID, o.Method, joinPath(a.Route.BasePath, o.Path)})
					}
				}
				views = append(views, v)
			}
			if len(views) == 0 {
				return fmt.Errorf("no API %s in the registry", strings.Join(args, " "))
			}
			if output == "json" {
				return writeJSONTo(cmd.OutOrStdout(), map[string]any{"apis": views})
			}
			for i, v := range views {
				if i > 0 {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				printAPI(cmd.OutOrStdout(), v)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func printAPI(w io.Writer, v apiView) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, val string) {
		fmt.Fprintf(tw, "%s:\t%s\n", k, dash(strings.TrimSpace(strings.TrimSuffix(val, "<>"))))
	}
	row("API", v.Name+" "+v.Version)
	row("Description", v.Description)
	row("Use case", v.UseCase)
	row("Owner", strings.TrimSpace(v.OwnerTeam+" <"+v.Contact+">"))
	row("Exposure", v.Exposure)
	row("Sensitivity", v.Sensitivity)
	row("Criticality", v.Criticality)
	row("Lifecycle", v.Lifecycle)
	if v.Deprecated != "" || v.Sunset != "" {
		row("Deprecated on", v.Deprecated)
		row("Sunset", v.Sunset)
		row("Successor", v.Successor)
	}
	review := strings.TrimSpace(v.ReviewedOn + " by " + v.ReviewedBy)
	if v.ReviewedOn == "" {
		review = "never"
	}
	if v.ReviewDue {
		review += " (overdue)"
	}
	row("Security review", review)
	row("Route", v.Host+v.BasePath)
	for _, f := range v.DataFlows {
		row("Data flow", strings.TrimSpace(fmt.Sprintf("%s %s %s", dash(f.Direction), f.System, f.Data)))
	}
	tw.Flush()
	if v.Traffic != nil {
		fmt.Fprintln(w, "Traffic:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  WINDOW\tREQUESTS\tCONSUMERS\tDENIED\tERRORS\tERROR RATE")
		for _, win := range govern.Windows {
			if d := v.Traffic[win.Name]; d != nil {
				fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%.1f%%\n", win.Name, d.Requests, d.Consumers, d.Denied, d.Errors, d.ErrorRate)
			}
		}
		tw.Flush()
	}
	if len(v.Operations) > 0 {
		fmt.Fprintln(w, "Operations:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, o := range v.Operations {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", o.Method, o.Path, o.ID)
		}
		tw.Flush()
	}
}

func joinPath(base, p string) string {
	if base == "/" {
		return p
	}
	return base + p
}

// liveTraffic reads per-API figures from the audit index; nil (and a note
// on stderr) when there is no audit trail or the store cannot be read.
func liveTraffic(cmd *cobra.Command, cfg *config.Config, now time.Time) map[string]map[string]*govern.APITraffic {
	if cfg.Audit.Dir == "" {
		return nil
	}
	ctx, st, err := openStore(cmd, cfg)
	if err != nil {
		fmt.Fprintln(cmd.ErrOrStderr(), "traffic figures unavailable:", err)
		return nil
	}
	defer st.Close()
	t, err := govern.LiveTraffic(ctx, st, now)
	if err != nil {
		fmt.Fprintln(cmd.ErrOrStderr(), "traffic figures unavailable:", err)
		return nil
	}
	return t
}
