package main

import (
	"github.com/spf13/cobra"

	"github.com/slateos/slate/internal/run/sshd"
)

func newSSHPrepareCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "ssh-prepare",
		Short:  "Prepare sshd's start on the machine: /run/sshd, users' homes, host keys on STATE (run by PID 1)",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE:   func(cmd *cobra.Command, args []string) error { return sshd.Main() },
	}
}
