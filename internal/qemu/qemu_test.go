package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// need fails the test under CI and skips it elsewhere when a prerequisite is
// missing: a skipped VM test in CI would hide a broken set-up.
func need(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing (CI is set): %v", what, err)
	}
	t.Skipf("%s is missing: %v", what, err)
}

func needQEMU(t *testing.T) {
	t.Helper()
	_, err := Binary()
	need(t, "qemu-system-x86_64", err)
	_, _, err = FindOVMF()
	need(t, "OVMF", err)
}

// needVM is needQEMU for a test that boots a VM: those are skipped under
// -short (make test-short boots none), whether CI is set or not.
func needVM(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM: not with -short")
	}
	needQEMU(t)
}

// kernelPath finds the Debian kernel that scripts/fetch-kernel.sh unpacks.
func kernelPath() (string, error) {
	cache := os.Getenv("SLATE_CACHE")
	if cache == "" {
		cache = filepath.Join("../..", ".cache")
	}
	m, _ := filepath.Glob(filepath.Join(cache, "kernel", "linux-image-amd64", "boot", "vmlinuz-*"))
	if len(m) == 0 {
		return "", errors.New("no vmlinuz-* under " + cache + "/kernel/linux-image-amd64/boot (run scripts/fetch-kernel.sh)")
	}
	return m[len(m)-1], nil
}

