package updater

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/bootdisk"
	"github.com/slateos/slate/internal/bootentry"
	"github.com/slateos/slate/internal/bootlog"
	"github.com/slateos/slate/partitions"
	"github.com/slateos/slate/updater/payload"
)

// t0 is when the test channels publish 1.1.0.
var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// waveChannel is a channel folder with a small 1.1.0 published at t0 with
// the rollout spec ("" none).
type waveChannel struct {
	dir string
	key ed25519.PrivateKey
	pub ed25519.PublicKey
}

func newWaveChannel(t *testing.T, spec string) waveChannel {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	scratch := t.TempDir()
	c := waveChannel{dir: filepath.Join(scratch, "channel"), key: key, pub: pub}
	kp, ip := filepath.Join(scratch, "vmlinuz"), filepath.Join(scratch, "initrd.img")
	os.WriteFile(kp, bytes.Repeat([]byte("kernel"), 100), 0o644)
	os.WriteFile(ip, bytes.Repeat([]byte("initrd"), 100), 0o644)
	root := make([]byte, 256<<10)
	rand.Read(root[:4096])
	o := payload.PublishOptions{Keys: []ed25519.PrivateKey{key}, Now: func() time.Time { return t0 }}
	if spec != "" {
		if o.Rollout, err = payload.ParseRolloutSpec(spec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := payload.Publish(c.dir, payload.Release{
		Name: "demo", Version: "1.1.0", KernelVersion: "6.1.0", Created: time.Unix(1700000000, 0),
		Root: bytes.NewReader(root), RootSize: int64(len(root)), Kernel: kp, Initrd: ip,
	}, o); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c waveChannel) opts(now time.Time) payload.PublishOptions {
	return payload.PublishOptions{Keys: []ed25519.PrivateKey{c.key}, Now: func() time.Time { return now }}
}

// clock is a fake clock tests move by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// machine is a daemon running 1.0.0 in slot a with id, on a small machine
// of files (as testDaemon, with a 1 MiB slot b), checking the channel
// folder with the fake clock.
func machine(t *testing.T, c waveChannel, id string, clk *clock) *Daemon {
	t.Helper()
	dir := t.TempDir()
	rootb := filepath.Join(dir, "rootb")
	if err := os.WriteFile(rootb, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	esp := bootentry.Dir{Path: filepath.Join(dir, "esp")}
	for _, e := range []bootentry.Config{{Version: "0.9.0", Slot: "b", Options: "x"}, {Version: "1.0.0", Slot: "a", Options: "root=PARTUUID=aaa slate.slot=a ro"}} {
		if _, err := esp.InstallEntry(e, 0); err != nil {
			t.Fatal(err)
		}
	}
	return &Daemon{
		Name: "demo", Version: "1.0.0", Slot: "a", MachineID: id, Now: clk.now,
		Config:     configs.Update{Channel: c.dir, Reboot: configs.RebootOff, CheckInterval: configs.Duration(time.Hour)},
		PublicKeys: []ed25519.PublicKey{c.pub},
		Disk: &bootdisk.Disk{
			Cmdline:  "root=PARTUUID=aaa slate.slot=a ro",
			ESPMount: esp.Path,
			Disk: partitions.Disk{
				Name:   "test",
				Layout: partitions.Layout{Parts: []partitions.Part{{Num: partitions.NumRootB, Label: partitions.LabelRootB, GUID: "BBB", Size: 1 << 20}}},
				Parts:  map[int]string{partitions.NumRootB: "../" + strings.TrimPrefix(rootb, "/")},
			},
		},
		StateFile: filepath.Join(dir, "var", "state.json"),
	}
}

func TestPlace(t *testing.T) {
	p := Place("4f1c0d2e9a7b4c3d8e6f5a4b3c2d1e0f", "1.1.0")
	if p != Place("4f1c0d2e9a7b4c3d8e6f5a4b3c2d1e0f", "1.1.0") || p < 0 || p >= 1 {
		t.Fatalf("place %v", p)
	}
	if p == Place("4f1c0d2e9a7b4c3d8e6f5a4b3c2d1e0f", "1.2.0") || p == Place("4f1c0d2e9a7b4c3d8e6f5a4b3c2d1e0e", "1.1.0") {
		t.Error("the place does not depend on the version and the machine id")
	}
	// id and version are separated: "ab"+"c" is not "a"+"bc"
	if Place("ab", "1.0.0-c") == Place("ab1", ".0.0-c") {
		t.Error("machine id and version run together")
	}
	// spread: 10000 ids fill ten bins evenly (each within 5 standard
	// deviations of 1000)
	var bins [10]int
	for i := range 10000 {
		bins[int(Place(fmt.Sprintf("m%05d", i), "1.1.0")*10)]++
	}
	for i, n := range bins {
		if math.Abs(float64(n)-1000) > 5*math.Sqrt(10000*0.1*0.9) {
			t.Errorf("bin %d holds %d of 10000 places", i, n)
		}
	}
}

// With 34%:0h,100%:1h and 100 machines, exactly those whose place is
// below 0.34 apply at once; the others wait, print one waiting line each
// (not one per check), and apply once the hour has passed.
func TestRolloutWaves(t *testing.T) {
	var console syncBuffer
	bootlog.SetEvents(&console)
	defer bootlog.SetEvents(nil)
	c := newWaveChannel(t, "34%:0h,100%:1h")
	clk := &clock{t: t0.Add(time.Minute)}
	var ms []*Daemon
	first := map[string]bool{}
	for i := range 100 {
		id := fmt.Sprintf("%032x", i*7919+1)
		ms = append(ms, machine(t, c, id, clk))
		if Place(id, "1.1.0") < 0.34 {
			first[id] = true
		}
	}
	// 100 draws of p=0.34: the mean is 34, the standard deviation 4.7;
	// 20 to 48 is three of them either side.
	if n := len(first); n < 20 || n > 48 {
		t.Fatalf("%d of 100 machines in the first wave", n)
	}
	staged := func(d *Daemon) bool { return d.Status().Staged == "1.1.0" }
	for round := range 2 { // twice: the second check changes nothing and prints nothing new
		for _, d := range ms {
			if err := d.Check(context.Background()); err != nil {
				t.Fatalf("%s: %v", d.MachineID, err)
			}
			st := d.Status()
			if got, want := staged(d), first[d.MachineID]; got != want {
				t.Fatalf("round %d: machine %s (place %.3f) staged=%v, want %v", round, d.MachineID, Place(d.MachineID, "1.1.0"), got, want)
			}
			if first[d.MachineID] {
				continue
			}
			if st.State != "waiting" || st.Rollout == nil || st.Rollout.Wave != 2 || st.Rollout.Waves != 2 || st.Rollout.Open ||
				!st.Rollout.Opens.Equal(t0.Add(time.Hour)) || st.Rollout.Place != Place(d.MachineID, "1.1.0") || st.Other.Version != "0.9.0" {
				t.Fatalf("waiting machine's status: %+v rollout %+v", st, st.Rollout)
			}
		}
	}
	waitLine := "SLATE-UPDATE state=waiting version=1.1.0 wave=2/2 opens=2026-12-01T11:00:00Z\n"
	if n := strings.Count(console.String(), waitLine); n != 100-len(first) {
		t.Errorf("%d waiting lines, want one per waiting machine (%d):\n%s", n, 100-len(first), console.String())
	}

	// a second before the hour nothing changes; at the hour the rest apply
	clk.t = t0.Add(time.Hour - time.Second)
	for _, d := range ms {
		if err := d.Check(context.Background()); err != nil || staged(d) != first[d.MachineID] {
			t.Fatalf("%s before the hour: staged %v, %v", d.MachineID, staged(d), err)
		}
	}
	clk.t = t0.Add(time.Hour)
	for _, d := range ms {
		if err := d.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := d.Status(); !staged(d) || st.Other.Version != "1.1.0" || st.Rollout == nil || !st.Rollout.Open {
			t.Fatalf("%s after the hour: %+v", d.MachineID, st)
		}
	}
}

// A machine whose clock is before the publishing waits, even in a first
// wave of 0h; one without a machine id is in the last wave.
func TestRolloutClockAndNoID(t *testing.T) {
	c := newWaveChannel(t, "50%:0h,100%:2h")
	clk := &clock{t: t0.Add(-time.Minute)}
	var early string
	for i := 0; early == ""; i++ {
		if id := fmt.Sprintf("id-%d", i); Place(id, "1.1.0") < 0.5 {
			early = id
		}
	}
	d := machine(t, c, early, clk)
	// the freshness check allows a clock behind the publisher's
	if err := d.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := d.Status(); st.State != "waiting" || st.Rollout.Wave != 1 || !st.Rollout.Opens.Equal(t0) {
		t.Fatalf("clock before the start: %+v %+v", st, st.Rollout)
	}
	clk.t = t0
	if err := d.Check(context.Background()); err != nil || d.Status().Staged != "1.1.0" {
		t.Fatalf("at the start: %v %+v", err, d.Status())
	}

	noID := machine(t, c, "", &clock{t: t0.Add(time.Hour)})
	if err := noID.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := noID.Status()
	if st.State != "waiting" || st.Rollout.Wave != 2 || st.Rollout.Place != 1 || !strings.Contains(st.Rollout.Note, "no machine id") {
		t.Fatalf("no machine id: %+v %+v", st, st.Rollout)
	}
	if got, want := st.Rollout.String(), "1.1.0: wave 2/2 (100%), place 1.0000, opens 2026-12-01T12:00:00Z (waiting); no machine id: in the last wave"; got != want {
		t.Errorf("status line %q, want %q", got, want)
	}
	// the status JSON carries the rollout
	b, _ := json.Marshal(st)
	if !bytes.Contains(b, []byte(`"rollout":{"version":"1.1.0","wave":2,"waves":2,"share":100,"place":1,"opens":"2026-12-01T12:00:00Z","open":false,"note":"no machine id: in the last wave"}`)) {
		t.Errorf("status JSON: %s", b)
	}
}

// A paused channel stops every machine that has not applied the version,
// whatever its wave; one that has staged it goes on; resume lets the open
// waves apply.
func TestRolloutPause(t *testing.T) {
	var console syncBuffer
	bootlog.SetEvents(&console)
	defer bootlog.SetEvents(nil)
	c := newWaveChannel(t, "50%:0h,100%:1h")
	clk := &clock{t: t0.Add(time.Minute)}
	var ids []string // two machines of the first wave
	for i := 0; len(ids) < 2; i++ {
		if id := fmt.Sprintf("m-%d", i); Place(id, "1.1.0") < 0.5 {
			ids = append(ids, id)
		}
	}
	before := machine(t, c, ids[0], clk)
	if err := before.Check(context.Background()); err != nil || before.Status().Staged != "1.1.0" {
		t.Fatalf("before the pause: %v %+v", err, before.Status())
	}
	if _, err := payload.Pause(c.dir, c.opts(t0.Add(2*time.Minute))); err != nil {
		t.Fatal(err)
	}
	clk.t = t0.Add(3 * time.Minute)
	after := machine(t, c, ids[1], clk)
	for range 2 {
		if err := after.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
		st := after.Status()
		if st.State != "paused" || st.Staged != "" || st.Other.Version != "0.9.0" || st.Rollout == nil || !st.Rollout.Paused || !st.Rollout.PausedAt.Equal(t0.Add(2*time.Minute)) {
			t.Fatalf("paused: %+v %+v", st, st.Rollout)
		}
	}
	if n := strings.Count(console.String(), "SLATE-UPDATE state=paused version=1.1.0\n"); n != 1 {
		t.Errorf("%d paused lines, want 1:\n%s", n, console.String())
	}
	// the machine that staged it before the pause goes on
	if err := before.Check(context.Background()); err != nil || before.Status().State != "staged" {
		t.Errorf("staged before the pause: %v %+v", err, before.Status())
	}
	// a machine of the second wave past its hour is held too
	clk.t = t0.Add(2 * time.Hour)
	var late string
	for i := 0; late == ""; i++ {
		if id := fmt.Sprintf("m-%d", i); Place(id, "1.1.0") >= 0.5 {
			late = id
		}
	}
	l := machine(t, c, late, clk)
	if err := l.Check(context.Background()); err != nil || l.Status().State != "paused" {
		t.Fatalf("second wave while paused: %v %+v", err, l.Status())
	}

	if _, err := payload.Resume(c.dir, c.opts(t0.Add(2*time.Hour))); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Daemon{after, l} {
		if err := d.Check(context.Background()); err != nil || d.Status().Staged != "1.1.0" {
			t.Fatalf("after resume: %v %+v", err, d.Status())
		}
	}
}

// slate update apply (by hand) ignores the waves and the pause.
func TestRolloutApplyByHand(t *testing.T) {
	c := newWaveChannel(t, "1%:0h,100%:72h")
	if _, err := payload.Pause(c.dir, c.opts(t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	d := machine(t, c, "late-machine", &clock{t: t0.Add(2 * time.Minute)})
	if err := d.ApplyFrom(context.Background(), c.dir); err != nil {
		t.Fatal(err)
	}
	if d.Status().Staged != "1.1.0" {
		t.Errorf("apply by hand: %+v", d.Status())
	}
}

// A channel without a rollout is one wave, open to every machine, even one
// whose clock is behind the publisher's (as before there were waves).
func TestNoRolloutAllAtOnce(t *testing.T) {
	c := newWaveChannel(t, "")
	d := machine(t, c, "any", &clock{t: t0.Add(-time.Hour)})
	if err := d.Check(context.Background()); err != nil || d.Status().Staged != "1.1.0" {
		t.Fatalf("%v %+v", err, d.Status())
	}
	if r := d.Status().Rollout; r == nil || r.Wave != 1 || r.Waves != 1 || !r.Open || r.Share != 100 {
		t.Errorf("rollout %+v", r)
	}
}
