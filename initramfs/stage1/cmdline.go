// Package stage1 is slate's init in the initramfs: it runs as PID 1 from
// the kernel, loads the boot modules, finds and mounts the slot's root
// read-only, prepares STATE (/var) and a writable /etc, and switches root
// into slate as PID 1 of the booted system.
package stage1

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/slateos/slate/internal/boot/netroot"
	"github.com/slateos/slate/internal/cmdline"
)

// Cmdline is what init reads from the kernel command line.
type Cmdline struct {
	Root     string // PARTUUID of the slot's root partition (upper case)
	Slot     string // a or b
	Debug    bool   // slate.debug: wait instead of rebooting on failure
	RootWait int    // slate.rootwait=<seconds>, default 30
	// Break stops init with a failure at a stage (slate.break=modules,
	// root, state, etc or switch_root: the stages of the plan that may be
	// broken, see stages), as a real failure there would: a fleet can
	// rehearse its fall-back with it.
	Break string
	// RAM is set when the root is an image held in RAM (slate.root_sha256
	// and slate.root_size, with slate.root_url when it is fetched): a
	// network boot or a live ISO. Root and Slot are empty then.
	RAM    bool
	Net    netroot.Source
	BootIf string // BOOTIF=01-<mac>: the interface the machine netbooted from
	Raw    map[string]string
}

// ParseCmdline parses /proc/cmdline. A disk boot has root=PARTUUID=<guid>
// and slate.slot=: the boot entry names its root partition, so the entry
// is the single source of truth for what boots. A boot from RAM has
// slate.root_sha256= and slate.root_size= instead (and slate.root_url=
// when the root is fetched rather than carried in the initramfs).
func ParseCmdline(s string) (Cmdline, error) {
	kc := cmdline.Parse(s)
	c := Cmdline{RootWait: 30, Raw: kc.Map()}
	// Each key's last value counts, as for the kernel and PID 1.
	if v, ok := kc.Lookup(cmdline.Root); ok {
		id, ok := strings.CutPrefix(v, "PARTUUID=")
		// A GUID in its 36-character form, hex digits only: ToUpper
		// would turn a byte that is not UTF-8 into three.
		if _, err := uuid.Parse(id); !ok || len(id) != 36 || err != nil {
			return c, fmt.Errorf("kernel command line: root=%q: want root=PARTUUID=<guid>", v)
		}
		c.Root = strings.ToUpper(id)
	}
	if v, ok := kc.Lookup(cmdline.Slot); ok {
		if v != "a" && v != "b" {
			return c, fmt.Errorf("kernel command line: slate.slot=%q: want a or b", v)
		}
		c.Slot = v
	}
	if v, ok := kc.Lookup(cmdline.Break); ok {
		names := breakStages()
		if !slices.Contains(names, v) {
			return c, fmt.Errorf("kernel command line: slate.break=%q: want %s or %s", v, strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
		}
		c.Break = v
	}
	if v, ok := kc.Lookup(cmdline.BootIf); ok {
		// pxelinux's form, which iPXE scripts copy: 01-<mac, hyphens>
		// Only a hint of which interface to ask first: one that does
		// not parse (a loader that left it empty) is ignored.
		mac := strings.TrimPrefix(v, "01-")
		if _, err := net.ParseMAC(strings.ReplaceAll(mac, "-", ":")); err == nil {
			c.BootIf = strings.ToLower(strings.ReplaceAll(mac, "-", ":"))
		}
	}
	c.Debug = kc.Flag(cmdline.Debug)
	if v, ok := kc.Lookup(cmdline.RootWait); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3600 {
			return c, fmt.Errorf("kernel command line: slate.rootwait=%q: want seconds 1..3600", v)
		}
		c.RootWait = n
	}
	src, ram, err := netroot.ParseArgs(c.Raw)
	if err != nil {
		return c, err
	}
	if ram {
		if c.Root != "" {
			return c, fmt.Errorf("kernel command line has both root=PARTUUID= (a disk slot) and %s= (a root in RAM): want one", netroot.ArgSHA256)
		}
		c.RAM, c.Net = true, src
		return c, nil
	}
	if c.Root == "" {
		return c, fmt.Errorf("kernel command line has no root=PARTUUID=<guid> (boot from a disk slot) and no %s= (boot from RAM)", netroot.ArgSHA256)
	}
	if c.Slot == "" {
		return c, fmt.Errorf("kernel command line has no slate.slot=a|b")
	}
	return c, nil
}
