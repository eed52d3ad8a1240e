package kmod

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Lines taken from depmod's output for Debian's 6.1.0-56-amd64.
const testModulesDep = `kernel/lib/crc16.ko:
kernel/crypto/crc32c_generic.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/watchdog/i6300esb.ko: kernel/drivers/watchdog/watchdog.ko
kernel/drivers/watchdog/watchdog.ko:
`

const testModulesAlias = `# Aliases extracted from modules themselves.
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
alias fs-ext4 ext4
alias virtio:d00000002v* virtio_blk
alias virtio:d00000001v* virtio_net
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias pci:v00008086d000025ABsv*sd*bc*sc*i* i6300esb
alias platform:serial8250 serial8250
`

const testModulesSoftdep = `# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep jbd2 pre: crypto-crc32c
softdep virtio_blk post: no_such_module
`

const testModulesBuiltin = "kernel/net/packet/af_packet.ko\nkernel/drivers/tty/serial/8250/8250.ko\n"

// writeTestTree writes the index files of a module tree (no module files:
// the tests record loads instead of doing them).
func writeTestTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{
		"modules.dep":     testModulesDep,
		"modules.alias":   testModulesAlias,
		"modules.softdep": testModulesSoftdep,
		"modules.builtin": testModulesBuiltin,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// recorder stands in for the kernel: it notes each load, and runs hooks
// that play the kernel's part (a bus driver creating its devices).
type recorder struct {
	t     *testing.T
	dir   string
	loads []string
	fail  map[string]error
	hooks map[string]func()
}

func (r *recorder) load(path, params string) error {
	rel, err := filepath.Rel(r.dir, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		r.t.Errorf("load of %s outside %s", path, r.dir)
	}
	name := moduleName(path)
	if err := r.fail[name]; err != nil {
		return err
	}
	if slices.Contains(r.loads, name) {
		r.t.Errorf("%s loaded twice", name)
	}
	r.loads = append(r.loads, name)
	if h := r.hooks[name]; h != nil {
		h()
	}
	return nil
}

// before fails unless a comes before b in the recorded loads.
func (r *recorder) before(a, b string) {
	r.t.Helper()
	i, j := slices.Index(r.loads, a), slices.Index(r.loads, b)
	if i < 0 || j < 0 || i > j {
		r.t.Errorf("want %s loaded before %s, loads %v", a, b, r.loads)
	}
}

func addDevice(t *testing.T, sys, dev, modalias string) {
	t.Helper()
	d := filepath.Join(sys, "devices", dev)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "modalias"), []byte(modalias+"\n"), 0o444); err != nil {
		t.Fatal(err)
	}
}

func TestProbe(t *testing.T) {
	dir := writeTestTree(t)
	r := &recorder{t: t, dir: dir}
	l := &Loader{Dir: dir, Load: r.load}
	if err := l.Probe("ext4"); err != nil {
		t.Fatal(err)
	}
	want := []string{"crc32c_generic", "jbd2", "mbcache", "crc16", "ext4"}
	if !slices.Equal(r.loads, want) {
		t.Errorf("loads %v, want %v", r.loads, want)
	}
	// again, by alias and with the other spelling: nothing new to load
	if err := l.Probe("fs-ext4", "crc32c-generic"); err != nil {
		t.Fatal(err)
	}
	if len(r.loads) != len(want) {
		t.Errorf("second probe loaded again: %v", r.loads)
	}
	// built-in: fine, nothing loaded
	if err := l.Probe("af_packet", "8250"); err != nil {
		t.Errorf("Probe(built-in) = %v", err)
	}
	err := l.Probe("virtio_blk", "no_such_mod")
	if err == nil || !strings.Contains(err.Error(), `"no_such_mod"`) {
		t.Errorf("Probe(unknown) = %v, want an error naming it", err)
	}
	r.before("virtio", "virtio_blk") // the known one still loaded
	r.before("virtio_ring", "virtio_blk")
}

func TestProbeFailure(t *testing.T) {
	dir := writeTestTree(t)
	boom := errors.New("boom")
	r := &recorder{t: t, dir: dir, fail: map[string]error{"failover": boom}}
	l := &Loader{Dir: dir, Load: r.load}
	err := l.Probe("virtio_net")
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "virtio_net") {
		t.Errorf("Probe(virtio_net) = %v, want boom through virtio_net", err)
	}
	if slices.Contains(r.loads, "virtio_net") || slices.Contains(r.loads, "net_failover") {
		t.Errorf("loaded users of a failed module: %v", r.loads)
	}
	// A failed soft dependency does not stop its user.
	r.fail = map[string]error{"crc32c_generic": boom}
	if err := l.Probe("ext4"); err != nil {
		t.Errorf("Probe(ext4) with its soft dependency failing = %v", err)
	}
	if !slices.Contains(r.loads, "ext4") {
		t.Errorf("ext4 not loaded: %v", r.loads)
	}
}

