package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/slateos/slate/internal/run/supervisor"
)

func newStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show this machine's services and containers: state, restarts, uptime, memory, CPU, health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := supervisor.ReadStatus(supervisor.DefaultStatusFile)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				b, err := json.MarshalIndent(st, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(out, "%s\n", b)
				return err
			}
			fmt.Fprintf(out, "version %s, slot %s, ready %t\n", st.Version, st.Slot, st.Ready)
			return supervisor.WriteUnits(out, supervisor.Units(st, time.Now()), false)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the supervisor's status file")
	return cmd
}
