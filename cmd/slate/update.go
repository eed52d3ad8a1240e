package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slateos/slate/internal/boot/bootinfo"
	"github.com/slateos/slate/internal/run/pid1"
	"github.com/slateos/slate/updater"
	"github.com/slateos/slate/updater/payload"
)

func newUpdatedCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "updated",
		Short:  "Run the update daemon (started by PID 1 when the spec has an update section)",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE:   func(cmd *cobra.Command, args []string) error { return pid1.RunUpdater() },
	}
}

func newUpdateCmd() *cobra.Command {
	var asJSON bool
	up := &cobra.Command{Use: "update", Short: "Control the update daemon of this machine"}
	up.PersistentFlags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	op := func(use, short, name string, nargs int) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.ExactArgs(nargs),
			RunE: func(cmd *cobra.Command, args []string) error {
				src := ""
				if nargs == 1 {
					src = args[0]
				}
				if boot, err := bootinfo.Read(bootinfo.Path); err == nil && boot.RAM() {
					// No slot and no daemon: say so rather than fail on the socket.
					if name != "status" {
						return fmt.Errorf("cannot %s: %s", name, boot.Describe())
					}
					return printRAMStatus(cmd.OutOrStdout(), boot, asJSON)
				}
				st, err := updater.Client{}.Do(cmd.Context(), name, src)
				if st != nil {
					printStatus(cmd.OutOrStdout(), st, asJSON)
				}
				return err
			},
		}
	}
	up.AddCommand(
		op("status", "Show the running and the other slot, and what the daemon is doing", "status", 0),
		op("check", "Check the channel now and apply a newer version", "check", 0),
		op("apply FOLDER|URL", "Apply the version in a channel or version folder, or at a URL (air-gapped machines)", "apply", 1),
		op("rollback", "Boot the other slot next, if it holds a good version", "rollback", 0),
	)
	return up
}

func printRAMStatus(w io.Writer, boot bootinfo.Info, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Boot    bootinfo.Info `json:"boot"`
			Updates bool          `json:"updates"`
			Summary string        `json:"summary"`
		}{boot, false, boot.Describe()})
	}
	_, err := fmt.Fprintf(w, "running:  %s\nupdater:  not running (no slot to write: boot newer PXE files or ISO instead)\n", boot.Describe())
	return err
}

func printStatus(w io.Writer, st *updater.Status, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
		return
	}
	fmt.Fprintf(w, "running:  %s %s in slot %s (%s)\n", st.Name, st.Version, st.Slot, st.Current.State)
	other := st.Other.Version
	if other == "" {
		other = "-"
	}
	if st.Other.Note != "" {
		// "slot b: empty (an update to 2.0.0 failed while writing it at ...)"
		fmt.Fprintf(w, "other:    slot %s: %s (%s)\n", st.Other.Slot, st.Other.State, st.Other.Note)
	} else {
		fmt.Fprintf(w, "other:    slot %s: %s (%s)\n", st.Other.Slot, other, st.Other.State)
	}
	state := st.State
	if st.State == "downloading" {
		state = fmt.Sprintf("%s %d%%", st.State, st.Percent)
	}
	fmt.Fprintf(w, "updater:  %s\n", state)
	if st.MachineID != "" {
		fmt.Fprintf(w, "machine:  %s\n", st.MachineID)
	}
	if st.Lock != "" {
		fmt.Fprintf(w, "lock:     %s\n", st.Lock)
	}
	if st.Halted != "" {
		fmt.Fprintf(w, "halted:   %s\n", st.Halted)
	}
	if st.Staged != "" {
		fmt.Fprintf(w, "staged:   %s (boots on the next reboot)\n", st.Staged)
	}
	if st.Channel != "" {
		fmt.Fprintf(w, "channel:  %s\n", st.Channel)
	}
	if st.Rollout != nil {
		fmt.Fprintf(w, "rollout:  %s\n", st.Rollout)
	}
	if !st.LastCheck.IsZero() {
		fmt.Fprintf(w, "checked:  %s\n", st.LastCheck.Format(time.RFC3339))
	}
	if st.LastError != "" {
		fmt.Fprintf(w, "error:    %s\n", st.LastError)
	}
	vs := make([]string, 0, len(st.Failed))
	for v := range st.Failed {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	for _, v := range vs {
		fmt.Fprintf(w, "failed:   %s: %s\n", v, st.Failed[v].Reason)
	}
}

func newKeygenCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "keygen -o DIR",
		Short: "Write an ed25519 key pair for signing updates (DIR/update.key, DIR/update.pub)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := payload.GenerateKey(dir); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s/update.key (keep it secret)\n%s/update.pub (name it in the spec: update.public_key or update.public_keys)\n", dir, dir)
			return nil
		},
	}
	cmd.Flags().StringVarP(&dir, "output", "o", ".", "folder for the key pair")
	return cmd
}

func newServeCmd() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "serve DIR",
		Short: "Serve a channel folder over HTTP (with Range support) for tests, demos and small sites",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if st, err := os.Stat(args[0]); err != nil || !st.IsDir() {
				return fmt.Errorf("serve: %s is not a folder", args[0])
			}
			if keys, err := payload.FindPrivateKeys(args[0]); err != nil {
				return fmt.Errorf("serve: %w", err)
			} else if len(keys) > 0 {
				// served or not, a private key in a published folder is a mistake to fix now
				return fmt.Errorf("serve: %s holds a private key (%s): move it out of the folder", args[0], strings.Join(keys, ", "))
			}
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "serving %s on http://%s/\n", args[0], l.Addr())
			srv := payload.NewServer(args[0], payload.DefaultServeTimeouts)
			go func() {
				<-cmd.Context().Done()
				srv.Close()
			}()
			if err := srv.Serve(l); err != nil && err != http.ErrServerClosed {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "address to listen on")
	return cmd
}
