package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/user"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/authn/apikey"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/store"
)

// keyWarning goes with every plaintext key the CLI prints.
const keyWarning = "Copy this key now: Gatehouse stores only a keyed hash of it and cannot show it again."

type keysFlags struct {
	cfgPath string
}

func newKeysCmd() *cobra.Command {
	f := &keysFlags{}
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Issue, list, show, rotate and revoke API keys; create and rotate data keys",
		Long: `Manage API keys in the store the config names. Consumers and partners are
declared in the config; their keys live in the store, hashed with the server
pepper (identity.pepper or identity.pepper_file). A key is printed once, when
it is issued or rotated, and never again.

Revocations are written to the store's revocation list, which running gateways
poll (identity.revocation_poll), so they take effect everywhere within about a
second. Listing, showing and revoking do not need the pepper.

gen-data-key and rotate-data-key manage the data key that seals sensitive
store values at rest (store.encryption).`,
		Example: `  gatehouse keys issue --consumer acme-billing --scopes orders:read --ttl 30d
  gatehouse keys list --partner acme
  gatehouse keys rotate 3fQk9ZtB1xW7pLmA --overlap 24h
  gatehouse keys revoke --partner acme --reason "incident 2026-117"`,
	}
	cmd.PersistentFlags().StringVarP(&f.cfgPath, "config", "c", "gatehouse.yaml", "config file or folder of *.yaml files")
	cmd.AddCommand(newKeysIssueCmd(f), newKeysListCmd(f), newKeysShowCmd(f), newKeysRotateCmd(f), newKeysRevokeCmd(f),
		newKeysGenDataKeyCmd(), newKeysRotateDataKeyCmd(f))
	return cmd
}

