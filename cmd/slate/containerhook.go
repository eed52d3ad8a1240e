package main

import (
	"github.com/spf13/cobra"

	"github.com/slateos/slate/internal/run/cnet"
)

// newContainerHookCmd is what runc runs as a container's OCI hooks (in
// its config.json, written by the builder); hidden: people never run it.
func newContainerHookCmd() *cobra.Command {
	hook := &cobra.Command{
		Use:    "container-hook",
		Short:  "OCI runtime hooks of slate's containers (run by runc)",
		Hidden: true,
		Args:   cobra.NoArgs,
	}
	hook.AddCommand(&cobra.Command{
		Use:   "network NAME ADDRESS GATEWAY",
		Short: "createRuntime hook: attach the container (OCI state on stdin) to the bridge slate0",
		// The arguments come from config.json; none of them is a flag.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cnet.Hook(args, cmd.InOrStdin())
		},
	})
	return hook
}
