package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/updater/fleet"
)

// fleetFlags are the etcd connection flags of slate fleet, as in
// update.lock.etcd.
type fleetFlags struct {
	conn  configs.EtcdConn
	group string
	json  bool
}

func (f *fleetFlags) add(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringSliceVar(&f.conn.Endpoints, "etcd", nil, "etcd endpoint URLs (http://HOST:2379), comma-separated or repeated")
	fl.StringVar(&f.conn.Prefix, "prefix", configs.DefaultLockPrefix, "key prefix (locksmith's by default)")
	fl.StringVar(&f.group, "group", "", "the lock's group (locksmith's groups)")
	fl.StringVar(&f.conn.CA, "ca", "", "CA file that verifies etcd")
	fl.StringVar(&f.conn.Cert, "cert", "", "client certificate file")
	fl.StringVar(&f.conn.Key, "key", "", "client key file")
	fl.StringVar(&f.conn.Username, "username", "", "etcd user")
	fl.StringVar(&f.conn.PasswordFile, "password-file", "", "file whose first line is the etcd user's password")
	fl.BoolVar(&f.json, "json", false, "print JSON")
}

// check validates the flags as the spec's section is, the files being
// this computer's.
func (f *fleetFlags) check() error {
	var errs []string
	c := f.conn
	configs.CheckEtcdConn(func(path, format string, args ...any) {
		errs = append(errs, "--"+flagOf(path)+": "+fmt.Sprintf(format, args...))
	}, "", &c, false)
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func flagOf(path string) string {
	name := strings.TrimPrefix(path, ".")
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i]
	}
	switch name {
	case "endpoints":
		return "etcd"
	case "password_file":
		return "password-file"
	}
	return name
}

func newFleetCmd() *cobra.Command {
	f := &fleetFlags{}
	cmd := &cobra.Command{Use: "fleet", Short: "Look at and steer a fleet's updates in etcd (reboot lock, reports, stop-the-line)"}
	f.add(cmd)
	var release string
	lock := &cobra.Command{
		Use:   "lock --etcd URL [--release ID]",
		Short: "List the reboot lock's holders (and when each was taken), or release one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			e := &fleet.Etcd{Conn: f.conn, Group: f.group, ID: release}
			defer e.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			if release != "" {
				return releaseHolder(ctx, cmd.OutOrStdout(), e, release)
			}
			ls, err := e.Read(ctx)
			if err != nil {
				return err
			}
			return printLock(cmd.OutOrStdout(), ls, f.json)
		},
	}
	lock.Flags().StringVar(&release, "release", "", "remove this machine id from the holders")
	status := &cobra.Command{
		Use:   "status --etcd URL",
		Short: "Show the fleet's machines: counts by version and state, and the failed ones",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			fl := &fleet.Fleet{Conn: f.conn}
			defer fl.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			st, err := fl.Status(ctx)
			if err != nil {
				return err
			}
			return printFleet(cmd.OutOrStdout(), st, f.json)
		},
	}
	resume := &cobra.Command{
		Use:   "resume --etcd URL VERSION",
		Short: "Let the fleet apply VERSION despite the machines that reported it failed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			fl := &fleet.Fleet{Conn: f.conn}
			defer fl.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			if err := fl.Resume(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "resumed %s: machines apply it at their next check\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(lock, status, resume)
	return cmd
}

func releaseHolder(ctx context.Context, w io.Writer, e *fleet.Etcd, id string) error {
	for range 10 { // the document may change under us: read and swap again
		held, err := e.ReleaseHolder(ctx, id)
		if err != nil && ctx.Err() == nil && strings.Contains(err.Error(), "changed meanwhile") {
			continue
		}
		if err != nil {
			return err
		}
		if !held {
			return fmt.Errorf("%s does not hold the reboot lock", id)
		}
		fmt.Fprintf(w, "released %s\n", id)
		return nil
	}
	return errors.New("the semaphore kept changing: try again")
}

func printLock(w io.Writer, ls *fleet.LockState, asJSON bool) error {
	type holder struct {
		ID    string    `json:"id"`
		Taken time.Time `json:"taken,omitzero"`
	}
	out := struct {
		Key       string   `json:"key"`
		Exists    bool     `json:"exists"`
		Max       int      `json:"max"`
		Available int      `json:"available"`
		Holders   []holder `json:"holders"`
	}{Key: ls.Key, Exists: ls.Doc != nil, Holders: []holder{}}
	if ls.Doc != nil {
		out.Max, out.Available = ls.Doc.Max, ls.Doc.Max-len(ls.Doc.Holders)
		for _, h := range ls.Doc.Holders {
			out.Holders = append(out.Holders, holder{ID: h, Taken: ls.Holds[h].Taken})
		}
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if !out.Exists {
		_, err := fmt.Fprintf(w, "%s: no lock yet (the first machine creates it)\n", ls.Key)
		return err
	}
	fmt.Fprintf(w, "key:       %s\nmax:       %d\navailable: %d\n", out.Key, out.Max, out.Available)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOLDER\tTAKEN")
	for _, h := range out.Holders {
		taken := "unknown (not taken by slate: never expires)"
		if !h.Taken.IsZero() {
			taken = fmt.Sprintf("%s (%s ago)", h.Taken.Format(time.RFC3339), time.Since(h.Taken).Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%s\n", fleet.Printable(h.ID), taken)
	}
	return tw.Flush()
}

func printFleet(w io.Writer, st *fleet.FleetStatus, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(w, "%d machines\n\n", len(st.Machines))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSTATE\tMACHINES")
	versions := make([]string, 0, len(st.Counts))
	for v := range st.Counts {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	for _, v := range versions {
		states := make([]string, 0, len(st.Counts[v]))
		for s := range st.Counts[v] {
			states = append(states, s)
		}
		sort.Strings(states)
		for _, s := range states {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", fleet.Printable(v), fleet.Printable(s), st.Counts[v][s])
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Failed) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nfailed:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MACHINE\tHOST\tVERSION\tSTATE\tGAVE UP\tLAST ERROR")
	for _, m := range st.Failed {
		// what another machine wrote of itself: no terminal escapes
		p := fleet.Printable
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p(m.ID), p(m.Hostname), p(m.Version), p(m.State), p(strings.Join(m.Failed, ",")), p(m.LastError))
	}
	return tw.Flush()
}