func TestProbeAliasOfSeveral(t *testing.T) {
	dir := writeTestTree(t)
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(testModulesDep+"kernel/arch/x86/crypto/crc32c-intel.ko:\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "modules.alias"), []byte(testModulesAlias+"alias crc32c crc32c_intel\n"), 0o644)
	nodev := errors.New("no such device")
	r := &recorder{t: t, dir: dir, fail: map[string]error{"crc32c_intel": nodev}}
	l := &Loader{Dir: dir, Load: r.load}
	if err := l.Probe("crc32c"); err != nil {
		t.Errorf("Probe(crc32c) with one of two modules loading = %v", err)
	}
	if !slices.Equal(r.loads, []string{"crc32c_generic"}) {
		t.Errorf("loads %v", r.loads)
	}
	r.fail["crc32c_generic"] = nodev
	l = &Loader{Dir: dir, Load: r.load}
	r.loads = nil
	if err := l.Probe("crc32c"); !errors.Is(err, nodev) {
		t.Errorf("Probe(crc32c) with no module loading = %v", err)
	}
	if err := l.Probe("crc32c_intel"); !errors.Is(err, nodev) {
		t.Errorf("Probe(crc32c_intel) failing = %v", err)
	}
}

func TestLoaderBadTree(t *testing.T) {
	l := &Loader{Dir: t.TempDir(), Load: func(string, string) error { return nil }}
	if err := l.Probe("ext4"); err == nil || !strings.Contains(err.Error(), "modules.dep") {
		t.Errorf("Probe without modules.dep = %v", err)
	}
	dir := writeTestTree(t)
	os.WriteFile(filepath.Join(dir, "modules.alias"), []byte("alias onlytwo\n"), 0o644)
	l = &Loader{Dir: dir, Load: func(string, string) error { return nil }}
	if err := l.Probe("ext4"); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("Probe with a bad modules.alias = %v", err)
	}
}

func TestProbeDevices(t *testing.T) {
	dir := writeTestTree(t)
	sys := t.TempDir()
	pciDev := "pci0000:00/0000:00:04.0"
	addDevice(t, sys, pciDev, "pci:v00001AF4d00001042sv00001AF4sd00001042bc01sc80i00")                    // virtio-blk (PCI side)
	addDevice(t, sys, "pci0000:00/0000:00:1f.0", "pci:v00008086d00002918sv00001AF4sd00001100bc06sc01i00") // no driver here
	addDevice(t, sys, "pci0000:00/0000:00:05.0", "pci:v00008086d000025ABsv00001AF4sd00001100bc08sc80i00") // i6300esb
	addDevice(t, sys, "platform/serial8250", "platform:serial8250")                                       // built in
	// a modalias symlink (as under /sys/class) is not followed
	os.Symlink(filepath.Join(sys, "devices", pciDev, "modalias"), filepath.Join(sys, "devices", "link"))

	r := &recorder{t: t, dir: dir}
	passOfBlk := 0
	r.hooks = map[string]func(){
		// the kernel: virtio_pci binds the PCI device and makes virtio0
		"virtio_pci": func() { addDevice(t, sys, pciDev+"/virtio0", "virtio:d00000002v00001AF4") },
		"virtio_blk": func() { passOfBlk = len(r.loads) },
	}
	l := &Loader{Dir: dir, Load: r.load}
	start := time.Now()
	loaded, err := l.ProbeDevices(sys)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ProbeDevices: %v in %v", loaded, time.Since(start))
	if !slices.Equal(loaded, r.loads) {
		t.Errorf("returned %v, loaded %v", loaded, r.loads)
	}
	for _, m := range []string{"virtio_pci", "i6300esb", "watchdog", "virtio_blk"} {
		if !slices.Contains(loaded, m) {
			t.Errorf("%s not loaded: %v", m, loaded)
		}
	}
	r.before("virtio", "virtio_pci")
	r.before("virtio_ring", "virtio_pci")
	r.before("virtio_pci_modern_dev", "virtio_pci")
	r.before("watchdog", "i6300esb")
	r.before("virtio_pci", "virtio_blk")
	r.before("i6300esb", "virtio_blk") // first pass done before the second
	if passOfBlk != len(r.loads) {
		t.Errorf("virtio_blk not last: %v", r.loads)
	}
	// nothing new: a second call loads nothing
	loaded, err = l.ProbeDevices(sys)
	if err != nil || len(loaded) != 0 {
		t.Errorf("second ProbeDevices = %v, %v", loaded, err)
	}
}

