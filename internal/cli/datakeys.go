package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/store"
)

func newKeysGenDataKeyCmd() *cobra.Command {
	var out string
	var rotate bool
	cmd := &cobra.Command{
		Use:   "gen-data-key [--out FILE [--rotate]]",
		Short: "Create a data key for encryption at rest (store.encryption)",
		Long: `Create a random 32-byte AES-256 data key, base64-encoded, for store.encryption
(key_file or key_env). Without --out the key goes to stdout, for a secret
manager or an environment variable; the equivalent shell command is
  head -c32 /dev/urandom | base64

With --out the key is written to FILE with mode 0600. An existing FILE is
refused unless --rotate is given: then the new key is put first (the active
key, used for new values) and the old keys are kept after it, so values sealed
under them still open. After restarting the gateways on the new file, run
gatehouse keys rotate-data-key to re-encrypt everything under the new key,
then remove the old key lines.`,
		Example: `  gatehouse keys gen-data-key --out data/data.key
  gatehouse keys gen-data-key --out data/data.key --rotate
  export GATEHOUSE_DATA_KEY=$(gatehouse keys gen-data-key)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := seal.GenerateKey()
			if err != nil {
				return err
			}
			if out == "" {
				if rotate {
					return errors.New("--rotate needs --out")
				}
				_, err := fmt.Fprintln(cmd.OutOrStdout(), key)
				return err
			}
			return writeDataKey(cmd, out, key, rotate)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the key to this file (mode 0600)")
	cmd.Flags().BoolVar(&rotate, "rotate", false, "put a new active key in front of the keys already in --out")
	return cmd
}

func writeDataKey(cmd *cobra.Command, path, key string, rotate bool) error {
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	case err != nil:
		return fmt.Errorf("read %s: %w", path, err)
	case !rotate:
		return fmt.Errorf("%s exists; use --rotate to add a new active key in front of its keys", path)
	}
	if len(old) > 0 {
		if _, err := seal.ParseKeyRing(string(old)); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	text := "# active data key (gatehouse keys gen-data-key, " + time.Now().UTC().Format(time.RFC3339) + ")\n" + key + "\n"
	if len(old) > 0 {
		text += "# older keys: remove them after gatehouse keys rotate-data-key\n" + strings.TrimLeft(string(old), "\n")
	}
	ring, err := seal.ParseKeyRing(text)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	// Write beside and rename: a crash never leaves a half-written ring.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".data-key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(text); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: active key %s, %d key(s) in the ring\n", path, ring.ActiveID(), len(ring.IDs()))
	if len(ring.IDs()) > 1 {
		fmt.Fprintln(cmd.ErrOrStderr(), "next: restart the gateways, run gatehouse keys rotate-data-key, then remove the older keys")
	}
	return nil
}

func newKeysRotateDataKeyCmd(f *keysFlags) *cobra.Command {
	var batch int
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "rotate-data-key",
		Short: "Re-encrypt every sealed store value under the active data key",
		Long: `Re-encrypt, in place, every sensitive value the store holds (credential
metadata, creators, last-use IPs, revocation reasons) under the active data key
of store.encryption (the first key of the ring), and seal values written before
encryption was enabled. Values already under the active key are left alone, so
running it again changes nothing.

It works in batches and writes each value with a compare-and-swap, so it is
safe while gateways are serving: a value a gateway rewrites meanwhile keeps the
gateway's version. Gateways still running with the old ring seal new values
under the old key; restart them on the new ring first, run this, and run it
again if it reports values changed concurrently. Only then drop the old key.`,
		Example: `  gatehouse keys gen-data-key --out data/data.key --rotate
  gatehouse keys rotate-data-key -c gatehouse.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			loaded, err := config.Load(f.cfgPath, nil)
			if err != nil {
				var ps config.Problems
				if errors.As(err, &ps) {
					ps.Sort()
					for _, p := range ps {
						fmt.Fprintln(cmd.ErrOrStderr(), p.String())
					}
					return fmt.Errorf("config %s is invalid (%d errors)", f.cfgPath, len(ps.Errors()))
				}
				return err
			}
			cfg := loaded.Config
			if !cfg.Store.Encryption.Enabled() {
				return errors.New("store.encryption is not set in the config: there is no data key to rotate to (create one with gatehouse keys gen-data-key)")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			o, err := server.OpenSealedStore(ctx, cfg.Store)
			if err != nil {
				return err
			}
			defer o.Store.Close()
			ss, ok := o.Store.(store.SealedStore)
			if !ok {
				return errors.New("this store does not support encryption at rest")
			}
			st, err := ss.ResealValues(ctx, batch, o.Keys.Reseal)
			if err != nil {
				return fmt.Errorf("rotate data key: %w (values done so far stay re-encrypted; run again to finish)", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d sealed values checked, %d re-encrypted under key %s, %d changed concurrently\n",
				st.Visited, st.Changed, o.Keys.ActiveID(), st.Raced)
			if st.Raced > 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "some values changed while rotating: run gatehouse keys rotate-data-key again once every gateway runs on the new ring")
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&batch, "batch", 500, "rows per read and write transaction")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Hour, "give up after this long (work done so far is kept)")
	return cmd
}

// maxMeta bounds what --meta may attach to one credential.
const maxMeta = 32

// parseMeta reads repeated key=value flags.
func parseMeta(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	if len(kvs) > maxMeta {
		return nil, fmt.Errorf("--meta: at most %d entries", maxMeta)
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || len(k) > 64 || len(v) > 1024 {
			return nil, fmt.Errorf("--meta %q: want key=value (key up to 64, value up to 1024 characters)", k)
		}
		m[k] = v
	}
	return m, nil
}
