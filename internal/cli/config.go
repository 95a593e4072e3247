package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/gateway"
	"github.com/gatehouse/gatehouse/internal/metrics"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check a configuration or print its JSON Schema",
		Long:  "Work with Gatehouse configuration files without starting the gateway.",
		Example: `  gatehouse config validate gatehouse.yaml
  gatehouse config schema > gatehouse.schema.json`,
	}
	cmd.AddCommand(newConfigValidateCmd(), newConfigSchemaCmd())
	return cmd
}

func newConfigValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE|DIR",
		Short: "Report every problem in a config as file:line: path: message",
		Long: `Load a config exactly as 'serve' would (schema, semantic rules, OpenAPI specs,
routes, TLS files) and report every problem at once, one per line as
file:line: path: message. Warnings are printed too but do not fail.
Exits 0 when the config is valid, 1 otherwise.`,
		Example: `  gatehouse config validate examples/quickstart/gatehouse.yaml
  gatehouse config validate ./gatehouse.d/`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return validateConfig(args[0], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
}

func validateConfig(path string, stdout, stderr io.Writer) error {
	// Compile without serving: specs, routes and certificates are checked
	// the same way serve checks them.
	gw := gateway.New(metrics.New(version()), slog.New(slog.DiscardHandler))
	rt, err := gw.LoadAndCompile(path, nil)
	if err == nil {
		ws := rt.Warnings
		ws.Sort()
		for _, w := range ws {
			fmt.Fprintln(stderr, w.String())
		}
		fmt.Fprintf(stdout, "%s: valid (%d APIs, %d warnings)\n", path, len(rt.Registry.APIs), len(ws))
		return nil
	}
	var ps config.Problems
	if errors.As(err, &ps) {
		ps.Sort()
		for _, p := range ps {
			fmt.Fprintln(stderr, p.String())
		}
		fmt.Fprintf(stderr, "%s: invalid (%d errors)\n", path, len(ps.Errors()))
		return ExitError{Code: 1}
	}
	return err
}

func newConfigSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "schema",
		Short:   "Print the config's JSON Schema",
		Long:    "Print the JSON Schema (draft 2020-12) every Gatehouse config must satisfy, for editors and CI.",
		Example: "  gatehouse config schema > gatehouse.schema.json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(config.Schema())
			return err
		},
	}
}
