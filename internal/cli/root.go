// Package cli wires Gatehouse's subcommands, one file each.
package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X .../internal/cli.Version=v1.2.3".
var Version = ""

// version returns the build's version: the linker flag, else the module
// version, else "dev".
func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// ExitError carries a process exit code without printing more.
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// NewRoot returns the gatehouse command tree.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	var logLevel string
	root := &cobra.Command{
		Use:   "gatehouse",
		Short: "Gatehouse: an API integration security gateway",
		Long: `Gatehouse sits in front of your APIs: it routes each call to the operation its
OpenAPI spec declares, over TLS, with safe limits, and records what happened.

Configuration is one YAML file (or a folder of them); see 'gatehouse config schema'.`,
		Example: `  gatehouse serve --config examples/quickstart/gatehouse.yaml
  gatehouse config validate gatehouse.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: want debug, info, warn or error")
			}
			slog.SetDefault(slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl})))
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error (JSON logs go to stderr)")
	root.AddCommand(newServeCmd(), newVersionCmd(), newConfigCmd())
	root.AddCommand(newKeysCmd())
	root.AddCommand(newDiscoverCmd())
	root.AddCommand(newAPIsCmd(), newAuditCmd(), newIncidentCmd())
	root.AddCommand(newLogsCmd())
	return root
}

// Main runs the CLI and returns the process exit code.
func Main(args []string) int {
	root := NewRoot(os.Stdout, os.Stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		if ee, ok := err.(ExitError); ok {
			return ee.Code
		}
		msg := err.Error()
		if !strings.HasSuffix(msg, "\n") {
			msg += "\n"
		}
		fmt.Fprint(os.Stderr, "gatehouse: "+msg)
		return 1
	}
	return 0
}
