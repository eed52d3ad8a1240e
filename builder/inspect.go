package builder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/slateos/slate/internal/boot/netroot"
	"github.com/slateos/slate/internal/bootentry"
	"github.com/slateos/slate/internal/cmdline"
	"github.com/slateos/slate/partitions"
)

// RAMReport describes the files of a boot from RAM: a PXE folder or a
// live ISO, as `slate inspect` shows them.
type RAMReport struct {
	Kind       string           `json:"kind"` // "pxe" or "iso"
	Path       string           `json:"path"`
	Title      string           `json:"title,omitempty"` // the script's or the entry's first line
	Embedded   bool             `json:"root_embedded"`
	RootURL    string           `json:"root_url,omitempty"` // the script's default
	RootSHA256 string           `json:"root_sha256"`
	RootSize   int64            `json:"root_size"`
	KernelArgs string           `json:"kernel_args"`
	Files      map[string]int64 `json:"files"` // name -> size
	Notes      []string         `json:"notes,omitempty"`
}

// IsRAMArtifact reports whether p is a PXE folder or a live ISO.
func IsRAMArtifact(p string) bool {
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		_, err := os.Stat(filepath.Join(p, PXEScript))
		return err == nil
	}
	return isISO(p)
}

// isISO looks for the ISO 9660 volume descriptor signature at block 16.
func isISO(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 5)
	if _, err := f.ReadAt(b, 16*2048+1); err != nil {
		return false
	}
	return string(b) == "CD001"
}

// InspectRAM reads a PXE folder or a live ISO.
func InspectRAM(p string) (*RAMReport, error) {
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return inspectPXE(p)
	}
	return inspectISO(p)
}

func inspectPXE(dir string) (*RAMReport, error) {
	script, err := os.ReadFile(filepath.Join(dir, PXEScript))
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", dir, err)
	}
	r := &RAMReport{Kind: "pxe", Path: dir, Files: map[string]int64{}}
	for _, line := range strings.Split(string(script), "\n") {
		switch {
		case strings.HasPrefix(line, "# slate "):
			if r.Title == "" {
				r.Title = strings.TrimPrefix(line, "# ")
			}
		case strings.HasPrefix(line, "isset ${"+rootURLVar+"} || set "+rootURLVar+" "):
			r.RootURL = strings.TrimPrefix(line, "isset ${"+rootURLVar+"} || set "+rootURLVar+" ")
		case strings.HasPrefix(line, "kernel "):
			r.KernelArgs = strings.TrimSpace(strings.TrimPrefix(line, "kernel "+PXEKernel))
		}
	}
	if r.KernelArgs == "" {
		return nil, fmt.Errorf("inspect %s: %s has no kernel line", dir, PXEScript)
	}
	if err := r.rootFromArgs(); err != nil {
		return nil, fmt.Errorf("inspect %s: %s: %w", dir, PXEScript, err)
	}
	for _, n := range []string{PXEKernel, PXEInitrd, PXERoot, PXEScript} {
		if st, err := os.Stat(filepath.Join(dir, n)); err == nil {
			r.Files[n] = st.Size()
		} else if n != PXERoot {
			return nil, fmt.Errorf("inspect %s: %w", dir, err)
		}
	}
	_, hasRoot := r.Files[PXERoot]
	r.Embedded = !strings.Contains(r.KernelArgs, netroot.ArgURL+"=")
	if !r.Embedded && !hasRoot && strings.Contains(r.RootURL, PXERoot) {
		r.Notes = append(r.Notes, PXERoot+" is not in the folder: the root URL must serve it")
	}
	return r, nil
}

func inspectISO(p string) (*RAMReport, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", p, err)
	}
	l, err := partitions.ReadGPT(f, size)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: not a slate live ISO: %w", p, err)
	}
	esp, ok := l.ESP()
	if !ok {
		return nil, fmt.Errorf("inspect %s: no EFI system partition: not a slate live ISO", p)
	}
	e, err := bootentry.OpenESP(f, esp)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", p, err)
	}
	ent, err := e.ReadFile(liveEntry)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: not a slate live ISO: %w", p, err)
	}
	keys := bootentry.ParseKeys(ent)
	r := &RAMReport{Kind: "iso", Path: p, Title: keys["title"], Embedded: true, KernelArgs: keys["options"],
		Files: map[string]int64{filepath.Base(p): size}}
	if err := r.rootFromArgs(); err != nil {
		return nil, fmt.Errorf("inspect %s: %s: %w", p, liveEntry, err)
	}
	for _, n := range []string{keys["linux"], keys["initrd"]} {
		b, err := e.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("inspect %s: %w", p, err)
		}
		r.Files[n] = int64(len(b))
	}
	return r, nil
}

// rootFromArgs reads the root's hash and size from the kernel arguments.
func (r *RAMReport) rootFromArgs() error {
	args := cmdline.Parse(r.KernelArgs).Map()
	r.RootSHA256 = args[netroot.ArgSHA256]
	n, err := strconv.ParseInt(args[netroot.ArgSize], 10, 64)
	if r.RootSHA256 == "" || err != nil {
		return errors.New("no " + netroot.ArgSHA256 + " and " + netroot.ArgSize + " on the kernel line")
	}
	r.RootSize = n
	return nil
}

// WriteJSON prints the report for programs.
func (r *RAMReport) WriteJSON(w io.Writer) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteText prints the report for people.
func (r *RAMReport) WriteText(w io.Writer) error {
	var b bytes.Buffer
	what := map[string]string{"pxe": "PXE files", "iso": "live ISO (UEFI, CD-ROM or USB stick)"}[r.Kind]
	fmt.Fprintf(&b, "%s: %s\n", r.Path, what)
	if r.Title != "" {
		fmt.Fprintf(&b, "image:    %s\n", r.Title)
	}
	switch {
	case r.Embedded:
		fmt.Fprintf(&b, "root:     carried in the initramfs, %d bytes, sha256 %s\n", r.RootSize, r.RootSHA256)
	default:
		fmt.Fprintf(&b, "root:     fetched at boot from %s (default), %d bytes, sha256 %s\n", r.RootURL, r.RootSize, r.RootSHA256)
	}
	fmt.Fprintf(&b, "kernel:   %s\n", r.KernelArgs)
	names := make([]string, 0, len(r.Files))
	for n := range r.Files {
		names = append(names, n)
	}
	sortStrings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "file:     %s  %d bytes\n", n, r.Files[n])
	}
	for _, v := range r.Notes {
		fmt.Fprintf(&b, "note:     %s\n", v)
	}
	_, err := w.Write(b.Bytes())
	return err
}
