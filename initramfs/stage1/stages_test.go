package stage1

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/internal/boot/bootinfo"
	"github.com/slateos/slate/internal/boot/netconf"
	"github.com/slateos/slate/internal/bootlog"
	"github.com/slateos/slate/partitions"
)

// fakeSys records what init asks of the kernel. failMount makes a mount
// onto a target ending in the given path fail.
type fakeSys struct {
	root      string
	mounts    []string // "<fstype> <target relative to root>"
	failMount string
	switched  string
	resized   []string
	loaded    []string
	loop      string // LoopAttach's device; "" fails
}

var errFake = errors.New("fake kernel says no")

func (f *fakeSys) rel(p string) string { return strings.TrimPrefix(p, f.root) }

func (f *fakeSys) Mount(source, target, fstype string, flags uintptr, data string) error {
	if f.failMount != "" && strings.HasSuffix(target, f.failMount) {
		return errFake
	}
	if fstype == "" {
		fstype = "bind"
	}
	f.mounts = append(f.mounts, fstype+" "+f.rel(target))
	return nil
}

func (f *fakeSys) SwitchRoot(newRoot, init string) error {
	f.switched = f.rel(newRoot) + " " + init
	return nil
}

func (f *fakeSys) Reboot() error         { return nil }
func (f *fakeSys) KernelRelease() string { return "6.1.0-test" }

func (f *fakeSys) LoadModule(path, params string) error {
	f.loaded = append(f.loaded, filepath.Base(path)+" "+params)
	return nil
}

func (f *fakeSys) ResizePartition(disk *os.File, num int, start, size int64) error {
	f.resized = append(f.resized, fmt.Sprintf("%s %d %d %d", f.rel(disk.Name()), num, start, size))
	return nil
}

func (f *fakeSys) LoopAttach(path string) (string, error) {
	if f.loop == "" {
		return "", errFake
	}
	return f.loop, nil
}

func (f *fakeSys) NetUp(ctx context.Context, cl Cmdline) (netconf.Lease, error) {
	return netconf.Lease{}, errors.New("no network in a host test")
}

const (
	testSeed  = "stage1-test"
	imageSize = 64 << 20
)

// fakeMachine is a root folder laid out as the kernel would show init a
// machine: /proc, a module tree, sysfs with one disk (vda, slate's layout
// written for an image of imageSize on a disk of diskSize) and /dev
// nodes as plain files.
type fakeMachine struct {
	t      *testing.T
	root   string
	layout partitions.Layout
	sys    *fakeSys
}