func newKeysIssueCmd(f *keysFlags) *cobra.Command {
	var consumer, scopes, ttl, createdBy, output string
	var meta []string
	cmd := &cobra.Command{
		Use:   "issue --consumer NAME [--scopes a,b] [--ttl 30d] [--meta k=v]...",
		Short: "Issue an API key for a consumer and print it once",
		Long: `Issue a new API key for a consumer declared in the config. Its scopes must be a
subset of the consumer's (default: all of them) and its lifetime at most
identity.key_max_ttl (default and maximum 90d).

The key is written to stdout, alone on its line, so scripts can capture it;
the details and a reminder that it cannot be shown again go to stderr.`,
		Example: `  gatehouse keys issue --consumer acme-billing
  gatehouse keys issue -c /etc/gatehouse --consumer acme-billing --scopes orders:read --ttl 30d
  KEY=$(gatehouse keys issue --consumer ci-smoke --ttl 1d --created-by pipeline-42)
  gatehouse keys issue --consumer acme-billing --meta owner=jane@acme.example --meta ticket=SEC-42`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if consumer == "" {
				return errors.New("--consumer is required")
			}
			d, err := optDuration("--ttl", ttl)
			if err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			md, err := parseMeta(meta)
			if err != nil {
				return err
			}
			return withKeys(cmd, f, true, func(ctx context.Context, k *keysEnv) error {
				key, cred, err := k.svc.Issue(ctx, apikey.IssueRequest{Consumer: consumer, Scopes: splitList(scopes),
					TTL: d, CreatedBy: actor(createdBy), Metadata: md})
				if err != nil {
					return err
				}
				return printNewKey(cmd, k, output, key, cred, "")
			})
		},
	}
	cmd.Flags().StringVar(&consumer, "consumer", "", "consumer the key belongs to (required)")
	cmd.Flags().StringVar(&scopes, "scopes", "", "comma-separated scopes, a subset of the consumer's (default: all of them)")
	cmd.Flags().StringVar(&ttl, "ttl", "", "lifetime, e.g. 30d or 12h (default: identity.key_max_ttl)")
	cmd.Flags().StringVar(&createdBy, "created-by", "", "who asked for the key, recorded with it (default: cli:$USER)")
	cmd.Flags().StringArrayVar(&meta, "meta", nil, "metadata key=value kept with the key (repeatable; sealed at rest with store.encryption)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newKeysListCmd(f *keysFlags) *cobra.Command {
	var consumer, partner, output string
	var all bool
	cmd := &cobra.Command{
		Use:   "list [--consumer NAME] [--partner NAME] [--all]",
		Short: "List credentials (never their secrets or hashes)",
		Long: `List credentials in the store with their status: active, rotating (replaced by a
rotation and working until its overlap ends), expired or revoked. Without --all
only active and rotating credentials are listed.`,
		Example: `  gatehouse keys list
  gatehouse keys list --partner acme --all
  gatehouse keys list --consumer acme-billing -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return withKeys(cmd, f, false, func(ctx context.Context, k *keysEnv) error {
				creds, err := k.svc.List(ctx, store.CredentialFilter{Consumer: consumer, Partner: partner, IncludeRevoked: true})
				if err != nil {
					return err
				}
				views, err := k.svc.Views(ctx, creds)
				if err != nil {
					return err
				}
				shown := views[:0]
				for _, v := range views {
					if all || v.Status == apikey.StatusActive || v.Status == apikey.StatusRotating {
						shown = append(shown, v)
					}
				}
				out := cmd.OutOrStdout()
				if output == "json" {
					return writeJSONTo(out, shown)
				}
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tKIND\tCONSUMER\tPARTNER\tSCOPES\tSTATUS\tEXPIRES\tLAST USED")
				for _, v := range shown {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.Kind, v.Consumer, dash(v.Partner),
						dash(strings.Join(v.Scopes, ",")), v.Status, timeOrDash(v.ExpiresAt), timeOrDash(v.LastUsedAt))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&consumer, "consumer", "", "only this consumer's credentials")
	cmd.Flags().StringVar(&partner, "partner", "", "only credentials issued under this partner")
	cmd.Flags().BoolVar(&all, "all", false, "include expired and revoked credentials")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newKeysShowCmd(f *keysFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one credential's details (never its secret or hash)",
		Long:  "Show a credential by its public ID: owner, scopes, status, creation, expiry, revocation and last use.",
		Example: `  gatehouse keys show 3fQk9ZtB1xW7pLmA
  gatehouse keys show 3fQk9ZtB1xW7pLmA -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return withKeys(cmd, f, false, func(ctx context.Context, k *keysEnv) error {
				id := keyID(args[0])
				c, err := k.svc.Get(ctx, id)
				if err != nil {
					return notFound(id, err)
				}
				views, err := k.svc.Views(ctx, []store.Credential{c})
				if err != nil {
					return err
				}
				v := views[0]
				out := cmd.OutOrStdout()
				if output == "json" {
					return writeJSONTo(out, v)
				}
				printView(out, v)
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newKeysRotateCmd(f *keysFlags) *cobra.Command {
	var overlap, createdBy, output string
	cmd := &cobra.Command{
		Use:   "rotate ID [--overlap 24h]",
		Short: "Replace a key: issue a new one, end the old one after an overlap",
		Long: `Issue a new key with the old key's consumer, scopes and lifetime, and keep the
old key working for --overlap (default 24h) so clients can switch without an
outage; after that it is refused. --overlap 0 revokes the old key at once.`,
		Example: `  gatehouse keys rotate 3fQk9ZtB1xW7pLmA
  gatehouse keys rotate 3fQk9ZtB1xW7pLmA --overlap 2h
  gatehouse keys rotate 3fQk9ZtB1xW7pLmA --overlap 0   # old key leaked: end it now`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := optDuration("--overlap", overlap)
			if err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			return withKeys(cmd, f, true, func(ctx context.Context, k *keysEnv) error {
				id := keyID(args[0])
				key, cred, err := k.svc.Rotate(ctx, id, d, actor(createdBy))
				if err != nil {
					return notFound(id, err)
				}
				note := fmt.Sprintf("Old key %s keeps working until %s.", id, k.svc.Now().Add(d).UTC().Format(time.RFC3339))
				if d == 0 {
					note = fmt.Sprintf("Old key %s is revoked.", id)
				}
				return printNewKey(cmd, k, output, key, cred, note)
			})
		},
	}
	cmd.Flags().StringVar(&overlap, "overlap", "24h", "how long the old key keeps working, e.g. 24h or 2d; 0 ends it now")
	cmd.Flags().StringVar(&createdBy, "created-by", "", "who rotated the key, recorded as the new key's creator (default: cli:$USER)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newKeysRevokeCmd(f *keysFlags) *cobra.Command {
	var consumer, partner, reason, jti, until string
	cmd := &cobra.Command{
		Use:   "revoke ID | --consumer NAME | --partner NAME | --jti JTI",
		Short: "Revoke a key, every credential of a consumer or partner, or one token",
		Long: `Revoke one credential by ID, every live credential of a consumer, every live
credential of a partner's consumers, or a single token by its jti claim. The
revocation is recorded on the credential and on the revocation list running
gateways poll, and lasts until the credential would have expired anyway (for
a token: until --until, which should be at or after the token's exp).
Tokens bought at the token endpoint with a revoked key stop working too.`,
		Example: `  gatehouse keys revoke 3fQk9ZtB1xW7pLmA --reason "pasted in a support ticket"
  gatehouse keys revoke --consumer acme-billing --reason offboarded
  gatehouse keys revoke --partner acme --reason "incident 2026-117"
  gatehouse keys revoke --jti 9b1d2c3e --until 24h --reason "token leaked in a log"`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			targets := 0
			for _, set := range []bool{len(args) == 1, consumer != "", partner != "", jti != ""} {
				if set {
					targets++
				}
			}
			if targets != 1 {
				return errors.New("name exactly one of: a credential ID, --consumer NAME, --partner NAME or --jti JTI")
			}
			var expires time.Time
			if jti != "" {
				d, err := apikey.ParseDuration(until)
				if err != nil || d <= 0 {
					return fmt.Errorf("--until: want a duration such as 24h or 2d, got %q", until)
				}
				expires = time.Now().Add(d)
			}
			if reason == "" {
				reason = "revoked by " + actor("")
			}
			return withKeys(cmd, f, false, func(ctx context.Context, k *keysEnv) error {
				out := cmd.OutOrStdout()
				switch {
				case jti != "":
					err := k.st.AddRevocation(ctx, store.Revocation{Kind: store.RevokeToken, Subject: jti,
						Reason: reason, ExpiresAt: expires, CreatedBy: actor("")})
					if err != nil {
						return err
					}
					fmt.Fprintf(out, "Revoked token %s until %s.\n", jti, expires.UTC().Format(time.RFC3339))
				case consumer != "":
					n, err := k.svc.RevokeConsumer(ctx, consumer, reason)
					if err != nil {
						return err
					}
					fmt.Fprintf(out, "Revoked %d credential(s) of consumer %s.\n", n, consumer)
				case partner != "":
					n, err := k.svc.RevokePartner(ctx, partner, reason)
					if err != nil {
						return err
					}
					fmt.Fprintf(out, "Revoked %d credential(s) of partner %s.\n", n, partner)
				default:
					id := keyID(args[0])
					if err := k.svc.Revoke(ctx, id, reason); err != nil {
						return notFound(id, err)
					}
					fmt.Fprintf(out, "Revoked %s.\n", id)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&consumer, "consumer", "", "revoke every live credential of this consumer")
	cmd.Flags().StringVar(&partner, "partner", "", "revoke every live credential of this partner's consumers")
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the revocation (default: revoked by cli:$USER)")
	cmd.Flags().StringVar(&jti, "jti", "", "revoke the token with this jti claim")
	cmd.Flags().StringVar(&until, "until", "24h", "with --jti: how long the entry lasts (at least until the token expires)")
	return cmd
}

// keysEnv is an opened config, store and key service.
type keysEnv struct {
	cfg *config.Config
	st  store.Store
	svc *apikey.Service
}

// withKeys loads the config, opens its store and builds the key service,
// runs fn, and closes the store. needPepper is false for commands that never
// hash a key, so revoking works for operators who cannot read the pepper.
func withKeys(cmd *cobra.Command, f *keysFlags, needPepper bool, fn func(context.Context, *keysEnv) error) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	loaded, err := config.Load(f.cfgPath, nil)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			ps.Sort()
			for _, p := range ps {
				fmt.Fprintln(cmd.ErrOrStderr(), p.String())
			}
			return fmt.Errorf("config %s is invalid (%d errors); run gatehouse config validate %s", f.cfgPath, len(ps.Errors()), f.cfgPath)
		}
		return err
	}
	cfg := loaded.Config
	var pepper []byte
	if needPepper {
		if pepper, err = apikey.LoadPepper(cfg.Identity); err != nil {
			return err
		}
	}
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	st, err := server.OpenStore(octx, cfg.Store)
	cancel()
	if err != nil {
		return err
	}
	defer st.Close()
	svc, err := apikey.NewService(apikey.Options{Store: st, Pepper: pepper, Consumers: cfg.Consumers,
		MaxTTL: cfg.Identity.KeyMaxTTL.D(), Revoker: apikey.StoreRevoker{Store: st, CreatedBy: actor("")}, Revocations: st})
	if err != nil {
		return err
	}
	return fn(ctx, &keysEnv{cfg: cfg, st: st, svc: svc})
}

type newKeyJSON struct {
	Key        string                `json:"key"`
	Credential apikey.CredentialView `json:"credential"`
	Note       string                `json:"note,omitempty"`
	Warning    string                `json:"warning"`
}

// printNewKey prints a plaintext key exactly once: alone on stdout (text),
// or in the JSON document; details and the warning go to stderr.
func printNewKey(cmd *cobra.Command, k *keysEnv, output, key string, cred store.Credential, note string) error {
	v := apikey.View(cred, k.svc.Now())
	if output == "json" {
		return writeJSONTo(cmd.OutOrStdout(), newKeyJSON{Key: key, Credential: v, Note: note, Warning: keyWarning})
	}
	errw := cmd.ErrOrStderr()
	partner := ""
	if v.Partner != "" {
		partner = " (partner " + v.Partner + ")"
	}
	fmt.Fprintf(errw, "Issued API key %s for consumer %s%s, scopes %s, expires %s.\n", v.ID, v.Consumer, partner,
		dash(strings.Join(v.Scopes, ",")), timeOrDash(v.ExpiresAt))
	if note != "" {
		fmt.Fprintln(errw, note)
	}
	fmt.Fprintln(errw, keyWarning)
	_, err := fmt.Fprintln(cmd.OutOrStdout(), key)
	return err
}

func printView(w io.Writer, v apikey.CredentialView) {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	line := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	line("id", v.ID)
	line("kind", v.Kind)
	line("consumer", v.Consumer)
	line("partner", dash(v.Partner))
	line("scopes", dash(strings.Join(v.Scopes, ", ")))
	line("status", v.Status)
	created := v.CreatedAt.UTC().Format(time.RFC3339)
	if v.CreatedBy != "" {
		created += " by " + v.CreatedBy
	}
	line("created", created)
	line("expires", timeOrDash(v.ExpiresAt))
	if v.RevokedAt != nil {
		label := "revoked"
		if v.Status == apikey.StatusRotating {
			label = "ends"
		}
		line(label, timeOrDash(v.RevokedAt)+" ("+v.RevokedReason+")")
	}
	used := timeOrDash(v.LastUsedAt)
	if v.LastUsedIP != "" {
		used += " from " + v.LastUsedIP
	}
	line("last used", used)
	for _, k := range slices.Sorted(maps.Keys(v.Metadata)) {
		line("meta "+k, v.Metadata[k])
	}
	_ = tw.Flush()
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func checkOutput(o string) error {
	if o != "text" && o != "json" {
		return fmt.Errorf("-o %s: want text or json", o)
	}
	return nil
}

func optDuration(flag, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := apikey.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s %q: write e.g. 30d, 36h or 90m", flag, s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%s must not be negative", flag)
	}
	return d, nil
}

// keyID accepts a credential ID, or a whole key pasted by mistake, from
// which only the public ID is used (and nothing of it is echoed back).
func keyID(s string) string {
	s = strings.TrimSpace(s)
	if id, err := apikey.Parse(s); err == nil {
		return id
	}
	// A mistyped whole key: use its ID part, never echo its secret.
	if strings.HasPrefix(s, apikey.Prefix) && len(s) > len(apikey.Prefix)+apikey.IDLen {
		return s[len(apikey.Prefix) : len(apikey.Prefix)+apikey.IDLen]
	}
	return s
}

// notFound turns the store's not-found into advice.
func notFound(id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no credential with ID %q in the store (see gatehouse keys list --all)", id)
	}
	return err
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// actor names who runs the command, for created_by and revocation records.
func actor(explicit string) string {
	if explicit != "" {
		return explicit
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	if n := os.Getenv("USER"); n != "" {
		return "cli:" + n
	}
	return "cli"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
