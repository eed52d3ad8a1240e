package main

import (
	"github.com/spf13/cobra"

	"github.com/slateos/slate/internal/run/supervisor"
)

func newPowerCmd(action string) *cobra.Command {
	return &cobra.Command{
		Use:   action,
		Short: "Stop services, unmount and " + action + " this machine (inside a slate system)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := supervisor.Reboot
			if action == "poweroff" {
				kind = supervisor.Poweroff
			}
			return supervisor.RequestShutdown(kind)
		},
	}
}