func newMachine(t *testing.T, cmdline string, diskSize int64) *fakeMachine {
	t.Helper()
	m := &fakeMachine{t: t, root: t.TempDir()}
	m.sys = &fakeSys{root: m.root}
	m.write("/proc/cmdline", cmdline+"\n")
	m.write("/proc/meminfo", "MemTotal:        1000000 kB\nMemFree:          800000 kB\nMemAvailable:     900000 kB\n")
	mods := "/lib/modules/6.1.0-test/"
	m.write(mods+"modules.dep", "kernel/fs/ext4.ko:\nkernel/fs/overlay.ko:\nkernel/drivers/block/loop.ko:\nkernel/drivers/block/virtio_blk.ko:\n")
	m.write(mods+"modules.alias", "alias virtio:d00000002v* virtio_blk\n")
	m.write("/sys/devices/pci0000:00/virtio1/modalias", "virtio:d00000002v00001AF4\n")
	m.mkdir("/sys/module")
	m.mkdir("/sys/block")
	m.write("/newroot/sbin/init", "")
	m.mkdir("/newroot/etc")
	m.mkdir("/newroot/home")
	m.mkdir("/newroot/srv")
	if diskSize > 0 {
		l, err := partitions.Plan(imageSize, 8<<20, 16<<20, testSeed)
		if err != nil {
			t.Fatal(err)
		}
		m.layout = l
		m.mkdir("/dev")
		f, err := os.Create(m.path("/dev/vda"))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(diskSize); err != nil {
			t.Fatal(err)
		}
		if err := partitions.WriteGPT(f, l); err != nil {
			t.Fatal(err)
		}
		f.Close()
		m.write("/sys/block/vda/size", fmt.Sprint(diskSize/512))
		for _, p := range l.Parts {
			name := fmt.Sprintf("vda%d", p.Num)
			m.write("/sys/block/vda/"+name+"/partition", fmt.Sprint(p.Num))
			if err := os.WriteFile(m.path("/dev/"+name), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(m.path("/dev/"+name), p.Size); err != nil {
				t.Fatal(err)
			}
		}
	}
	return m
}

func (m *fakeMachine) path(p string) string { return filepath.Join(m.root, p) }

func (m *fakeMachine) write(p, data string) {
	m.t.Helper()
	if err := os.MkdirAll(filepath.Dir(m.path(p)), 0o755); err != nil {
		m.t.Fatal(err)
	}
	if err := os.WriteFile(m.path(p), []byte(data), 0o644); err != nil {
		m.t.Fatal(err)
	}
}

func (m *fakeMachine) mkdir(p string) {
	m.t.Helper()
	if err := os.MkdirAll(m.path(p), 0o755); err != nil {
		m.t.Fatal(err)
	}
}

// diskCmdline boots slot a of the fake disk.
func (m *fakeMachine) rootGUID() string {
	return partitions.DeriveGUID(testSeed, partitions.LabelRootA)
}

// boot runs init's stages on the machine and returns the boot, the
// contract lines printed (SLATE-FAILED included) and the error run returned.
func (m *fakeMachine) boot() (*boot, []string, error) {
	m.t.Helper()
	var out bytes.Buffer
	bootlog.SetEvents(&out)
	defer bootlog.SetEvents(nil)
	b := &boot{root: m.root, sys: m.sys, start: time.Now(), procStart: time.Now(), ramLimit: time.Minute}
	err := b.run()
	if err != nil {
		b.failed(err)
	}
	return b, strings.Split(strings.TrimSpace(out.String()), "\n"), err
}

func diskLine(guid string, extra ...string) string {
	return strings.Join(append([]string{"root=PARTUUID=" + guid, "ro slate.slot=a panic=10"}, extra...), " ")
}

func names(list []stage) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.name)
	}
	return out
}

func TestMain(m *testing.M) {
	logrus.SetOutput(io.Discard)
	os.Exit(m.Run())
}

func TestStagesOrder(t *testing.T) {
	disk := []string{"mount", "cmdline", "modules", "root", "state", "etc", "tmp", "switch_root"}
	ram := []string{"mount", "cmdline", "modules", "root", "netroot", "state", "etc", "tmp", "switch_root"}
	if got := names(stages(false)); !reflect.DeepEqual(got, disk) {
		t.Errorf("disk boot stages %v, want %v", got, disk)
	}
	if got := names(stages(true)); !reflect.DeepEqual(got, ram) {
		t.Errorf("RAM boot stages %v, want %v", got, ram)
	}
	// run picks the plan after cmdline: up to there both must agree.
	for i := 0; i <= slices.Index(disk, "cmdline"); i++ {
		if d, r := stages(false)[i], stages(true)[i]; d.name != r.name || d.brk != r.brk {
			t.Errorf("stage %d: disk %q, RAM %q", i, d.name, r.name)
		}
	}
	want := []string{"modules", "root", "state", "etc", "switch_root"}
	if got := breakStages(); !reflect.DeepEqual(got, want) {
		t.Errorf("slate.break stages %v, want %v", got, want)
	}
	var ramBrk []string
	for _, s := range stages(true) {
		if s.brk {
			ramBrk = append(ramBrk, s.name)
		}
	}
	if !reflect.DeepEqual(ramBrk, want) {
		t.Errorf("RAM boot slate.break stages %v, want %v", ramBrk, want)
	}
	// The message names them as the README does.
	_, err := ParseCmdline(diskLine(strings.Repeat("A", 8)+"-AAAA-AAAA-AAAA-"+strings.Repeat("A", 12), "slate.break=later"))
	if err == nil || !strings.Contains(err.Error(), "want modules, root, state, etc or switch_root") {
		t.Errorf("slate.break=later: %v", err)
	}
}

