package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/internal/qemu"
)

// netSpec is an image whose services report, from inside, how the machine
// booted: `slate inspect` and `slate update status` run once each. The
// update section is there to show that the updater stays off when the
// root is in RAM.
func netSpec(t testing.TB) string {
	t.Helper()
	keys := filepath.Join(t.TempDir(), "keys")
	if out, err := slate(t, "keygen", "-o", keys); err != nil {
		t.Fatalf("slate keygen: %v\n%s", err, out)
	}
	return writeSpec(t, fmt.Sprintf(`name: slate-net
version: 1.0.0
hostname: net-host
root:
  files:
    - src: %s
      dst: /usr/local/bin/probe
      mode: "0755"
services:
  - name: inspect
    command: /usr/bin/slate
    args: [inspect]
    type: oneshot
    restart: never
  - name: upstatus
    command: /usr/bin/slate
    args: [update, status]
    type: oneshot
    restart: never
    after: [inspect]
update:
  channel: http://10.0.2.2:1/
  public_key: %s
`, probeBin, filepath.Join(keys, "update.pub")))
}

// netboot boots QEMU from the PXE folder p serves.
func netboot(t testing.TB, p *qemu.PXE, opts qemu.Options) *qemu.VM {
	t.Helper()
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	p.Apply(&opts)
	opts.NoReboot = true
	if opts.SerialFile == "" {
		opts.SerialFile = filepath.Join(t.TempDir(), "serial.log")
	}
	return boot(t, opts.Image, opts)
}

