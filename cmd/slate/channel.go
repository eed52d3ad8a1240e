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
	ch.AddCommand(
		resignCmd("refresh", "Re-sign the channel's top manifest with a new expiry, without a new version (run it more often than --expires)",
			cobra.NoArgs, func(dir string, _ []string, o payload.PublishOptions) (*payload.Manifest, error) {
				return payload.Refresh(dir, o)
			}),
		resignCmd("rollout SPEC", "Re-sign the top manifest with new rollout waves for its version, like 10%:0h,50%:24h,100%:72h (counted from the version's publishing)",
			cobra.ExactArgs(1), func(dir string, args []string, o payload.PublishOptions) (*payload.Manifest, error) {
				waves, err := payload.ParseRolloutSpec(args[0])
				if err != nil {
					return nil, err
				}
				return payload.SetRollout(dir, waves, o)
			}),
		resignCmd("pause", "Re-sign the top manifest as paused: machines that have not begun to apply its version hold until resume (a pause stays across new versions)",
			cobra.NoArgs, func(dir string, _ []string, o payload.PublishOptions) (*payload.Manifest, error) {
				return payload.Pause(dir, o)
			}),
		resignCmd("resume", "Re-sign the top manifest without the pause: the waves go on from where their times are",
			cobra.NoArgs, func(dir string, _ []string, o payload.PublishOptions) (*payload.Manifest, error) {
				return payload.Resume(dir, o)
			}),
	)
	return ch
}

// resignCmd is a channel subcommand that re-signs the top manifest under
// the publisher lock, with the flags they all share.
func resignCmd(use, short string, args cobra.PositionalArgs, run func(dir string, args []string, o payload.PublishOptions) (*payload.Manifest, error)) *cobra.Command {
	var dir string
	var keyFiles, signFiles []string
	var expires time.Duration
	var force bool
	cmd := &cobra.Command{
		Use:   use + " --channel DIR --key KEY",
		Short: short,
		Args:  args,
		RunE: func(cmd *cobra.Command, args []string) error {
			var keys []ed25519.PrivateKey
			for _, p := range append(keyFiles, signFiles...) {
				k, err := payload.LoadPrivateKey(p)
				if err != nil {
					return fmt.Errorf("--key: %w", err)
				}
				keys = append(keys, k)
			}
			m, err := run(dir, args, payload.PublishOptions{Keys: keys, Expires: expires, Force: force})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s/%s: %s\n", dir, payload.ManifestFile, describeTop(m))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "channel", "", "channel folder")
	cmd.Flags().StringArrayVar(&keyFiles, "key", nil, "private key to sign with (repeat it during a key rotation)")
	// --sign as in slate build
	cmd.Flags().StringArrayVar(&signFiles, "sign", nil, "the same as --key")
	cmd.Flags().DurationVar(&expires, "expires", 0, "how long the re-signed manifest is trusted (default 168h)")
	cmd.Flags().BoolVar(&force, "force", false, "re-sign a top manifest that does not verify with --key")
	_ = cmd.MarkFlagRequired("channel")
	cmd.MarkFlagsOneRequired("key", "sign")
	return cmd
}

// describeTop is one line about a top manifest: "demo 1.1.0, published
// ..., expires ..., rollout 10%:0h,100%:24h from ..., paused since ...".
func describeTop(m *payload.Manifest) string {
	s := fmt.Sprintf("%s %s, published %s, expires %s", m.Name, m.Version, m.Published.Format(time.RFC3339), m.Expires.Format(time.RFC3339))
	if r := m.Rollout; r != nil {
		s += fmt.Sprintf(", rollout %s from %s", payload.FormatRolloutSpec(r.Waves), r.Start.Format(time.RFC3339))
		if r.Paused {
			s += ", paused since " + r.PausedAt.Format(time.RFC3339)
		}
	}
	return s
}
