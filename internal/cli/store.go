package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/store"
)

// openStore opens the config's store within 15 seconds, with the
// command's context (or a background one).
func openStore(cmd *cobra.Command, cfg *config.Config) (context.Context, store.Store, error) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := server.OpenStore(octx, cfg.Store)
	return ctx, st, err
}