func contains(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestBootFromDisk(t *testing.T) {
	m := newMachine(t, "", 128<<20)
	m.write("/proc/cmdline", diskLine(m.rootGUID()))
	b, lines, err := m.boot()
	if err == nil || !strings.Contains(err.Error(), "exec of /sbin/init returned") {
		t.Fatalf("run: %v, want the fake switch_root to return", err)
	}
	if want := names(stages(false)); !reflect.DeepEqual(b.ran, want) {
		t.Errorf("ran %v, want %v", b.ran, want)
	}
	wantMounts := []string{
		"proc /proc", "sysfs /sys", "devtmpfs /dev", "tmpfs /run",
		"ext4 /newroot", "ext4 /newroot/var", "overlay /newroot/etc",
		"bind /newroot/home", "bind /newroot/srv", // no /root in this root
		"tmpfs /newroot/tmp",
	}
	if !reflect.DeepEqual(m.sys.mounts, wantMounts) {
		t.Errorf("mounts\n%q\nwant\n%q", m.sys.mounts, wantMounts)
	}
	if m.sys.switched != "/newroot /sbin/init" {
		t.Errorf("switch_root %q", m.sys.switched)
	}
	wantLoaded := []string{"ext4.ko async_probe", "overlay.ko async_probe", "virtio_blk.ko async_probe"}
	if !reflect.DeepEqual(m.sys.loaded, wantLoaded) {
		t.Errorf("modules loaded %q, want %q", m.sys.loaded, wantLoaded)
	}
	st := m.layout.Part(partitions.NumState)
	grown := int64(128<<20) - partitions.Align - st.Start
	if want := []string{fmt.Sprintf("/dev/vda 4 %d %d", st.Start, grown)}; !reflect.DeepEqual(m.sys.resized, want) {
		t.Errorf("BLKPG resize %q, want %q", m.sys.resized, want)
	}
	for _, want := range []string{
		fmt.Sprintf("SLATE-STATE action=grown from=%d to=%d", st.Size, grown),
		fmt.Sprintf("SLATE-STATE action=created dev=/dev/vda4 size=%d took=", grown),
		"SLATE-INIT slot=a root=/dev/vda2 took=",
	} {
		if !contains(lines, want) {
			t.Errorf("no line %q in %q", want, lines)
		}
	}
	if has, err := hasExt4(m.path("/dev/vda4"), "/dev/vda4"); err != nil || !has {
		t.Errorf("STATE not formatted: %v %v", has, err)
	}
	info, err := bootinfo.Read(m.path(bootinfo.Path))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode != bootinfo.ModeDisk || info.Slot != "a" || info.Root != "/dev/vda2" || info.State != "/dev/vda4" {
		t.Errorf("boot.json %+v", info)
	}

	// The next boot finds STATE formatted: mounted as it is.
	m.sys.mounts, m.sys.resized = nil, nil
	_, lines, _ = m.boot()
	if contains(lines, "SLATE-STATE ") || len(m.sys.resized) > 0 {
		t.Errorf("second boot touched STATE: %q, resized %q", lines, m.sys.resized)
	}
	if !slices.Contains(m.sys.mounts, "ext4 /newroot/var") {
		t.Errorf("second boot did not mount STATE: %q", m.sys.mounts)
	}
}

// embedRoot puts a root image into the fake initramfs and returns the
// command line that boots it from RAM.
func embedRoot(m *fakeMachine, data string) string {
	m.write("/slate/root.img", data)
	sum := sha256.Sum256([]byte(data))
	return fmt.Sprintf("ro panic=10 slate.root_sha256=%s slate.root_size=%d", hex.EncodeToString(sum[:]), len(data))
}

func TestBootFromRAM(t *testing.T) {
	// A disk slate did not lay out for this image but with a STATE
	// partition: used, formatted, never grown.
	m := newMachine(t, "", 128<<20)
	m.write("/proc/cmdline", embedRoot(m, "an ext4 image"))
	m.sys.loop = "/dev/loop0"
	b, lines, err := m.boot()
	if err == nil || !strings.Contains(err.Error(), "exec of /sbin/init returned") {
		t.Fatalf("run: %v", err)
	}
	if want := names(stages(true)); !reflect.DeepEqual(b.ran, want) {
		t.Errorf("ran %v, want %v", b.ran, want)
	}
	wantMounts := []string{
		"proc /proc", "sysfs /sys", "devtmpfs /dev", "tmpfs /run",
		"ext4 /newroot", "ext4 /newroot/var", "overlay /newroot/etc",
		"bind /newroot/home", "bind /newroot/srv", "tmpfs /newroot/tmp",
	}
	if !reflect.DeepEqual(m.sys.mounts, wantMounts) {
		t.Errorf("mounts\n%q\nwant\n%q", m.sys.mounts, wantMounts)
	}
	if !slices.Contains(m.sys.loaded, "loop.ko async_probe") {
		t.Errorf("loop not loaded: %q", m.sys.loaded)
	}
	if _, err := os.Stat(m.path("/lib/modules/6.1.0-test")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the initramfs modules were not dropped: %v", err)
	}
	if len(m.sys.resized) > 0 {
		t.Errorf("a RAM boot grew a disk it does not own: %q", m.sys.resized)
	}
	st := m.layout.Part(partitions.NumState)
	for _, want := range []string{
		"SLATE-NETROOT state=verifying source=initramfs",
		"SLATE-NETROOT state=verified source=initramfs",
		"SLATE-NETROOT state=mounted dev=/dev/loop0 mem_start=",
		fmt.Sprintf("SLATE-STATE action=created dev=/dev/vda4 size=%d ", st.Size),
		"SLATE-INIT slot=none root=/dev/loop0 took=",
	} {
		if !contains(lines, want) {
			t.Errorf("no line %q in %q", want, lines)
		}
	}
	info, err := bootinfo.Read(m.path(bootinfo.Path))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode != bootinfo.ModeRAM || info.Root != "/dev/loop0" || info.State != "/dev/vda4" || info.RootSize != int64(len("an ext4 image")) {
		t.Errorf("boot.json %+v", info)
	}
}

func TestBootFromRAMWithoutStateDisk(t *testing.T) {
	m := newMachine(t, "", 0)
	m.write("/proc/cmdline", embedRoot(m, "root"))
	m.sys.loop = "/dev/loop3"
	_, lines, err := m.boot()
	if err == nil || !strings.Contains(err.Error(), "exec of /sbin/init returned") {
		t.Fatalf("run: %v", err)
	}
	if !slices.Contains(m.sys.mounts, "tmpfs /newroot/var") || !contains(lines, "SLATE-STATE action=tmpfs ") {
		t.Errorf("no tmpfs /var: %q %q", m.sys.mounts, lines)
	}
	info, err := bootinfo.Read(m.path(bootinfo.Path))
	if err != nil || info.State != "tmpfs" {
		t.Errorf("boot.json %+v %v", info, err)
	}
}

// failedLine is the SLATE-FAILED line of a boot, or "".
func failedLine(lines []string) string {
	for _, l := range lines {
		if strings.HasPrefix(l, "SLATE-FAILED ") {
			return l
		}
	}
	return ""
}

func TestBreakStopsAtThatStage(t *testing.T) {
	for _, ram := range []bool{false, true} {
		for _, name := range breakStages() {
			t.Run(fmt.Sprintf("ram=%v/%s", ram, name), func(t *testing.T) {
				m := newMachine(t, "", 128<<20)
				line := diskLine(m.rootGUID())
				if ram {
					line = embedRoot(m, "root")
					m.sys.loop = "/dev/loop0"
				}
				m.write("/proc/cmdline", line+" slate.break="+name)
				b, lines, err := m.boot()
				var se *stageError
				if !errors.As(err, &se) || se.stage != name {
					t.Fatalf("run: %v, want a failure at stage %s", err, name)
				}
				want := fmt.Sprintf(`SLATE-FAILED stage=%s err="stopped by slate.break=%s on the kernel command line"`, name, name)
				if got := failedLine(lines); got != want {
					t.Errorf("got %q, want %q", got, want)
				}
				// Every stage before it ran, and nothing of it or after.
				plan := names(stages(ram))
				if wantRan := plan[:slices.Index(plan, name)]; !reflect.DeepEqual(b.ran, wantRan) {
					t.Errorf("ran %v, want %v", b.ran, wantRan)
				}
				if contains(lines, "SLATE-INIT ") || m.sys.switched != "" {
					t.Error("switched root after a break")
				}
			})
		}
	}
}

func TestFailureNamesItsStage(t *testing.T) {
	cases := []struct {
		name  string
		ram   bool
		setup func(m *fakeMachine) string // returns extra command line
		stage string
		err   string
	}{
		{name: "proc", stage: "mount", err: "mount proc on /proc: fake kernel says no",
			setup: func(m *fakeMachine) string { m.sys.failMount = "/proc"; return "" }},
		{name: "bad cmdline", stage: "cmdline", err: `slate.rootwait="0"`,
			setup: func(m *fakeMachine) string { return "slate.rootwait=0" }},
		{name: "no module tree", stage: "modules", err: "modules.dep",
			setup: func(m *fakeMachine) string { _ = os.RemoveAll(m.path("/lib/modules")); return "" }},
		{name: "root mount", stage: "root", err: "mount /dev/vda2 read-only on /newroot: fake kernel says no",
			setup: func(m *fakeMachine) string { m.sys.failMount = "/newroot"; return "" }},
		{name: "no root partition", stage: "root", err: "after 1s (disks with a GPT: vda)",
			setup: func(m *fakeMachine) string {
				m.write("/proc/cmdline", diskLine("5A92BAF2-4FF3-4F69-98D8-137964E3D4E3"))
				return "slate.rootwait=1"
			}},
		{name: "state mount", stage: "state", err: "mount STATE /dev/vda4 on /var: fake kernel says no",
			setup: func(m *fakeMachine) string { m.sys.failMount = "/newroot/var"; return "" }},
		{name: "state device", stage: "state", err: "open STATE /dev/vda4",
			setup: func(m *fakeMachine) string { _ = os.Remove(m.path("/dev/vda4")); return "" }},
		{name: "overlay", stage: "etc", err: "mount overlay on /etc",
			setup: func(m *fakeMachine) string { m.sys.failMount = "/newroot/etc"; return "" }},
		{name: "tmp", stage: "tmp", err: "mount /tmp: fake kernel says no",
			setup: func(m *fakeMachine) string { m.sys.failMount = "/newroot/tmp"; return "" }},
		{name: "no init", stage: "switch_root", err: "root /dev/vda2 has no /sbin/init",
			setup: func(m *fakeMachine) string { _ = os.Remove(m.path("/newroot/sbin/init")); return "" }},
		{name: "ram: wrong hash", ram: true, stage: "netroot", err: "",
			setup: func(m *fakeMachine) string { m.write("/slate/root.img", "roof"); return "" }},
		{name: "ram: no loop", ram: true, stage: "netroot", err: "fake kernel says no",
			setup: func(m *fakeMachine) string { m.sys.loop = ""; return "" }},
		{name: "ram: root mount", ram: true, stage: "netroot", err: "mount /dev/loop0 read-only on /newroot",
			setup: func(m *fakeMachine) string { m.sys.failMount = "/newroot"; return "" }},
		{name: "ram: state mount", ram: true, stage: "state", err: "mount STATE /dev/vda4 on /var",
			setup: func(m *fakeMachine) string { m.sys.failMount = "/newroot/var"; return "" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, "", 128<<20)
			line := diskLine(m.rootGUID())
			if tc.ram {
				line = embedRoot(m, "root")
				m.sys.loop = "/dev/loop0"
			}
			m.write("/proc/cmdline", line)
			if extra := tc.setup(m); extra != "" {
				raw, _ := os.ReadFile(m.path("/proc/cmdline"))
				m.write("/proc/cmdline", string(raw)+" "+extra)
			}
			b, lines, err := m.boot()
			var se *stageError
			if !errors.As(err, &se) || se.stage != tc.stage || !strings.Contains(se.err.Error(), tc.err) {
				t.Fatalf("run: %v, want stage %s and %q", err, tc.stage, tc.err)
			}
			if got := failedLine(lines); !strings.HasPrefix(got, "SLATE-FAILED stage="+tc.stage+" err=") {
				t.Errorf("got %q, want stage=%s", got, tc.stage)
			}
			if len(b.ran) == 0 || b.ran[len(b.ran)-1] != tc.stage {
				t.Errorf("ran %v, want it to end at %s", b.ran, tc.stage)
			}
			if contains(lines, "SLATE-INIT ") {
				t.Error("SLATE-INIT after a failure")
			}
		})
	}
}