// syncBuffer is a bytes.Buffer safe for the console goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func touch(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestArgs(t *testing.T) {
	needQEMU(t)
	code, _, _ := FindOVMF()
	dir := t.TempDir()
	raw := touch(t, filepath.Join(dir, "disk.raw"), 1<<20)
	qcow := touch(t, filepath.Join(dir, "disk.qcow2"), 1<<20)
	comma := touch(t, filepath.Join(dir, "a,b.img"), 1<<20)
	ign := touch(t, filepath.Join(dir, "config.ign"), 10)
	kernel := touch(t, filepath.Join(dir, "vmlinuz"), 10)
	initrd := touch(t, filepath.Join(dir, "initrd"), 10)
	pflash := func(vars string) []string {
		return []string{"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
			"-drive", "if=pflash,format=raw,unit=1,file=" + vars}
	}

	tests := []struct {
		name    string
		opts    Options
		want    [][]string // each must appear as consecutive arguments
		notWant []string   // must not appear in any argument
		wantErr string
	}{
		{name: "raw defaults", opts: Options{Image: raw},
			want: [][]string{
				{"-nodefaults", "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "1G", "-smp", "1",
					"-display", "none", "-monitor", "none", "-serial", "stdio"},
				pflash(raw + ".vars.fd"),
				{"-drive", "file=" + raw + ",format=raw,if=virtio,cache=writeback"},
				{"-device", "i6300esb"},
				// a user-mode NIC by default, as QEMU gives one
				{"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"},
			},
			notWant: []string{"-no-reboot", "-kernel", "-nic"}},
		{name: "no network", opts: Options{Image: raw, NoNetwork: true},
			want: [][]string{{"-nic", "none"}}, notWant: []string{"-netdev"}},
		{name: "no network with forwards", opts: Options{Image: raw, NoNetwork: true, Forwards: []Forward{{2222, 22}}}, wantErr: "cannot be combined"},
		{name: "no network with network", opts: Options{Image: raw, NoNetwork: true, Network: true}, wantErr: "cannot be combined"},
		{name: "qcow2 with vars, mem, cpus", opts: Options{Image: qcow, VarsFile: "/x/v.fd", Mem: "2G", CPUs: 2},
			want: [][]string{pflash("/x/v.fd"), {"-m", "2G", "-smp", "2"},
				{"-drive", "file=" + qcow + ",format=qcow2,if=virtio,cache=writeback"}}},
		{name: "comma in path is escaped", opts: Options{Image: comma},
			want: [][]string{{"-drive", "file=" + strings.ReplaceAll(comma, ",", ",,") + ",format=raw,if=virtio,cache=writeback"}}},
		{name: "forwards imply network on loopback", opts: Options{Image: raw, Forwards: []Forward{{2222, 22}, {8080, 80}}},
			want: [][]string{{"-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8080-:80",
				"-device", "virtio-net-pci,netdev=n0"}},
			notWant: []string{"-nic"}},
		{name: "network without forwards", opts: Options{Image: raw, Network: true},
			want: [][]string{{"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"}}},
		{name: "fw_cfg", opts: Options{Image: raw, FwCfg: []FwCfg{{"opt/com.coreos/config", ign}}},
			want: [][]string{{"-fw_cfg", "name=opt/com.coreos/config,file=" + ign}}},
		{name: "kvm", opts: Options{Image: raw, Accel: "kvm"},
			want: [][]string{{"-accel", "kvm", "-cpu", "host"}}, notWant: []string{"tcg"}},
		{name: "auto is tcg without a probe", opts: Options{Image: raw, Accel: "auto"},
			want: [][]string{{"-accel", "tcg", "-cpu", "max"}}},
		{name: "direct kernel boot", opts: Options{Kernel: kernel, Initrd: initrd, Append: "console=ttyS0 panic=-1", NoReboot: true},
			want:    [][]string{{"-no-reboot"}, {"-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 panic=-1"}},
			notWant: []string{"if=pflash,format=raw,unit=0,readonly=on,file=" + code}},
		{name: "direct kernel boot with disk", opts: Options{Kernel: kernel, Image: raw},
			want:    [][]string{{"-kernel", kernel}, {"-drive", "file=" + raw + ",format=raw,if=virtio,cache=writeback"}},
			notWant: []string{"-append", "-initrd"}},
		{name: "extra args last", opts: Options{Image: raw, ExtraArgs: []string{"-s", "-S"}},
			want: [][]string{{"-device", "i6300esb", "-s", "-S"}}},

		{name: "no image, no kernel", opts: Options{}, wantErr: "nothing to boot"},
		{name: "missing image", opts: Options{Image: filepath.Join(dir, "nope.raw")}, wantErr: "no such file"},
		{name: "image is a directory", opts: Options{Image: dir}, wantErr: "is a directory"},
		{name: "missing kernel", opts: Options{Kernel: filepath.Join(dir, "nope")}, wantErr: "kernel"},
		{name: "missing initrd", opts: Options{Kernel: kernel, Initrd: filepath.Join(dir, "nope")}, wantErr: "initrd"},
		{name: "append without kernel", opts: Options{Image: raw, Append: "quiet"}, wantErr: "need a kernel"},
		{name: "bad accel", opts: Options{Image: raw, Accel: "hvf"}, wantErr: "accel"},
		{name: "bad mem", opts: Options{Image: raw, Mem: "1 GB"}, wantErr: "memory"},
		{name: "bad cpus", opts: Options{Image: raw, CPUs: -1}, wantErr: "cpus"},
		{name: "bad port", opts: Options{Image: raw, Forwards: []Forward{{0, 22}}}, wantErr: "ports"},
		{name: "fw_cfg name outside opt/", opts: Options{Image: raw, FwCfg: []FwCfg{{"etc/x", ign}}}, wantErr: "fw_cfg name"},
		{name: "fw_cfg name with comma", opts: Options{Image: raw, FwCfg: []FwCfg{{"opt/a,b", ign}}}, wantErr: "fw_cfg name"},
		{name: "fw_cfg missing file", opts: Options{Image: raw, FwCfg: []FwCfg{{"opt/x", filepath.Join(dir, "nope")}}}, wantErr: "fw_cfg opt/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Args(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Args error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !containsRun(got, w) {
					t.Errorf("args lack %q:\n%q", w, got)
				}
			}
			for _, nw := range tt.notWant {
				if slices.ContainsFunc(got, func(a string) bool { return strings.Contains(a, nw) }) {
					t.Errorf("args contain %q:\n%q", nw, got)
				}
			}
		})
	}
}