func TestProbeDevicesBounded(t *testing.T) {
	// Each module makes a device that needs the next: a chain longer than
	// the pass limit stops at the limit.
	dir := t.TempDir()
	var dep, alias strings.Builder
	const n = 8
	for i := 0; i < n; i++ {
		dep.WriteString("kernel/m" + strconv.Itoa(i) + ".ko:\n")
		alias.WriteString("alias chain:" + strconv.Itoa(i) + " m" + strconv.Itoa(i) + "\n")
	}
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "modules.alias"), []byte(alias.String()), 0o644)
	sys := t.TempDir()
	addDevice(t, sys, "d0", "chain:0")
	r := &recorder{t: t, dir: dir, hooks: map[string]func(){}}
	for i := 0; i < n; i++ {
		next := i + 1
		r.hooks["m"+strconv.Itoa(i)] = func() { addDevice(t, sys, "d"+strconv.Itoa(next), "chain:"+strconv.Itoa(next)) }
	}
	l := &Loader{Dir: dir, Load: r.load}
	loaded, err := l.ProbeDevices(sys)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != maxDevicePasses {
		t.Errorf("loaded %v, want the first %d", loaded, maxDevicePasses)
	}
}

func TestProbeDevicesErrors(t *testing.T) {
	dir := writeTestTree(t)
	sys := t.TempDir()
	addDevice(t, sys, "a", "pci:v00008086d000025ABsv00001AF4sd00001100bc08sc80i00") // i6300esb
	addDevice(t, sys, "b", "virtio:d00000001v00001AF4")                             // virtio_net
	boom := errors.New("no such device")
	r := &recorder{t: t, dir: dir, fail: map[string]error{"i6300esb": boom}}
	l := &Loader{Dir: dir, Load: r.load}
	loaded, err := l.ProbeDevices(sys)
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want the i6300esb failure", err)
	}
	if !slices.Contains(loaded, "virtio_net") || slices.Contains(loaded, "i6300esb") {
		t.Errorf("loaded %v: want virtio_net despite i6300esb failing", loaded)
	}
	if _, err := l.ProbeDevices(filepath.Join(sys, "nope")); err == nil {
		t.Error("ProbeDevices on a missing sysfs succeeded")
	}
}

// TestProbeDevicesRealTree runs the loader on the tree WriteTree makes for
// DefaultRoot, with devices of a QEMU q35 machine.
func TestProbeDevicesRealTree(t *testing.T) {
	ix := realIndex(t)
	mods, err := ix.Resolve(DefaultRoot)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := ix.WriteTree(dirWriter{root}, mods); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "lib", "modules", ix.KernelVersion())
	sys := t.TempDir()
	pciBlk := "pci0000:00/0000:00:03.0"
	addDevice(t, sys, pciBlk, "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00")                    // legacy virtio-blk
	addDevice(t, sys, "pci0000:00/0000:00:1f.2", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01") // ICH9 AHCI
	addDevice(t, sys, "pci0000:00/0000:00:02.0", "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00") // e1000e
	addDevice(t, sys, "pci0000:00/0000:00:06.0", "pci:v00008086d000025ABsv00001AF4sd00001100bc08sc80i00") // i6300esb
	addDevice(t, sys, "platform/QEMU0002:00", "acpi:QEMU0002:")                                           // fw_cfg
	addDevice(t, sys, "system/cpu", "cpu:type:x86,ven0000fam0006mod003A:feature:,0000,0001,0093,0094,0095")
	r := &recorder{t: t, dir: dir}
	r.hooks = map[string]func(){
		"virtio_pci": func() { addDevice(t, sys, pciBlk+"/virtio0", "virtio:d00000002v00001AF4") },
	}
	l := &Loader{Dir: dir, Load: func(p, params string) error {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("load of a missing file: %v", err)
		}
		return r.load(p, params)
	}}
	start := time.Now()
	loaded, err := l.ProbeDevices(sys)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ProbeDevices on %d-module tree: %v in %v", len(mods), loaded, time.Since(start))
	for _, m := range []string{"virtio_pci", "virtio_blk", "ahci", "e1000e", "i6300esb", "qemu_fw_cfg", "crc32c_intel"} {
		if !slices.Contains(loaded, m) {
			t.Errorf("%s not loaded", m)
		}
	}
	pos := map[string]int{}
	for i, n := range r.loads {
		pos[n] = i
	}
	for _, n := range r.loads {
		m := ix.byName[n]
		for _, d := range m.Depends {
			if j, ok := pos[d]; !ok || j > pos[n] {
				t.Errorf("%s loaded before its dependency %s", n, d)
			}
		}
	}
	r.before("virtio_pci", "virtio_blk")
}

// BenchmarkProbeDevicesFullTree measures what PID 1 pays on a root that holds
// the whole module tree: reading its index files (4000 modules, 36,000
// aliases) and matching the devices of this machine's /sys. Loads are only
// recorded.
func BenchmarkProbeDevicesFullTree(b *testing.B) {
	ix := realIndex(b)
	if _, err := os.Stat("/sys/devices"); err != nil {
		b.Skip("no /sys/devices")
	}
	w := newMemWriter()
	if err := ix.WriteTree(w, ix.Modules()); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	for p, data := range w.files {
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(p)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	var loaded []string
	for b.Loop() {
		l := &Loader{Dir: dir, Load: func(string, string) error { return nil }}
		var err error
		if loaded, err = l.ProbeDevices("/sys"); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("would load %d modules: %v", len(loaded), loaded)
}