// TestNetbootOverTFTP: SeaBIOS's iPXE gets an address from QEMU's user
// network, fetches boot.ipxe, the kernel and the initramfs by TFTP; init
// brings up the network, fetches the root over HTTP from the host's
// loopback, checks it and boots it; the system knows it has no slot.
func TestNetbootOverTFTP(t *testing.T) {
	needQEMU(t)
	t.Parallel()
	out := build(t, netSpec(t), "--format", "pxe")
	p := &qemu.PXE{Dir: filepath.Join(out, "pxe"), Via: "tftp"}
	vm := netboot(t, p, qemu.Options{})
	waitLine(t, vm, `^SLATE-READY version=1\.0\.0 slot=none$`, 4*time.Minute)
	lines := vm.Lines()
	want := []string{
		`^SLATE-NET iface=eth0 addr=10\.0\.2\.15/24 gw=10\.0\.2\.2 took=`, // init's lease
		`^SLATE-NET iface=eth0 addr=10\.0\.2\.15/24 gw=10\.0\.2\.2$`,      // the supervisor renewing it
		`^SLATE-NETROOT state=fetching url=` + regexp.QuoteMeta(p.URL()) + `/root\.img\.zst size=\d+$`,
		`^SLATE-NETROOT state=verified sha256=[0-9a-f]{64} size=\d+ transferred=\d+ compressed=true `,
		`^SLATE-NETROOT state=mounted dev=/dev/loop0 `,
		`^SLATE-STATE action=tmpfs `,
		`^SLATE-INIT slot=none root=/dev/loop0 `,
		`^\[inspect\] boot:\s+network-booted: root in RAM \(fetched from ` + regexp.QuoteMeta(p.URL()) + `/root\.img\.zst\), /var in tmpfs`,
		`^\[inspect\] root:\s+/dev/loop0 \(\d+ bytes, sha256 [0-9a-f]{64}\)$`,
		`^\[inspect\] state:\s+tmpfs$`,
		`^\[upstatus\] running:\s+network-booted: .*no slot, updates are not applied on this machine$`,
		`^\[upstatus\] updater:\s+not running`,
	}
	for _, re := range want {
		if countMatches(lines, re) != 1 {
			t.Errorf("console: want one line matching %q", re)
		}
	}
	// The root's hash in the boot script is the one init checked.
	script, err := os.ReadFile(filepath.Join(out, "pxe", "boot.ipxe"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`slate\.root_sha256=([0-9a-f]{64})`).FindSubmatch(script)
	if m == nil || countMatches(lines, `^SLATE-NETROOT state=verified sha256=`+string(m[1])+` `) != 1 {
		t.Errorf("boot.ipxe names a root sha256 %q that init did not report as verified", m)
	}
	noneMatch(t, lines, `SLATE-SERVICE name=slate-updated`, "the updater started on a machine without a slot")
	noneMatch(t, lines, `^SLATE-FAILED`, "netboot failed")
}

// TestNetbootEmbeddedRootWithStateDisk: the root inside the initramfs
// (fetched with the kernel over HTTP), a disk with a partition labelled
// STATE, which init formats and mounts on /var, and an Ignition config
// named on the kernel command line through the script's slate-args.
func TestNetbootEmbeddedRootWithStateDisk(t *testing.T) {
	needQEMU(t)
	sgdisk := needTool(t, "sgdisk")
	t.Parallel()
	out := build(t, netSpec(t), "--format", "pxe", "--embed-root")
	if _, err := os.Stat(filepath.Join(out, "pxe", "root.img.zst")); !os.IsNotExist(err) {
		t.Errorf("--embed-root wrote root.img.zst beside the initramfs (%v)", err)
	}
	disk := filepath.Join(t.TempDir(), "state.raw")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 512<<20); err != nil {
		t.Fatal(err)
	}
	// Partition 1 is slate's STATE, smaller than the disk (it must not be
	// grown: the layout is the operator's); partition 2 is labelled STATE
	// by someone else (another type) and must be left alone.
	if b, err := exec.Command(sgdisk, "-n", "1:0:+256M", "-t", "1:4D21B016-B534-45C2-A9FB-5C16E091FD2D", "-c", "1:STATE",
		"-n", "2:0:+64M", "-t", "2:8300", "-c", "2:STATE", disk).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, b)
	}
	partInfo := func(n string) string {
		b, err := exec.Command(sgdisk, "-i", n, disk).CombinedOutput()
		if err != nil {
			t.Fatalf("sgdisk -i %s: %v\n%s", n, err, b)
		}
		return string(b)
	}
	before := partInfo("1")
	// Ignition by URL through the script's slate-args, as a per-machine
	// menu would pass it; what it writes lands on the STATE disk.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ignConfig(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(cfg) }), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	ign := fmt.Sprintf("ignition.config.url=http://%s:%d/config.ign", qemu.HostAddr, l.Addr().(*net.TCPAddr).Port)
	p := &qemu.PXE{Dir: filepath.Join(out, "pxe"), Via: "http", Args: ign}
	vm := netboot(t, p, qemu.Options{Image: disk})
	waitLine(t, vm, `^SLATE-READY version=1\.0\.0 slot=none$`, 4*time.Minute)
	if m := nthMatch(t, vm, `^\[igncheck\] IGNCHECK (\w+) version=1\.0\.0(.*)$`, 1, time.Minute); m[1] != "ok" {
		t.Errorf("Ignition on a netbooted machine: %s%s", m[1], m[2])
	}
	lines := vm.Lines()
	for _, re := range []string{
		`^SLATE-IGNITION state=applied source=cmdline`,
		`^SLATE-NETROOT state=verified source=initramfs sha256=[0-9a-f]{64} `,
		`^SLATE-NETROOT state=mounted dev=/dev/loop0 `,
		`^SLATE-STATE action=created dev=/dev/vda1 `,
		`^\[inspect\] boot:\s+booted live: root in RAM \(carried in the initramfs\), STATE on /dev/vda1;`,
	} {
		if countMatches(lines, re) != 1 {
			t.Errorf("console: want one line matching %q", re)
		}
	}
	noneMatch(t, lines, `^SLATE-NET .* took=`, "an embedded root needs no network in init")
	noneMatch(t, lines, `^SLATE-STATE action=tmpfs`, "STATE fell back to tmpfs with a STATE partition present")
	noneMatch(t, lines, `^SLATE-STATE action=grown`, "STATE of another disk layout was grown")
	vm.Kill()
	if after := partInfo("1"); after != before {
		t.Errorf("partition 1 changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// Partition 2 (another system's STATE) has no ext4 superblock.
	start := regexp.MustCompile(`First sector: (\d+)`).FindStringSubmatch(partInfo("2"))
	if start == nil {
		t.Fatal("sgdisk -i 2: no first sector")
	}
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	magic := make([]byte, 2)
	if _, err := f.ReadAt(magic, int64(mustAtoi(start[1]))*512+1024+0x38); err != nil {
		t.Fatal(err)
	}
	if magic[0] == 0x53 && magic[1] == 0xef {
		t.Error("partition 2, labelled STATE but of another type, was formatted")
	}
}

// TestNetbootBadRootStopsTheBoot: a root that does not match the kernel
// command line, or cannot be fetched, stops the boot in init with the
// reason, and is never mounted.
func TestNetbootBadRootStopsTheBoot(t *testing.T) {
	needQEMU(t)
	t.Parallel()
	out := build(t, defaultSpec(), "--format", "pxe")
	good := filepath.Join(out, "pxe")
	for _, tc := range []struct {
		name    string
		mutate  func(t *testing.T, dir string)
		rootURL string
		reason  string
	}{
		{
			name: "wrong sha256",
			mutate: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "boot.ipxe")
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				re := regexp.MustCompile(`slate\.root_sha256=([0-9a-f])`)
				b = re.ReplaceAllFunc(b, func(m []byte) []byte {
					c := m[len(m)-1]
					if c == '0' {
						c = '1'
					} else {
						c = '0'
					}
					return append(m[:len(m)-1:len(m)-1], c)
				})
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			reason: `root image sha256 is [0-9a-f]{64}, the kernel command line says slate\.root_sha256=`,
		},
		{
			name:    "unreachable",
			rootURL: "http://10.0.2.2:1/root.img.zst",
			reason:  `giving up at byte 0 after \d+ failed attempts`,
		},
		{
			name: "truncated",
			mutate: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "root.img.zst")
				st, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(p, st.Size()/2); err != nil {
					t.Fatal(err)
				}
			},
			reason: `root image is truncated: got \d+ of \d+ bytes`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "pxe")
			copyTree(t, good, dir)
			if tc.mutate != nil {
				tc.mutate(t, dir)
			}
			vm := netboot(t, &qemu.PXE{Dir: dir, Via: "http", RootURL: tc.rootURL}, qemu.Options{})
			m := waitLine(t, vm, `^SLATE-FAILED stage=(\S+) err="(.*)"$`, 4*time.Minute)
			if m[1] != "netroot" || !regexp.MustCompile(tc.reason).MatchString(m[2]) {
				t.Errorf("SLATE-FAILED stage=%s err=%q; want stage netroot and %q", m[1], m[2], tc.reason)
			}
			// init reboots after a failure, which ends QEMU (NoReboot): once
			// it has exited, no later line can come
			select {
			case <-vm.Exited():
			case <-time.After(2 * time.Minute):
				t.Fatal("QEMU still runs 2 minutes after the failure: init did not reboot")
			}
			lines := vm.Lines()
			noneMatch(t, lines, `^SLATE-NETROOT state=(verified|mounted)|^SLATE-INIT|^SLATE-READY`, "a bad root went on")
		})
	}
}

