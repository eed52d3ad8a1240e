package main

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/slateos/slate/updater/payload"
)

func newChannelCmd() *cobra.Command {
	ch := &cobra.Command{Use: "channel", Short: "Look after a channel folder (slate build --channel publishes into one)"}
	var dir string
	var keyFiles []string
	var expires time.Duration
	var force bool
	refresh := &cobra.Command{
		Use:   "refresh --channel DIR --key KEY",
		Short: "Re-sign the channel's top manifest with a new expiry, without a new version (run it more often than --expires)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var keys []ed25519.PrivateKey
			for _, p := range keyFiles {
				k, err := payload.LoadPrivateKey(p)
				if err != nil {
					return fmt.Errorf("--key: %w", err)
				}
				keys = append(keys, k)
			}
			m, err := payload.Refresh(dir, payload.PublishOptions{Keys: keys, Expires: expires, Force: force})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s/%s: %s %s, published %s, expires %s\n", dir, payload.ManifestFile,
				m.Name, m.Version, m.Published.Format(time.RFC3339), m.Expires.Format(time.RFC3339))
			return nil
		},
	}
	refresh.Flags().StringVar(&dir, "channel", "", "channel folder")
	refresh.Flags().StringArrayVar(&keyFiles, "key", nil, "private key to sign with (repeat it during a key rotation)")
	refresh.Flags().DurationVar(&expires, "expires", 0, "how long the refreshed manifest is trusted (default 168h)")
	refresh.Flags().BoolVar(&force, "force", false, "re-sign a top manifest that does not verify with --key")
	_ = refresh.MarkFlagRequired("channel")
	_ = refresh.MarkFlagRequired("key")
	ch.AddCommand(refresh)
	return ch
}
