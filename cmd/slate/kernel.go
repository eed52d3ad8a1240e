package main

import (
	"fmt"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/slateos/slate/builder"
	"github.com/slateos/slate/configs"
)

func newKernelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kernel",
		Short: "The kernel and systemd-boot images are built with",
	}
	cmd.AddCommand(newKernelFetchCmd())
	return cmd
}

// newKernelFetchCmd fetches the spec's (or the default) kernel package
// and systemd-boot-efi into the cache with slate's own Debian code.
func newKernelFetchCmd() *cobra.Command {
	var spec, cache string
	cmd := &cobra.Command{
		Use:   "fetch [-c SPEC] [--cache DIR]",
		Short: "Fetch kernel.package (default linux-image-amd64) and systemd-boot-efi from Debian into the cache (no apt or dpkg needed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var s *configs.Spec
			var err error
			if spec != "" {
				s, err = configs.Load(spec)
			} else {
				s, err = configs.Parse([]byte("name: kernel\nversion: 0.0.0\n"), "")
			}
			if err != nil {
				return err
			}
			if cache == "" {
				cache = builder.DefaultCacheDir()
			}
			got, err := builder.FetchKernel(cmd.Context(), s, cache)
			if err != nil {
				if builder.CachedKernel(cache, s) {
					// offline with a full cache: what a build needs is there
					logrus.WithError(err).Warn("the kernel and systemd-boot in the cache are kept: they could not be checked against the mirror")
					fmt.Fprintf(cmd.OutOrStdout(), "kept the cached kernel and systemd-boot in %s\n", cache)
					return nil
				}
				return err
			}
			for _, p := range got {
				what := "unpacked"
				if p.Kept {
					what = "already in"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s (%s): %s %s\n", p.Name, p.Version, p.Suite, what, p.Dir)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&spec, "config", "c", "", "image spec whose kernel.package and debian sources to use (default: linux-image-amd64 from the host's bookworm sources)")
	cmd.Flags().StringVar(&cache, "cache", "", "cache folder (default $SLATE_CACHE or .cache)")
	return cmd
}