// TestLiveISO: the ISO boots under UEFI as a CD-ROM (El Torito) and, as if
// written to a USB stick, as a disk (its GPT), to SLATE-READY with the
// root in RAM.
func TestLiveISO(t *testing.T) {
	needQEMU(t)
	t.Parallel()
	out := build(t, defaultSpec(), "--format", "iso")
	iso := filepath.Join(out, "live.iso")
	if _, err := os.Stat(filepath.Join(out, "disk.raw")); !os.IsNotExist(err) {
		t.Errorf("--format iso also left disk.raw (%v)", err)
	}
	for _, asDisk := range []bool{false, true} {
		name := "cdrom"
		if asDisk {
			name = "usb-disk"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			opts := qemu.Options{CDROM: iso, VarsFile: filepath.Join(dir, "vars.fd"), SerialFile: filepath.Join(dir, "serial.log"), NoReboot: true}
			image := ""
			if asDisk {
				image = filepath.Join(dir, "stick.raw")
				copyTree(t, iso, image)
				opts.CDROM = ""
			}
			vm := boot(t, image, opts)
			waitLine(t, vm, `^SLATE-READY version=1\.0\.0 slot=none$`, 4*time.Minute)
			lines := vm.Lines()
			if countMatches(lines, `^SLATE-NETROOT state=verified source=initramfs `) != 1 {
				t.Error("console: the root carried in the initramfs was not verified once")
			}
			if !strings.Contains(strings.Join(lines, "\n"), "SLATE-INIT slot=none root=/dev/loop0") {
				t.Error("console: no SLATE-INIT with the loop root")
			}
		})
	}
}
