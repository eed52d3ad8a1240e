package qemu

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// HostAddr is the host as a guest on QEMU's user network sees it.
const HostAddr = "10.0.2.2"

// PXE serves a folder written by `slate build --format pxe` to a VM: QEMU's
// user network hands out the address and serves a small iPXE script by
// TFTP, which sets where the root comes from and chains the folder's
// boot.ipxe; an HTTP server on the host's loopback serves the folder too,
// for the root image (and, with Via "http", for the kernel and initramfs).
type PXE struct {
	// Dir is the folder with boot.ipxe, vmlinuz, initrd.img and usually
	// root.img.zst.
	Dir string
	// Via is how iPXE fetches boot.ipxe, the kernel and the initramfs:
	// "tftp" (the default; QEMU's TFTP server, slow: about 1 MiB/s under
	// TCG) or "http".
	Via string
	// RootURL overrides the root URL; default is root.img.zst on the
	// loopback HTTP server.
	RootURL string
	// Args are more kernel arguments (iPXE's slate-args).
	Args string

	tftp string
	srv  *http.Server
	addr string
}

// Start serves p.Dir and prepares the TFTP folder. Close stops both.
func (p *PXE) Start() error {
	if _, err := os.Stat(filepath.Join(p.Dir, "boot.ipxe")); err != nil {
		return fmt.Errorf("pxe: %s has no boot.ipxe (build it with slate build --format pxe): %w", p.Dir, err)
	}
	switch p.Via {
	case "":
		p.Via = "tftp"
	case "tftp", "http":
	default:
		return fmt.Errorf("pxe: via %q: want tftp or http", p.Via)
	}
	for _, s := range []string{p.RootURL, p.Args} {
		if strings.ContainsAny(s, "\n\r") {
			return errors.New("pxe: root URL and arguments must be one line")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("pxe: listen on loopback: %w", err)
	}
	p.addr = fmt.Sprintf("http://%s:%d", HostAddr, ln.Addr().(*net.TCPAddr).Port)
	p.srv = &http.Server{Handler: http.FileServer(http.Dir(p.Dir)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()

	// The TFTP folder: links to the build's files, and the script that
	// the firmware boots first.
	if p.tftp, err = os.MkdirTemp("", "slate-pxe-"); err != nil {
		p.Close()
		return err
	}
	entries, err := os.ReadDir(p.Dir)
	if err != nil {
		p.Close()
		return fmt.Errorf("pxe: %w", err)
	}
	abs, err := filepath.Abs(p.Dir)
	if err != nil {
		p.Close()
		return err
	}
	for _, e := range entries {
		if e.Name() == bootScript {
			continue // ours is written below; never through a link into Dir
		}
		if err := os.Symlink(filepath.Join(abs, e.Name()), filepath.Join(p.tftp, e.Name())); err != nil {
			p.Close()
			return fmt.Errorf("pxe: %w", err)
		}
	}
	root := p.RootURL
	if root == "" {
		root = p.addr + "/root.img.zst"
	}
	chain := "boot.ipxe"
	if p.Via == "http" {
		chain = p.addr + "/boot.ipxe"
	}
	script := fmt.Sprintf("#!ipxe\nset slate-root-url %s\nset slate-args %s\nchain %s\n", root, p.Args, chain)
	f, err := os.OpenFile(filepath.Join(p.tftp, bootScript), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err == nil {
		_, err = f.WriteString(script)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		p.Close()
		return fmt.Errorf("pxe: %w", err)
	}
	return nil
}

// bootScript is the name of the script the firmware fetches first.
const bootScript = "slate-vm.ipxe"

// Apply points opts at the PXE server.
func (p *PXE) Apply(opts *Options) {
	opts.BootFile, opts.TFTPDir = bootScript, p.tftp
}

// URL is the loopback HTTP server's address as the guest sees it.
func (p *PXE) URL() string { return p.addr }

// Close stops serving and removes the TFTP folder.
func (p *PXE) Close() {
	if p.srv != nil {
		_ = p.srv.Close()
	}
	if p.tftp != "" {
		_ = os.RemoveAll(p.tftp)
	}
}
