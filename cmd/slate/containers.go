package main

import (
	"errors"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/slateos/slate/internal/imageinfo"
	"github.com/slateos/slate/internal/run/supervisor"
)

func newContainersCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "containers",
		Short: "List this machine's containers: image, state, restarts, uptime, memory, CPU, health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := imageinfo.Load("/")
			if err != nil {
				return err
			}
			st, err := supervisor.ReadStatus(supervisor.DefaultStatusFile)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			return supervisor.WriteContainers(cmd.OutOrStdout(), supervisor.Containers(st, info.Containers, time.Now()), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
