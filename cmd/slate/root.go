package main

import (
	"fmt"
	"os"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/slateos/slate/internal/version"
)

func newRoot() *cobra.Command {
	var level string
	root := &cobra.Command{
		Use:           "slate",
		Short:         "Build, inspect and run minimal immutable A/B Linux images",
		SilenceUsage:  true,
		SilenceErrors: false,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			l, err := logrus.ParseLevel(level)
			if err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			logrus.SetLevel(l)
			logrus.SetOutput(os.Stderr)
			return nil
		},
	}
	root.PersistentFlags().StringVar(&level, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(newFleetCmd(), newBuildCmd(), newInspectCmd(), newVMCmd(), newPowerCmd("poweroff"), newPowerCmd("reboot"),
		newUpdatedCmd(), newUpdateCmd(), newContainersCmd(), newStatusCmd(), newKeygenCmd(), newServeCmd(), newChannelCmd(), newIgnitionCmd(), newContainerHookCmd(), newPackagesCmd(), newSSHPrepareCmd(), newKernelCmd(),
		&cobra.Command{
			Use:   "version",
			Short: "Print slate's version",
			Args:  cobra.NoArgs,
			Run: func(cmd *cobra.Command, args []string) {
				fmt.Fprintf(cmd.OutOrStdout(), "slate %s\n", version.Version)
			},
		})
	return root
}
