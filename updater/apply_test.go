package updater

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/internal/bootentry"
	"github.com/slateos/slate/updater/payload"
)

type fixture struct {
	channel string
	pub     ed25519.PublicKey
	root    []byte
	kernel  []byte
	initrd  []byte
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	if err := payload.GenerateKey(dir); err != nil {
		t.Fatal(err)
	}
	key, err := payload.LoadPrivateKey(filepath.Join(dir, "update.key"))
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{channel: filepath.Join(dir, "channel"), pub: key.Public().(ed25519.PublicKey)}
	f.root = make([]byte, 8<<20)
	rand.Read(f.root[1<<20 : 2<<20]) // mostly zeros, some data
	f.kernel = bytes.Repeat([]byte("kernel"), 1000)
	f.initrd = bytes.Repeat([]byte("initrd"), 2000)
	kp, ip := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
	os.WriteFile(kp, f.kernel, 0o644)
	os.WriteFile(ip, f.initrd, 0o644)
	if _, err := payload.AddToChannel(f.channel, key, payload.Release{
		Name: "demo", Version: "1.1.0", KernelVersion: "6.1.0", Created: time.Unix(1700000000, 0),
		KernelArgs: []string{"ro", "console=ttyS0"},
		Root:       bytes.NewReader(f.root), RootSize: int64(len(f.root)), Kernel: kp, Initrd: ip,
	}); err != nil {
		t.Fatal(err)
	}
	return f
}

