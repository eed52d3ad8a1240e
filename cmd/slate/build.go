package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/slateos/slate/builder"
	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/deb"
)

func newBuildCmd() *cobra.Command {
	var spec, out, cache, slateBin, ver, channel, rootURL string
	var sign []string
	var expires time.Duration
	var rollout string
	var embed, force bool
	var formats []string
	cmd := &cobra.Command{
		Use:   "build -c SPEC -o DIR",
		Short: "Build a bootable disk image (and PXE files, a live ISO) from a spec",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := configs.Load(spec)
			if err != nil {
				return err
			}
			if ver != "" {
				s.Version = ver
			}
			// SPEC.lock, when it is there, pins the packages (and a spec
			// that no longer matches it is refused)
			lock := deb.LockPath(spec)
			if _, err := os.Stat(lock); err != nil {
				lock = ""
			}
			rep, err := builder.Build(cmd.Context(), builder.Options{
				Spec: s, OutDir: out, Formats: formats, CacheDir: cache, Slate: slateBin,
				Progress: newProgress(), Channel: channel, SignKeys: sign, Expires: expires, Force: force, Rollout: rollout,
				EmbedRoot: embed, RootURL: rootURL, Lock: lock,
			})
			if err != nil {
				return flagError(err)
			}
			for _, a := range rep.Artifacts {
				fmt.Fprintf(cmd.OutOrStdout(), "%s/%s  %d bytes  sha256:%s\n", out, a.Path, a.Size, a.SHA256)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s/build.json  (%s %s, kernel %s, %.1fs)\n", out, rep.Name, rep.Version, rep.Kernel, rep.Seconds)
			return nil
		},
	}
	cmd.Flags().StringVarP(&spec, "config", "c", "", "image spec (YAML)")
	cmd.Flags().StringVarP(&out, "output", "o", "out", "output folder")
	cmd.Flags().StringSliceVar(&formats, "format", []string{"raw"}, "image formats: raw, qcow2, pxe (DIR/pxe/: kernel, initramfs, root, boot.ipxe), iso (DIR/live.iso, UEFI live ISO) (comma-separated)")
	cmd.Flags().BoolVar(&embed, "embed-root", false, "pxe: carry the root image inside the initramfs instead of fetching it by URL")
	cmd.Flags().StringVar(&rootURL, "root-url", "", "pxe: default URL of root.img.zst in boot.ipxe (http, https or tftp; default tftp://${next-server}/root.img.zst)")
	cmd.Flags().StringVar(&cache, "cache", "", "cache folder with the kernel and systemd-boot (default $SLATE_CACHE or .cache)")
	cmd.Flags().StringVar(&slateBin, "slate", "", "static slate binary to embed (default: this one)")
	cmd.Flags().StringVar(&ver, "version", "", "override the spec's version")
	cmd.Flags().StringVar(&channel, "channel", "", "once the build has succeeded, add the version to this channel folder (needs --sign)")
	cmd.Flags().StringArrayVar(&sign, "sign", nil, "private key to sign the channel manifest with (slate keygen); repeat it to sign with several keys during a key rotation")
	cmd.Flags().DurationVar(&expires, "expires", 0, "how long the channel's top manifest is trusted before `slate channel refresh` must re-sign it (default 168h)")
	cmd.Flags().StringVar(&rollout, "rollout", "", "give the published version to the fleet in waves: SHARE%:AFTER,..., like 10%:0h,50%:24h,100%:72h (shares cumulative, the last 100%; times after publishing); default all at once")
	cmd.Flags().BoolVar(&force, "force", false, "publish into a channel whose top manifest is of another image name or does not verify with --sign (every machine following it is affected)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// buildFlags maps the builder's Options fields to the flags that set them.
var buildFlags = map[string]string{
	"OutDir": "-o", "Formats": "--format", "CacheDir": "--cache", "Slate": "--slate",
	"Channel": "--channel", "SignKeys": "--sign", "Expires": "--expires", "Force": "--force", "Rollout": "--rollout",
	"EmbedRoot": "--embed-root", "RootURL": "--root-url", "Lock": "SPEC.lock",
}

// flagReplacer puts flag names in the place of "Options.Field".
var flagReplacer = func() *strings.Replacer {
	var pairs []string
	for f, flag := range buildFlags {
		pairs = append(pairs, "Options."+f, flag)
	}
	return strings.NewReplacer(pairs...)
}()

// flagError speaks of the command's flags where the builder's error
// speaks of its Options fields; the error chain stays intact.
func flagError(err error) error {
	msg := flagReplacer.Replace(err.Error())
	if msg == err.Error() {
		return err
	}
	return &cliError{msg: msg, err: err}
}

type cliError struct {
	msg string
	err error
}

func (e *cliError) Error() string { return e.msg }
func (e *cliError) Unwrap() error { return e.err }

// barProgress shows build steps as a progress bar on a terminal, sized by
// the steps the build really has (builder.Progress.Plan).
type barProgress struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func newProgress() builder.Progress {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	return &barProgress{w: os.Stderr}
}

func (p *barProgress) Plan(steps []string) {
	p.bar = progressbar.NewOptions(len(steps),
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription("building"),
		progressbar.OptionShowCount(),
		progressbar.OptionClearOnFinish(),
	)
}

func (p *barProgress) Step(name string) {
	if p.bar == nil {
		return
	}
	p.bar.Describe(name)
	_ = p.bar.Add(1)
}

func (p *barProgress) Done() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
