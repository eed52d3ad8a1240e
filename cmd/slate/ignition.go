package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/slateos/slate/ignition"
)

func newIgnitionCmd() *cobra.Command {
	ign := &cobra.Command{Use: "ignition", Short: "Work with Ignition configs (first-boot provisioning)"}
	ign.AddCommand(&cobra.Command{
		Use:   "validate FILE",
		Short: "Check an Ignition config offline: what slate would do with it, or what it refuses",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			plan, err := ignition.Parse(data)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			w := cmd.OutOrStdout()
			for _, warn := range plan.Warnings {
				fmt.Fprintf(w, "warning: %s\n", warn)
			}
			fmt.Fprintf(w, "%s: valid: %d files, %d directories, %d links, %d users, %d groups, %d services\n",
				args[0], len(plan.Files), len(plan.Dirs), len(plan.Links), len(plan.Users), len(plan.Groups), len(plan.Units))
			return nil
		},
	})
	return ign
}
