// Command hwprobe runs as a service in the hardware end-to-end test. It
// waits for the number of disks given as its argument (30 s at most),
// prints every SCSI host and every disk with the PCI driver of the
// controller behind it, the disk that holds the root, and, for every
// wired interface, its driver and a DHCPv4 lease asked for on it alone
// (the address is not configured: the supervisor owns the network), then
// powers the machine off.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"

	"github.com/slateos/slate/internal/boot/netconf"
)

func main() {
	log.SetOutput(io.Discard) // dhclient logs every packet
	if len(os.Args) > 1 {
		// Wait for that many disks: a SAS controller finds its disks
		// by a topology scan that may end after the boot is up.
		want, _ := strconv.Atoi(os.Args[1])
		t0 := time.Now()
		for n := countDisks(); n < want && time.Since(t0) < 30*time.Second; n = countDisks() {
			time.Sleep(250 * time.Millisecond)
		}
		fmt.Printf("HWPROBE disks=%d waited=%dms\n", countDisks(), time.Since(t0).Milliseconds())
	}
	hosts()
	disks()
	root()
	nics()
	fmt.Println("HWPROBE done")
	if out, err := exec.Command("/usr/bin/slate", "poweroff").CombinedOutput(); err != nil {
		fmt.Printf("HWPROBE-FAILED poweroff: %v %s\n", err, out)
	}
}

// pciDriver walks up from a device in /sys to the PCI device it hangs off
// and returns that device's driver.
func pciDriver(dev string) string {
	p, err := filepath.EvalSymlinks(dev)
	if err != nil {
		return "none"
	}
	for ; p != "/sys/devices" && p != "/" && p != "."; p = filepath.Dir(p) {
		sub, err := os.Readlink(filepath.Join(p, "subsystem"))
		if err != nil || filepath.Base(sub) != "pci" {
			continue
		}
		drv, err := os.Readlink(filepath.Join(p, "driver"))
		if err != nil {
			return "none"
		}
		return filepath.Base(drv)
	}
	return "none"
}

// hosts prints every SCSI host with its controller's driver and how many
// SAS phys it registered.
func hosts() {
	ents, _ := os.ReadDir("/sys/class/scsi_host")
	phys, _ := os.ReadDir("/sys/class/sas_phy")
	for _, e := range ents {
		n := 0
		for _, p := range phys {
			if strings.HasPrefix(p.Name(), "phy-"+strings.TrimPrefix(e.Name(), "host")+":") {
				n++
			}
		}
		fmt.Printf("HWPROBE host=%s driver=%s sas_phys=%d\n", e.Name(), pciDriver(filepath.Join("/sys/class/scsi_host", e.Name(), "device")), n)
	}
}

func countDisks() int {
	n := 0
	ents, _ := os.ReadDir("/sys/block")
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "loop") && !strings.HasPrefix(e.Name(), "ram") {
			n++
		}
	}
	return n
}

func disks() {
	ents, err := os.ReadDir("/sys/block")
	if err != nil {
		fmt.Printf("HWPROBE-FAILED /sys/block: %v\n", err)
		return
	}
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/sys/block", n, "size"))
		fmt.Printf("HWPROBE disk=%s driver=%s sectors=%s\n", n, pciDriver(filepath.Join("/sys/block", n, "device")), strings.TrimSpace(string(b)))
	}
}

// root prints the device mounted on / and the disk it is a partition of.
func root() {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		fmt.Printf("HWPROBE-FAILED mounts: %v\n", err)
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 || fs[1] != "/" || !strings.HasPrefix(fs[0], "/dev/") {
			continue
		}
		part := filepath.Base(fs[0])
		p, err := filepath.EvalSymlinks(filepath.Join("/sys/class/block", part))
		if err != nil {
			fmt.Printf("HWPROBE-FAILED root %s: %v\n", part, err)
			return
		}
		disk := filepath.Base(filepath.Dir(p))
		fmt.Printf("HWPROBE root=%s disk=%s driver=%s\n", fs[0], disk, pciDriver(filepath.Join("/sys/block", disk, "device")))
		return
	}
	fmt.Println("HWPROBE-FAILED no /dev/... mounted on /")
}

func nics() {
	names, err := netconf.Wired("/sys/class/net")
	if err != nil {
		fmt.Printf("HWPROBE-FAILED nics: %v\n", err)
		return
	}
	for _, n := range names {
		drv := pciDriver(filepath.Join("/sys/class/net", n, "device"))
		link, err := netlink.LinkByName(n)
		if err != nil {
			fmt.Printf("HWPROBE nic=%s driver=%s err=%q\n", n, drv, err.Error())
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		lease, err := "none", fmt.Errorf("no answer")
		for r := range dhclient.SendRequests(ctx, []netlink.Link{link}, true, false, dhclient.Config{Timeout: 5 * time.Second, Retries: 3}, 20*time.Second) {
			if r.Err != nil {
				err = r.Err
				continue
			}
			if msg, _ := r.Lease.Message(); msg != nil {
				lease, err = msg.YourIPAddr.String(), nil
			}
		}
		cancel()
		if err != nil {
			fmt.Printf("HWPROBE nic=%s driver=%s mac=%s err=%q\n", n, drv, link.Attrs().HardwareAddr, err.Error())
			continue
		}
		fmt.Printf("HWPROBE nic=%s driver=%s mac=%s lease=%s\n", n, drv, link.Attrs().HardwareAddr, lease)
	}
}
