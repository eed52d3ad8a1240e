package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/slateos/slate/builder"
	"github.com/slateos/slate/internal/boot/bootinfo"
	"github.com/slateos/slate/internal/bootentry"
	"github.com/slateos/slate/internal/imageinfo"
)

func newInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect [IMAGE|DEVICE|PXE-DIR|ISO]",
		Short: "Show partitions, slots, boot entries, baked containers and which slot boots next (or a PXE folder's or live ISO's root); without an argument, how this machine booted",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return inspectRunning(cmd.OutOrStdout(), asJSON)
			}
			if err := bootentry.CheckSource(args[0]); err != nil {
				return err
			}
			// Reads of a hung device must not outlast Ctrl-C.
			ctx := cmd.Context()
			if builder.IsRAMArtifact(args[0]) {
				r, err := bootentry.WithContext(ctx, func() (*builder.RAMReport, error) { return builder.InspectRAM(args[0]) })
				if err != nil {
					return err
				}
				if asJSON {
					return r.WriteJSON(cmd.OutOrStdout())
				}
				return r.WriteText(cmd.OutOrStdout())
			}
			r, err := bootentry.WithContext(ctx, func() (*bootentry.Report, error) { return bootentry.Inspect(args[0]) })
			if err != nil {
				return err
			}
			// the containers baked into each slot, from its image.json
			slots, cerr := bootentry.WithContext(ctx, func() ([]builder.SlotContainers, error) { return builder.InspectContainers(args[0]) })
			if asJSON {
				out := struct {
					*bootentry.Report
					Containers []builder.SlotContainers `json:"slot_containers,omitempty"`
					Problem    string                   `json:"containers_problem,omitempty"`
				}{Report: r, Containers: slots}
				if cerr != nil {
					out.Problem = cerr.Error()
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			if err := r.WriteText(cmd.OutOrStdout()); err != nil {
				return err
			}
			if cerr != nil {
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "\ncontainers: unknown: %v\n", cerr)
				return err
			}
			return builder.WriteContainersText(cmd.OutOrStdout(), slots)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// running is `slate inspect` on a slate machine.
type running struct {
	Name    string        `json:"name"`
	Version string        `json:"version"`
	Kernel  string        `json:"kernel_version"`
	Boot    bootinfo.Info `json:"boot"`
	Summary string        `json:"summary"`
	// Containers are the ones baked into the running root.
	Containers []imageinfo.Container `json:"containers,omitempty"`
}

func inspectRunning(w io.Writer, asJSON bool) error {
	boot, err := bootinfo.Read(bootinfo.Path)
	if err != nil {
		return fmt.Errorf("not a running slate system, or one booted by an older init (%w): name an image or device to inspect", err)
	}
	info, err := imageinfo.Load("/")
	if err != nil {
		return err
	}
	r := running{Name: info.Name, Version: info.Version, Kernel: info.KernelVersion, Boot: boot, Summary: boot.Describe(), Containers: info.Containers}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(w, "running:  %s %s (kernel %s)\n", r.Name, r.Version, r.Kernel)
	fmt.Fprintf(w, "boot:     %s\n", r.Summary)
	fmt.Fprintf(w, "root:     %s", boot.Root)
	if boot.RAM() {
		fmt.Fprintf(w, " (%d bytes, sha256 %s)", boot.RootSize, boot.RootSHA256)
	}
	fmt.Fprintf(w, "\nstate:    %s\n", boot.State)
	if !boot.RAM() {
		fmt.Fprintln(w, "slots:    slate inspect <boot disk> shows both slots and their entries")
	}
	return builder.WriteContainersText(w, []builder.SlotContainers{{Slot: boot.Slot, Version: info.Version, Containers: info.Containers}})
}
