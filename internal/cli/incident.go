package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/incident"
	"github.com/gatehouse/gatehouse/internal/revoke"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/store"
)

func newIncidentCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "incident",
		Short: "Open, follow and close security incidents: the cluster-wide kill switch",
		Long: `An incident targets a partner, a consumer or a single credential. Opening one
can revoke every credential in that scope (--revoke), block the scope's networks
and the addresses its credentials were last used from (--block-ips) and notify
the partner's security contact (--notify). Revocations and blocks go to the
store's revocation list, which every gateway sharing the store enforces within
a second (at once with Redis). Every action lands on the incident's timeline.

Closing an incident never restores access. 'restore' is the explicit step that
re-enables the partner or consumer and unblocks its networks; credentials the
incident revoked stay revoked (issue new ones). See docs/incident-response.md.`,
		Example: `  gatehouse incident open --partner acme --revoke --block-ips --notify --reason "key leaked on GitHub"
  gatehouse incident list
  gatehouse incident show inc-20261127-abc123
  gatehouse incident note inc-20261127-abc123 "acme confirmed; rotating"
  gatehouse incident close inc-20261127-abc123 --note "new keys issued"
  gatehouse incident restore inc-20261127-abc123`,
	}
	cmd.PersistentFlags().StringVarP(&cfgPath, "config", "c", "gatehouse.yaml", "config file or folder of *.yaml files")
	cmd.AddCommand(newIncidentOpenCmd(&cfgPath), newIncidentListCmd(&cfgPath), newIncidentShowCmd(&cfgPath),
		newIncidentNoteCmd(&cfgPath), newIncidentCloseCmd(&cfgPath), newIncidentRestoreCmd(&cfgPath))
	return cmd
}