func TestFailedWaitsWithDebug(t *testing.T) {
	for _, tc := range []struct {
		line string
		wait bool
	}{
		{"slate.debug", true},
		{"slate.debug=1 slate.rootwait=x", true}, // a line that does not parse still asks
		{"slate.debugger=1", false},
		{"slate.debug slate.debug=0", false},
		{"", false},
	} {
		m := newMachine(t, tc.line, 0)
		b := &boot{root: m.root, sys: m.sys}
		bootlog.SetEvents(io.Discard)
		got := b.failed(errors.New("x"))
		bootlog.SetEvents(nil)
		if got != tc.wait {
			t.Errorf("%q: wait %v, want %v", tc.line, got, tc.wait)
		}
	}
}

func TestFailedWithoutError(t *testing.T) {
	m := newMachine(t, "", 0)
	var out bytes.Buffer
	bootlog.SetEvents(&out)
	defer bootlog.SetEvents(nil)
	(&boot{root: m.root, sys: m.sys}).failed(nil)
	if got := out.String(); got != "SLATE-FAILED stage=init err=\"init ran out of stages without switching root\"\n" {
		t.Errorf("got %q", got)
	}
}

func TestSetupStateDecisions(t *testing.T) {
	cases := []struct {
		name     string
		diskSize int64
		grow     bool // a disk boot grows; a RAM boot never does
		hasFS    bool
		created  bool
		resized  bool
	}{
		{name: "first boot, bigger disk", diskSize: 128 << 20, grow: true, created: true, resized: true},
		{name: "first boot, disk of the image's size", diskSize: imageSize, grow: true, created: true},
		{name: "first boot from RAM, bigger disk", diskSize: 128 << 20, created: true},
		{name: "later boot", diskSize: 128 << 20, grow: true, hasFS: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, "", tc.diskSize)
			if tc.hasFS {
				st := m.layout.Part(partitions.NumState)
				if err := mkfsState(m.path("/dev/vda4"), "/dev/vda4", st.Size, testSeed); err != nil {
					t.Fatal(err)
				}
			}
			b := &boot{root: m.root, sys: m.sys}
			disks, err := partitions.ScanDisks(m.path("/sys/block"), m.path("/dev"))
			if err != nil || len(disks) != 1 {
				t.Fatalf("scan: %v %v", disks, err)
			}
			state, err := findState(disks[0])
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			bootlog.SetEvents(&out)
			err = b.setupState(disks[0], state, tc.grow)
			bootlog.SetEvents(nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(out.String(), "SLATE-STATE action=created"); got != tc.created {
				t.Errorf("created %v, want %v (%q)", got, tc.created, out.String())
			}
			if got := len(m.sys.resized) > 0; got != tc.resized {
				t.Errorf("resized %v, want %v", m.sys.resized, tc.resized)
			}
			if got := strings.Contains(out.String(), "SLATE-STATE action=grown"); got != tc.resized {
				t.Errorf("grown line %v, want %v", got, tc.resized)
			}
			if !reflect.DeepEqual(m.sys.mounts, []string{"ext4 /newroot/var"}) {
				t.Errorf("mounts %q", m.sys.mounts)
			}
		})
	}
}