func target(t *testing.T) Target {
	t.Helper()
	dir := t.TempDir()
	dev := filepath.Join(dir, "rootb")
	// stale content in the idle slot, as after an earlier version
	if err := os.WriteFile(dev, bytes.Repeat([]byte{0xee}, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	esp := bootentry.Dir{Path: filepath.Join(dir, "esp")}
	// the idle slot's old, blessed entry
	if _, err := esp.InstallEntry(bootentry.Config{Version: "0.9.0", Slot: "b", Options: "x"}, 0); err != nil {
		t.Fatal(err)
	}
	return Target{Slot: "b", RootDev: dev, RootSize: 16 << 20, Boot: esp, Options: "root=PARTUUID=x slate.slot=b ro", Tries: 3}
}

func TestApply(t *testing.T) {
	f := newFixture(t)
	src, err := NewSource(f.channel, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := FetchManifest(context.Background(), src, f.pub)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(m.KernelArgs, " ") != "ro console=ttyS0" {
		t.Errorf("kernel args %v", m.KernelArgs)
	}
	tg := target(t)
	var states []string
	if err := Apply(context.Background(), src, m, tg, func(s string, kv ...any) { states = append(states, s) }); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(tg.RootDev)
	if !bytes.Equal(got[:len(f.root)], f.root) {
		t.Error("root image not written")
	}
	for name, want := range map[string][]byte{"vmlinuz": f.kernel, "initrd.img": f.initrd} {
		b, _ := os.ReadFile(filepath.Join(tg.Boot.Path, "slate", "b", name))
		if !bytes.Equal(b, want) {
			t.Errorf("%s not written", name)
		}
	}
	e, ok, err := tg.Boot.SlotEntry("b")
	if err != nil || !ok || e.File != "slate-1.1.0-b+3.conf" || e.Options != tg.Options {
		t.Fatalf("entry %+v %v %v", e, ok, err)
	}
	if last := states[len(states)-1]; last != "staged" {
		t.Errorf("last state %s, want staged (%v)", last, states)
	}
}

func TestApplyRejectsTamperedRootWithoutEntry(t *testing.T) {
	f := newFixture(t)
	// flip a byte of the stored root
	p := filepath.Join(f.channel, "1.1.0", "root.img.zst")
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 1
	os.WriteFile(p, b, 0o644)
	src, _ := NewSource(f.channel, nil)
	m, err := FetchManifest(context.Background(), src, f.pub)
	if err != nil {
		t.Fatal(err)
	}
	tg := target(t)
	err = Apply(context.Background(), src, m, tg, nil)
	if err == nil || !strings.Contains(err.Error(), "root.img.zst") {
		t.Fatalf("tampered root: %v", err)
	}
	if _, ok, _ := tg.Boot.SlotEntry("b"); ok {
		t.Fatal("slot b has an entry after a failed apply")
	}
}

func TestFetchManifestOtherKey(t *testing.T) {
	f := newFixture(t)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	src, _ := NewSource(f.channel, nil)
	if _, err := FetchManifest(context.Background(), src, other); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("another key: %v", err)
	}
}

func TestApplyTooBigForSlot(t *testing.T) {
	f := newFixture(t)
	src, _ := NewSource(f.channel, nil)
	m, _ := FetchManifest(context.Background(), src, f.pub)
	tg := target(t)
	tg.RootSize = 1 << 20
	if err := Apply(context.Background(), src, m, tg, nil); err == nil || !strings.Contains(err.Error(), "holds") {
		t.Fatalf("too big: %v", err)
	}
	if _, ok, _ := tg.Boot.SlotEntry("b"); !ok {
		t.Fatal("a refused update removed the idle slot's entry")
	}
}

func TestEntryOptions(t *testing.T) {
	cases := []struct{ in, slot, id, want string }{
		{"root=PARTUUID=aaa ro slate.slot=a console=ttyS0", "b", "BBB", "root=PARTUUID=bbb ro slate.slot=b console=ttyS0"},
		{"ro", "a", "X", "root=PARTUUID=x ro slate.slot=a"},
		{"", "b", "Y", "root=PARTUUID=y ro slate.slot=b"},
		// a duplicated root= or slate.slot= goes too, not only the first
		{"root=PARTUUID=aaa slate.slot=a x=1 root=/dev/sda2 slate.slot=b", "b", "BBB", "root=PARTUUID=bbb ro slate.slot=b x=1"},
	}
	for _, c := range cases {
		if got := EntryOptions(c.in, c.slot, c.id); got != c.want {
			t.Errorf("EntryOptions(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestUntilWindow(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2026, 1, 1, h, m, 0, 0, time.UTC) }
	cases := []struct {
		now      time.Time
		from, to int
		want     time.Duration
	}{
		{at(3, 0), 120, 240, 0},
		{at(1, 0), 120, 240, time.Hour},
		{at(5, 0), 120, 240, 21 * time.Hour},
		{at(23, 30), 22 * 60, 2 * 60, 0},
		{at(1, 0), 22 * 60, 2 * 60, 0},
		{at(12, 0), 22 * 60, 2 * 60, 10 * time.Hour},
	}
	for _, c := range cases {
		if got := untilWindow(c.now, c.from, c.to); got != c.want {
			t.Errorf("untilWindow(%s, %d, %d) = %s, want %s", c.now.Format("15:04"), c.from, c.to, got, c.want)
		}
	}
}

func TestJitter(t *testing.T) {
	for _, r := range []int64{0, 1 << 40} {
		got := jitter(time.Hour, func(n int64) int64 { return min(r, n-1) })
		if got < 54*time.Minute || got > 66*time.Minute {
			t.Errorf("jitter = %s", got)
		}
	}
}

func TestStateRoundTripAndDamage(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	st, err := LoadState(p)
	if err != nil || len(st.Failed) != 0 {
		t.Fatalf("missing state: %+v %v", st, err)
	}
	st.Failed["1.1.0"] = Failure{Reason: "x"}
	if err := st.Save(p); err != nil {
		t.Fatal(err)
	}
	st2, err := LoadState(p)
	if err != nil || st2.Failed["1.1.0"].Reason != "x" {
		t.Fatalf("round trip: %+v %v", st2, err)
	}
	os.WriteFile(p, []byte("{garbage"), 0o644)
	st3, err := LoadState(p)
	if err != nil || st3 == nil {
		t.Fatalf("damaged state: %v", err)
	}
	if _, err := os.Stat(p + ".bad"); err != nil {
		t.Error("damaged state not kept aside")
	}
}
