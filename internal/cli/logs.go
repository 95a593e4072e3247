package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/admin"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/server"
)

func newLogsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Verify, query and key the tamper-evident audit trail",
		Long: `The audit trail is a directory of hash-chained JSON Lines segments with
Ed25519-signed checkpoints (see docs/audit.md). 'verify' checks it offline
against the public key; 'query' searches the index the server keeps in its store.`,
		Example: `  gatehouse logs keygen --out secrets/
  gatehouse logs verify data/audit --key secrets/gatehouse-audit.pub
  gatehouse logs query -c gatehouse.yaml --consumer acme-billing --since 1h`,
	}
	cmd.AddCommand(newLogsKeygenCmd(), newLogsVerifyCmd(), newLogsQueryCmd())
	return cmd
}

func newLogsKeygenCmd() *cobra.Command {
	var name, out string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Create the audit checkpoint signing key pair",
		Long: `keygen writes NAME.key (the signer key, mode 0600: set audit.signing_key_file to
it) and NAME.pub (the verifier key for 'gatehouse logs verify --key'). Keep the
.pub somewhere the gateway host cannot change it. Existing files are never overwritten.`,
		Example: `  gatehouse logs keygen --name gatehouse-audit --out secrets/`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			skey, vkey, err := audit.GenerateKey(name)
			if err != nil {
				return fmt.Errorf("generate key (name must be plain text without + or spaces): %w", err)
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return err
			}
			kp, pp := filepath.Join(out, name+".key"), filepath.Join(out, name+".pub")
			if err := writeNew(kp, skey, 0o600); err != nil {
				return err
			}
			if err := writeNew(pp, vkey, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signer key:   %s\nverifier key: %s\n", kp, pp)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "gatehouse-audit", "key name, recorded in every signature")
	cmd.Flags().StringVar(&out, "out", ".", "directory to write NAME.key and NAME.pub to")
	return cmd
}

func writeNew(path, content string, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.WriteString(content + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newLogsVerifyCmd() *cobra.Command {
	var key string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify DIR --key PUB",
		Short: "Check an audit log directory for any edit, deletion, reordering or truncation",
		Long: `verify walks every segment in DIR: it recomputes the hash chain, checks sequence
numbers and segment numbering, verifies every checkpoint's Ed25519 signature and
its claim (record count and head hash), and compares the log's end with the
latest signed checkpoint. It reports the first broken record with its reason and
exits 1; records after the last checkpoint and unclean shutdowns are reported as
notices (exit 0).`,
		Example: `  gatehouse logs verify data/audit --key secrets/gatehouse-audit.pub`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				return errors.New("--key is required: the .pub file written by 'gatehouse logs keygen'")
			}
			v, err := audit.LoadVerifier(key)
			if err != nil {
				return err
			}
			rep, err := audit.Verify(args[0], v)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				out := map[string]any{"ok": rep.Broken == nil, "segments": rep.Segments, "records": rep.Records,
					"checkpoints": rep.Checkpoints, "signed": rep.Signed, "notices": rep.Notices}
				if rep.Broken != nil {
					out["broken"] = map[string]any{"segment": rep.Broken.Segment, "line": rep.Broken.Line, "seq": rep.Broken.Seq, "reason": rep.Broken.Reason}
				}
				if err := writeJSONTo(w, out); err != nil {
					return err
				}
			} else {
				if rep.Broken != nil {
					fmt.Fprintf(w, "BROKEN: %s\n", rep.Broken.Error())
				} else {
					fmt.Fprintf(w, "OK: %d records in %d segments, %d checkpoints; signed through record %d\n",
						rep.Records, rep.Segments, rep.Checkpoints, rep.Signed)
				}
				for _, n := range rep.Notices {
					fmt.Fprintf(w, "notice: %s\n", n)
				}
			}
			if rep.Broken != nil {
				return ExitError{Code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "verifier key, or a file holding it (NAME.pub from 'gatehouse logs keygen')")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func newLogsQueryCmd() *cobra.Command {
	var cfgPath string
	var asJSON bool
	vals := map[string]*string{}
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Search the audit index (newest first)",
		Long: `query searches the audit index the server fills from the signed log (it lags
the log by about audit.index_interval). --since and --until take an RFC 3339
time or a duration ago (1h, 30m).`,
		Example: `  gatehouse logs query -c gatehouse.yaml --consumer acme-billing --since 1h
  gatehouse logs query --decision deny --status 403 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := admin.ParseAuditQuery(func(k string) string { return *vals[k] })
			if err != nil {
				return err
			}
			loaded, err := config.Load(cfgPath, nil)
			if err != nil {
				return fmt.Errorf("config %s: %w", cfgPath, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			st, err := server.OpenStore(ctx, loaded.Config.Store)
			if err != nil {
				return err
			}
			defer st.Close()
			entries, err := st.QueryAudit(ctx, q)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				out := make([]json.RawMessage, 0, len(entries))
				for _, e := range entries {
					out = append(out, json.RawMessage(e.Record))
				}
				return writeJSONTo(w, map[string]any{"records": out})
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tTYPE\tCONSUMER\tPARTNER\tAPI\tOPERATION\tMETHOD\tPATH\tSTATUS\tDECISION\tSTAGE/REASON")
			for _, e := range entries {
				sr := e.Stage
				if e.Reason != "" {
					sr += "/" + e.Reason
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", e.Seq, e.Time.Format(time.RFC3339), e.Type,
					e.Consumer, e.Partner, e.API, e.Operation, e.Method, e.Path, e.Status, e.Decision, sr)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "gatehouse.yaml", "config file or folder (names the store)")
	for _, f := range []struct{ name, help string }{
		{"consumer", "only this consumer (admin records: the actor)"}, {"partner", "only this partner"}, {"api", "only this API"},
		{"status", "only this HTTP status"}, {"decision", "allow, deny, error or admin"},
		{"since", "from this time (RFC 3339) or duration ago"}, {"until", "before this time (RFC 3339) or duration ago"},
		{"limit", "at most this many records (default 100)"},
	} {
		v := new(string)
		vals[f.name] = v
		cmd.Flags().StringVar(v, f.name, "", f.help)
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print records as JSON")
	return cmd
}