func TestJournalBlocks(t *testing.T) {
	for _, tc := range []struct {
		size int64
		want int
	}{
		{0, 4096},
		{64 << 20, 4096},
		{1<<30 - 1, 4096},
		{1 << 30, 16384},
		{16<<30 - 1, 16384},
		{16 << 30, 32768},
		{4 << 40, 32768},
	} {
		if got := journalBlocks(tc.size); got != tc.want {
			t.Errorf("journalBlocks(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}

func TestParseMeminfo(t *testing.T) {
	const text = "MemTotal:        2000 kB\nMemFree:  1000 kB\nMemAvailable: x kB\nShmem: 5\n"
	for _, tc := range []struct {
		key  string
		want int64
	}{
		{"MemTotal", 2000 << 10},
		{"MemFree", 1000 << 10},
		{"MemAvailable", 0}, // does not parse
		{"Shmem", 5 << 10},
		{"Slab", 0}, // missing
		{"Mem", 0},  // keys match whole
	} {
		if got := parseMeminfo(strings.NewReader(text), tc.key); got != tc.want {
			t.Errorf("%s = %d, want %d", tc.key, got, tc.want)
		}
	}
}

func TestSlowest(t *testing.T) {
	l := &loadTimes{load: func(string, string) error { return nil }}
	l.names = []string{"a", "b", "c", "d"}
	l.times = []time.Duration{3 * time.Millisecond, 9 * time.Millisecond, 1 * time.Millisecond, 5 * time.Millisecond}
	if got := l.slowest(3); got != "b:9ms,d:5ms,a:3ms" {
		t.Errorf("slowest(3) = %q", got)
	}
	if got := (&loadTimes{}).slowest(3); got != "" {
		t.Errorf("no loads: %q", got)
	}
}