// withIncidents opens the store and a revocation list that notifies the
// running gateways (through Redis when the config names it).
func withIncidents(cmd *cobra.Command, cfgPath string, fn func(context.Context, *incident.Service) error) error {
	cfg, err := loadRegistry(cmd, cfgPath)
	if err != nil {
		return err
	}
	ctx, st, err := openStore(cmd, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	log := slog.Default()
	o := revoke.Options{Logger: log}
	if cfg.Redis != "" {
		n, err := revoke.NewRedisNotifier(cfg.Redis, server.RedisPrefix, log)
		if err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		defer n.Close()
		o.Notifier = n
	}
	svc := &incident.Service{Store: st, Revocations: revoke.New(st, o), Config: cfg, Log: log}
	return fn(ctx, svc)
}

func newIncidentOpenCmd(cfgPath *string) *cobra.Command {
	var partner, consumer, credential, reason, actorName string
	var doRevoke, block, notify bool
	cmd := &cobra.Command{
		Use:   "open (--partner P | --consumer C | --credential ID) --reason TEXT [--revoke] [--block-ips] [--notify]",
		Short: "Open an incident and revoke, block and notify in its scope",
		Example: `  gatehouse incident open --partner acme --revoke --block-ips --notify --reason "credential stuffing from acme's network"
  gatehouse incident open --credential 3fQk9ZtB1xW7pLmA --revoke --reason "key pasted in a public issue"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			scope, subject, err := oneScope(partner, consumer, credential)
			if err != nil {
				return err
			}
			return withIncidents(cmd, *cfgPath, func(ctx context.Context, svc *incident.Service) error {
				inc, err := svc.Open(ctx, incident.OpenRequest{Scope: scope, Subject: subject, Reason: reason, Actor: actor(actorName),
					Revoke: doRevoke, BlockIPs: block, Notify: notify})
				if inc.ID == "" {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), inc.ID)
				printTimeline(cmd.ErrOrStderr(), inc.Events)
				if err != nil {
					return fmt.Errorf("incident %s opened, but some actions failed (see the timeline): %w", inc.ID, err)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&partner, "partner", "", "partner the incident is about")
	cmd.Flags().StringVar(&consumer, "consumer", "", "consumer the incident is about")
	cmd.Flags().StringVar(&credential, "credential", "", "credential ID the incident is about")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required): goes on the timeline and to the partner")
	cmd.Flags().BoolVar(&doRevoke, "revoke", false, "revoke every credential in scope (and the partner or consumer itself)")
	cmd.Flags().BoolVar(&block, "block-ips", false, "block the partner's declared networks and the addresses its credentials were last used from")
	cmd.Flags().BoolVar(&notify, "notify", false, "POST a notice to the partner's security_contact.webhook")
	cmd.Flags().StringVar(&actorName, "actor", "", "who is acting, recorded on the timeline (default: cli:$USER)")
	return cmd
}

func oneScope(partner, consumer, credential string) (scope, subject string, err error) {
	n := 0
	for _, v := range []string{partner, consumer, credential} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return "", "", errors.New("give exactly one of --partner, --consumer or --credential")
	}
	switch {
	case partner != "":
		return incident.ScopePartner, partner, nil
	case consumer != "":
		return incident.ScopeConsumer, consumer, nil
	}
	return incident.ScopeCredential, credential, nil
}

func newIncidentListCmd(cfgPath *string) *cobra.Command {
	var all bool
	var output string
	cmd := &cobra.Command{
		Use:     "list [--all]",
		Short:   "List open incidents (all of them with --all)",
		Example: `  gatehouse incident list --all -o json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return withIncidents(cmd, *cfgPath, func(ctx context.Context, svc *incident.Service) error {
				list, err := svc.Store.ListIncidents(ctx, all)
				if err != nil {
					return err
				}
				if output == "json" {
					return writeJSONTo(cmd.OutOrStdout(), map[string]any{"incidents": incidentsJSON(list)})
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATUS\tSCOPE\tOPENED\tBY\tREASON")
				for _, inc := range list {
					fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\n", inc.ID, status(inc), inc.Scope, inc.Subject,
						inc.OpenedAt.Format(time.RFC3339), inc.OpenedBy, inc.Reason)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "include closed incidents")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newIncidentShowCmd(cfgPath *string) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "show ID",
		Short:   "Show an incident with its timeline",
		Example: `  gatehouse incident show inc-20261127-abc123`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return withIncidents(cmd, *cfgPath, func(ctx context.Context, svc *incident.Service) error {
				inc, err := svc.Store.GetIncident(ctx, args[0])
				if err != nil {
					return err
				}
				if output == "json" {
					return writeJSONTo(cmd.OutOrStdout(), incidentsJSON([]store.Incident{inc})[0])
				}
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "%s  %s  %s %s\nreason: %s\n", inc.ID, status(inc), inc.Scope, inc.Subject, inc.Reason)
				printTimeline(w, inc.Events)
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newIncidentNoteCmd(cfgPath *string) *cobra.Command {
	var actorName string
	cmd := &cobra.Command{
		Use:     "note ID TEXT",
		Short:   "Add a note to an incident's timeline",
		Example: `  gatehouse incident note inc-20261127-abc123 "partner confirmed the leak"`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withIncidents(cmd, *cfgPath, func(ctx context.Context, svc *incident.Service) error {
				return svc.Note(ctx, args[0], actor(actorName), args[1])
			})
		},
	}
	cmd.Flags().StringVar(&actorName, "actor", "", "who is writing (default: cli:$USER)")
	return cmd
}

func newIncidentCloseCmd(cfgPath *string) *cobra.Command {
	var note, actorName string
	cmd := &cobra.Command{
		Use:     "close ID [--note TEXT]",
		Short:   "Close an incident (access stays revoked; see restore)",
		Example: `  gatehouse incident close inc-20261127-abc123 --note "keys rotated, root cause fixed"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withIncidents(cmd, *cfgPath, func(ctx context.Context, svc *incident.Service) error {
				if err := svc.Close(ctx, args[0], actor(actorName), note); err != nil {
					return err
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "closed; revocations and blocks stay in force (gatehouse incident restore "+args[0]+" re-enables)")
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&note, "note", "", "closing note")
	cmd.Flags().StringVar(&actorName, "actor", "", "who is closing (default: cli:$USER)")
	return cmd
}

func newIncidentRestoreCmd(cfgPath *string) *cobra.Command {
	var actorName string
	cmd := &cobra.Command{
		Use:   "restore ID",
		Short: "Re-enable the incident's partner or consumer and unblock its networks",
		Long: `Restore lifts the partner or consumer revocation and the network blocks the
incident made, cluster-wide, and records it on the timeline. Credentials the
incident revoked stay revoked: they may be in an attacker's hands.`,
		Example: `  gatehouse incident restore inc-20261127-abc123`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withIncidents(cmd, *cfgPath, func(ctx context.Context, svc *incident.Service) error {
				lifted, err := svc.Restore(ctx, args[0], actor(actorName))
				for _, l := range lifted {
					fmt.Fprintln(cmd.OutOrStdout(), "lifted "+l)
				}
				return err
			})
		},
	}
	cmd.Flags().StringVar(&actorName, "actor", "", "who is restoring (default: cli:$USER)")
	return cmd
}

func status(inc store.Incident) string {
	if inc.ClosedAt.IsZero() {
		return "open"
	}
	return "closed"
}

func printTimeline(w io.Writer, evs []store.IncidentEvent) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, ev := range evs {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", ev.At.Format(time.RFC3339), ev.Actor, ev.Action, ev.Detail)
	}
	tw.Flush()
}

type incidentJSON struct {
	ID       string          `json:"id"`
	Status   string          `json:"status"`
	Scope    string          `json:"scope"`
	Subject  string          `json:"subject"`
	Reason   string          `json:"reason"`
	OpenedAt time.Time       `json:"opened_at"`
	OpenedBy string          `json:"opened_by"`
	ClosedAt *time.Time      `json:"closed_at,omitempty"`
	Timeline []timelineEntry `json:"timeline,omitempty"`
}

type timelineEntry struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Detail string    `json:"detail"`
}

func incidentsJSON(list []store.Incident) []incidentJSON {
	out := make([]incidentJSON, 0, len(list))
	for _, inc := range list {
		j := incidentJSON{ID: inc.ID, Status: status(inc), Scope: inc.Scope, Subject: inc.Subject, Reason: inc.Reason,
			OpenedAt: inc.OpenedAt, OpenedBy: inc.OpenedBy}
		if !inc.ClosedAt.IsZero() {
			t := inc.ClosedAt
			j.ClosedAt = &t
		}
		for _, ev := range inc.Events {
			j.Timeline = append(j.Timeline, timelineEntry{ev.At, ev.Actor, ev.Action, strings.TrimSpace(ev.Detail)})
		}
		out = append(out, j)
	}
	return out
}