// containsRun reports whether sub appears in args as consecutive elements.
func containsRun(args, sub []string) bool {
	for i := 0; i+len(sub) <= len(args); i++ {
		if slices.Equal(args[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// TestArgsNoSideEffects: Args must not create the vars file; Start does.
func TestArgsNoSideEffects(t *testing.T) {
	needQEMU(t)
	raw := touch(t, filepath.Join(t.TempDir(), "disk.raw"), 1<<20)
	if _, err := Args(Options{Image: raw}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(raw + ".vars.fd"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Args created the vars file (stat: %v)", err)
	}
}

func TestResolveAccel(t *testing.T) {
	for _, tt := range []struct{ accel, env, want, wantErr string }{
		{"tcg", "kvm", "tcg", ""}, // an explicit choice beats the environment
		{"kvm", "", "kvm", ""},
		{"auto", "tcg", "tcg", ""},
		{"", "kvm", "kvm", ""},
		{"", "bogus", "", "SLATE_ACCEL"},
		{"xen", "", "", "accel"},
	} {
		t.Setenv("SLATE_ACCEL", tt.env)
		got, err := resolveAccel(context.Background(), tt.accel)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("resolveAccel(%q) with SLATE_ACCEL=%q: error %v, want %q", tt.accel, tt.env, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("resolveAccel(%q) with SLATE_ACCEL=%q = %q, %v; want %q", tt.accel, tt.env, got, err, tt.want)
		}
	}
}

var bdsLine = regexp.MustCompile(`BdsDxe: (\w+) Boot`)

// TestFirmwareBoot boots OVMF with an empty disk: the boot manager talks on
// serial, WaitFor sees it, Kill ends QEMU and the vars store now sits beside
// the image.
func TestFirmwareBoot(t *testing.T) {
	needVM(t)
	dir := t.TempDir()
	img := touch(t, filepath.Join(dir, "empty.raw"), 64<<20)
	logFile := filepath.Join(dir, "serial.log")
	var serial syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	start := time.Now()
	// No NIC: with one, the boot manager tries PXE and HTTP boot first.
	vm, err := Start(ctx, Options{Image: img, Accel: "tcg", Serial: &serial, SerialFile: logFile, NoNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	m, err := vm.WaitFor(ctx, bdsLine)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("firmware reached %q after %s", m[0], time.Since(start).Round(time.Millisecond))
	if m[1] == "" {
		t.Errorf("submatch missing: %q", m)
	}

	// Lines after the match are still to come for the next WaitFor.
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`BdsDxe: starting Boot`)); err != nil {
		t.Fatal(err)
	}
	if err := vm.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := vm.Wait(); err == nil {
		t.Error("Wait after Kill = nil, want the kill reported")
	}

	_, tmpl, _ := FindOVMF()
	want, _ := os.Stat(tmpl)
	fi, err := os.Stat(img + ".vars.fd")
	if err != nil {
		t.Fatalf("vars file beside the image: %v", err)
	}
	if fi.Size() != want.Size() {
		t.Errorf("vars file is %d bytes, template %d", fi.Size(), want.Size())
	}

	lines := vm.Lines()
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "BdsDxe") }) {
		t.Errorf("Lines() lack BdsDxe: %q", lines)
	}
	for _, l := range lines {
		if strings.Contains(l, "\r") {
			t.Errorf("line keeps \\r: %q", l)
		}
	}
	log, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "BdsDxe") || !strings.Contains(serial.String(), "BdsDxe") {
		t.Errorf("serial stream not copied: file %d bytes, writer %d bytes", len(log), len(serial.String()))
	}
	if string(log) != serial.String() {
		t.Error("serial file and serial writer got different streams")
	}
	if strings.Contains(serial.String(), "qemu-system") {
		t.Errorf("QEMU's own messages reached the serial stream: %q", serial.String())
	}

	// WaitFor on a dead VM fails fast and shows the console tail.
	_, err = vm.WaitFor(ctx, regexp.MustCompile(`never printed`))
	if err == nil || !strings.Contains(err.Error(), "BdsDxe") {
		t.Errorf("WaitFor after exit: %v; want an error with the console tail", err)
	}
}

// TestStop: the firmware shell does not act on the ACPI power button, so Stop
// must kill QEMU once its timeout is over and say so.
func TestStop(t *testing.T) {
	needVM(t)
	img := touch(t, filepath.Join(t.TempDir(), "empty.raw"), 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// No NIC: with one, the boot manager tries PXE and HTTP boot first.
	vm, err := Start(ctx, Options{Image: img, Accel: "tcg", NoNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	if _, err := vm.WaitFor(ctx, bdsLine); err != nil {
		t.Fatal(err)
	}
	if err := qmpCommand(vm.qmpPath, "query-status", 5*time.Second); err != nil {
		t.Fatalf("QMP does not answer: %v", err)
	}
	start := time.Now()
	err = vm.Stop(2 * time.Second)
	took := time.Since(start)
	t.Logf("Stop: %v after %s", err, took.Round(time.Millisecond))
	select {
	case <-vm.Exited():
	default:
		t.Fatal("QEMU still running after Stop")
	}
	if took > 10*time.Second {
		t.Errorf("Stop took %s, want about its timeout", took)
	}
	if err == nil {
		t.Log("guest powered off by itself")
	} else if !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop error %q does not say QEMU was killed", err)
	}
}

// TestKernelPanic boots the Debian kernel directly without a root: it panics,
// and with panic=-1 and NoReboot the reboot ends QEMU by itself.
func TestKernelPanic(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM: not with -short")
	}
	_, err := Binary()
	need(t, "qemu-system-x86_64", err)
	kernel, err := kernelPath()
	need(t, "kernel", err)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	vm, err := Start(ctx, Options{Kernel: kernel, Append: "console=ttyS0 panic=-1", NoReboot: true, Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	m, err := vm.WaitFor(ctx, regexp.MustCompile(`(Kernel panic|VFS: Unable to mount root)`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%q after %s", m[1], time.Since(start).Round(time.Millisecond))
	if err := vm.Wait(); err != nil {
		t.Fatalf("Wait = %v, want nil (guest reboot with -no-reboot ends QEMU)", err)
	}
	t.Logf("QEMU exited after %s", time.Since(start).Round(time.Millisecond))
	_, err = vm.WaitFor(ctx, regexp.MustCompile(`SLATE-READY`))
	if err == nil || !strings.Contains(err.Error(), "Kernel panic") {
		t.Errorf("WaitFor after exit: %v; want an error with the console tail", err)
	}
}

// TestRunTimeout: the firmware shell never powers off, so Run must kill QEMU
// at the timeout, say so, and leave no QEMU behind.
func TestRunTimeout(t *testing.T) {
	needVM(t)
	img := touch(t, filepath.Join(t.TempDir(), "empty.raw"), 1<<20)
	var serial syncBuffer
	start := time.Now()
	err := Run(context.Background(), Options{Image: img, Accel: "tcg", Serial: &serial}, 3*time.Second)
	took := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "3s") {
		t.Fatalf("Run = %v, want a timeout error", err)
	}
	if took > 10*time.Second {
		t.Errorf("Run took %s for a 3s timeout", took)
	}
	if n := qemuProcesses(t, img); n != 0 {
		t.Errorf("%d QEMU processes for %s left behind", n, img)
	}
}

// TestContextEndsVM: the VM lives no longer than Start's context.
func TestContextEndsVM(t *testing.T) {
	needVM(t)
	img := touch(t, filepath.Join(t.TempDir(), "empty.raw"), 1<<20)
	ctx, cancel := context.WithCancel(context.Background())
	vm, err := Start(ctx, Options{Image: img, Accel: "tcg"})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	select {
	case <-vm.Exited():
	case <-time.After(10 * time.Second):
		vm.Kill()
		t.Fatal("QEMU outlived its context")
	}
	if err := vm.Wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait = %v, want it to name the canceled context", err)
	}
	if n := qemuProcesses(t, img); n != 0 {
		t.Errorf("%d QEMU processes for %s left behind", n, img)
	}
}

// qemuProcesses counts live processes whose command line names path.
func qemuProcesses(t *testing.T, path string) int {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		if bytes.Contains(b, []byte(binaryName)) && bytes.Contains(b, []byte(path)) {
			n++
		}
	}
	return n
}

// TestProbeKVM only bounds the probe's time: whether KVM works depends on the
// host. TestProbeBootTCG shows that the probe can succeed, so a false here is
// KVM's doing and not a broken probe.
func TestProbeKVM(t *testing.T) {
	needVM(t)
	start := time.Now()
	ok := ProbeKVM(context.Background())
	took := time.Since(start)
	t.Logf("ProbeKVM = %v after %s", ok, took.Round(time.Millisecond))
	if took > 20*time.Second {
		t.Errorf("ProbeKVM took %s", took)
	}
	start = time.Now()
	if again := ProbeKVM(context.Background()); again != ok || time.Since(start) > 100*time.Millisecond {
		t.Errorf("second ProbeKVM = %v after %s; want the cached %v at once", again, time.Since(start), ok)
	}
}

func TestProbeBootTCG(t *testing.T) {
	needVM(t)
	start := time.Now()
	ok, err := probeBoot(context.Background(), "tcg", 2*time.Minute)
	t.Logf("TCG probe boot: %v after %s", ok, time.Since(start).Round(time.Millisecond))
	if !ok {
		t.Fatalf("the probe boot fails under TCG too: %v", err)
	}
}

func TestLineSplitter(t *testing.T) {
	for _, tt := range []struct {
		name   string
		chunks []string
		want   []string
		rest   string
	}{
		{"crlf", []string{"a\r\nb\r\n"}, []string{"a", "b"}, ""},
		{"split across writes", []string{"he", "llo\r", "\nwor", "ld"}, []string{"hello"}, "world"},
		{"empty lines kept", []string{"\n\n"}, []string{"", ""}, ""},
		{"inner cr removed", []string{"a\rb\n"}, []string{"ab"}, ""},
		{"overlong line cut", []string{strings.Repeat("x", maxLine+3) + "\n"}, []string{strings.Repeat("x", maxLine), "xxx"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var s lineSplitter
			var got []string
			for _, c := range tt.chunks {
				got = append(got, s.write([]byte(c))...)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("lines %.80q, want %.80q", got, tt.want)
			}
			rest, _ := s.flush()
			if rest != tt.rest {
				t.Errorf("rest %q, want %q", rest, tt.rest)
			}
		})
	}
}

// FuzzLineSplitter: however the stream is cut into writes, the lines are the
// same, and none holds \r or \n.
func FuzzLineSplitter(f *testing.F) {
	f.Add([]byte("BdsDxe: loading\r\nSLATE-READY version=1 slot=a\r\n\x1b[2J"), uint8(3))
	f.Add([]byte("\n\r\n\r"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		var whole lineSplitter
		want := whole.write(data)
		if l, ok := whole.flush(); ok {
			want = append(want, l)
		}
		var cut lineSplitter
		var got []string
		n := int(step)%17 + 1
		for i := 0; i < len(data); i += n {
			got = append(got, cut.write(data[i:min(i+n, len(data))])...)
		}
		if l, ok := cut.flush(); ok {
			got = append(got, l)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("cut every %d bytes: %q, whole: %q", n, got, want)
		}
		for _, l := range got {
			if strings.ContainsAny(l, "\r\n") {
				t.Fatalf("line %q keeps a line break", l)
			}
		}
	})
}

func TestQMPReply(t *testing.T) {
	for _, tt := range []struct {
		name, in, wantErr string
	}{
		{"return", `{"return": {}}`, ""},
		{"event first", `{"event":"POWERDOWN","timestamp":{}}` + "\n" + `{"return":{}}`, ""},
		{"error", `{"error":{"class":"CommandNotFound","desc":"no such command"}}`, "CommandNotFound: no such command"},
		{"eof", `{"event":"X"}`, "unexpected EOF"},
		{"garbage", `{"return":`, "unexpected EOF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := qmpReply(newDecoder(tt.in))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("qmpReply = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// FuzzQMPReply: whatever QEMU's socket says, reading a reply ends without a
// panic.
func FuzzQMPReply(f *testing.F) {
	f.Add(`{"QMP":{}}{"return":{}}`)
	f.Add(`{"error":{"class":"x","desc":"y"}}`)
	f.Add(`{"error":null,"return":null}`)
	f.Fuzz(func(t *testing.T, in string) {
		_ = qmpReply(newDecoder(in))
	})
}

func newDecoder(s string) *json.Decoder { return json.NewDecoder(strings.NewReader(s)) }

func TestApplyNetMode(t *testing.T) {
	needQEMU(t) // Args looks for the firmware
	cases := []struct {
		mode    string
		fw      []Forward
		netboot bool
		nic     bool
		err     string
	}{
		{mode: "user", nic: true},
		{mode: "", nic: true},
		{mode: "none"},
		{mode: "none", fw: []Forward{{2222, 22}}, err: "--forward needs the network"},
		{mode: "none", netboot: true, err: "--pxe needs the network"},
		{mode: "tap", err: `--net "tap": want user or none`},
	}
	raw := touch(t, filepath.Join(t.TempDir(), "x.raw"), 1<<20)
	for _, c := range cases {
		opts := Options{Image: raw, Forwards: c.fw}
		err := ApplyNetMode(&opts, c.mode, c.netboot)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("--net %q: err %v, want %q", c.mode, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("--net %q: %v", c.mode, err)
		}
		args, err := Args(opts)
		if err != nil {
			t.Fatal(err)
		}
		hasNIC := strings.Contains(strings.Join(args, " "), "-device virtio-net-pci,netdev=n0")
		if hasNIC != c.nic || strings.Contains(strings.Join(args, " "), "-nic none") == c.nic {
			t.Errorf("--net %q: args %q", c.mode, args)
		}
	}
}
