package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/slateos/slate/builder"
	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/deb"
)

func newPackagesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "packages",
		Short: "Resolve and pin a spec's Debian packages (SPEC.lock)",
	}
	cmd.AddCommand(newPackagesLockCmd("lock"), newPackagesLockCmd("update"), newPackagesFetchCmd())
	return cmd
}

// newPackagesLockCmd is "lock" (write SPEC.lock when there is none; a
// lock that no longer matches the spec is an error naming what differs)
// or "update" (resolve again and rewrite it).
func newPackagesLockCmd(name string) *cobra.Command {
	var spec string
	short := "Resolve the spec's packages and write SPEC.lock (a lock already there is kept if it matches)"
	if name == "update" {
		short = "Resolve the spec's packages again from the mirror and rewrite SPEC.lock"
	}
	cmd := &cobra.Command{
		Use:   name + " -c SPEC",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := configs.Load(spec)
			if err != nil {
				return err
			}
			lp := deb.LockPath(spec)
			if name == "lock" {
				old, err := deb.ReadLock(lp)
				if err != nil {
					return err
				}
				if old != nil {
					if err := old.Matches(s); err != nil {
						return fmt.Errorf("%s: %w", lp, err)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s is up to date with the spec (%d packages); slate packages update resolves again\n", lp, len(old.Packages))
					return nil
				}
			}
			res, err := (&deb.Client{}).ResolveSpec(cmd.Context(), s)
			if err != nil {
				return err
			}
			printNotes(cmd.ErrOrStderr(), res.Notes)
			if err := res.Lock.Write(lp); err != nil {
				return err
			}
			var size int64
			for _, p := range res.Lock.Packages {
				size += p.Size
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d packages (%d bytes of .deb)\n", lp, len(res.Lock.Packages), size)
			for _, src := range res.Lock.Sources {
				n := 0
				for _, p := range res.Lock.Packages {
					if p.Source == src.Suite {
						n++
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "  %d from %s %s (%s)\n", n, src.Mirror, src.Suite, src.Date)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&spec, "config", "c", "", "image spec (YAML)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func printNotes(w io.Writer, notes []string) {
	for _, n := range notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// newPackagesFetchCmd downloads what the lock names into the cache and
// unpacks it in memory: a check of the lock without a build.
func newPackagesFetchCmd() *cobra.Command {
	var spec, cache string
	cmd := &cobra.Command{
		Use:   "fetch -c SPEC",
		Short: "Fetch the .deb files SPEC.lock names into the cache (only missing ones) and check that they unpack",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := configs.Load(spec)
			if err != nil {
				return err
			}
			lp := deb.LockPath(spec)
			l, err := deb.ReadLock(lp)
			if err != nil {
				return err
			}
			if l == nil {
				return errors.New(lp + ": no lock; slate packages lock -c " + spec + " writes it")
			}
			if err := l.Matches(s); err != nil {
				return fmt.Errorf("%s: %w", lp, err)
			}
			if cache == "" {
				cache = builder.DefaultCacheDir()
			}
			names, paths, err := (&deb.Client{}).FetchLock(cmd.Context(), l, deb.MirrorOverrides(s.Debian), cache)
			if err != nil {
				return err
			}
			u, err := deb.Unpack(names, paths)
			if err != nil {
				return err
			}
			printNotes(cmd.ErrOrStderr(), u.Warnings)
			fmt.Fprintf(cmd.OutOrStdout(), "%d packages, %d paths, %d bytes unpacked\n", len(names), len(u.Paths()), u.Size())
			return nil
		},
	}
	cmd.Flags().StringVarP(&spec, "config", "c", "", "image spec (YAML)")
	cmd.Flags().StringVar(&cache, "cache", "", "cache folder (default $SLATE_CACHE or .cache)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
