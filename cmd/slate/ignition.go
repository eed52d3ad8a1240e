package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/slateos/slate/builder"
	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/run/ignition"
)

func newIgnitionCmd() *cobra.Command {
	ign := &cobra.Command{Use: "ignition", Short: "Work with Ignition configs (first-boot provisioning)"}
	var specFile string
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check an Ignition config offline: what slate would do with it, or what it refuses",
		Long: "Check an Ignition config offline. With --spec it is checked against the image " +
			"that spec builds: unit names against its services, users' groups against its /etc/group, " +
			"files it has that the config replaces without overwrite.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var img *ignition.Image
			if specFile != "" {
				spec, err := configs.Load(specFile)
				if err != nil {
					return err
				}
				img = builder.IgnitionImage(spec)
			}
			data, err := ignition.ReadConfigFile(args[0])
			if err != nil {
				return err
			}
			plan, err := ignition.ParseFor(data, img)
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
	}
	validate.Flags().StringVar(&specFile, "spec", "", "image spec the config will run on (checks it against that image)")
	ign.AddCommand(validate)
	return ign
}
