package updater

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/bootdisk"
	"github.com/slateos/slate/internal/bootlog"
	"github.com/slateos/slate/updater/payload"
)

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

// trustChannel publishes demo versions into a channel folder, signed by
// the keys given, at the time given.
type trustChannel struct {
	t   *testing.T
	dir string
	in  string
}

func newTrustChannel(t *testing.T) *trustChannel {
	in := t.TempDir()
	os.WriteFile(filepath.Join(in, "vmlinuz"), bytes.Repeat([]byte("k"), 4096), 0o644)
	os.WriteFile(filepath.Join(in, "initrd.img"), bytes.Repeat([]byte("i"), 4096), 0o644)
	return &trustChannel{t: t, dir: filepath.Join(t.TempDir(), "channel"), in: in}
}

func (c *trustChannel) publish(version string, at time.Time, ttl time.Duration, keys ...ed25519.PrivateKey) {
	c.t.Helper()
	root := bytes.Repeat([]byte{1}, 64<<10)
	if _, err := payload.Publish(c.dir, payload.Release{
		Name: "demo", Version: version, KernelVersion: "6.1.0", Created: time.Unix(1700000000, 0),
		Root: bytes.NewReader(root), RootSize: int64(len(root)),
		Kernel: filepath.Join(c.in, "vmlinuz"), Initrd: filepath.Join(c.in, "initrd.img"),
	}, payload.PublishOptions{Keys: keys, Expires: ttl, Force: true, Now: func() time.Time { return at }}); err != nil {
		c.t.Fatal(err)
	}
}

// TestDaemonChannelTrust runs the daemon's check against a channel folder
// that goes stale, is replayed and is re-keyed. Each refusal must say why
// on the console (reason=) and in the status, and must not stage anything;
// the running image's keys decide what is trusted. The checks stop before
// writing a slot, so no machine is needed: a version newer than the
// running one that gets past them fails at idleTarget (an empty boot disk here)
// ("no ROOT-B partition"), which is how the test tells "accepted" from
// "refused".
func TestDaemonChannelTrust(t *testing.T) {
	var console syncBuffer
	bootlog.SetEvents(&console)
	defer bootlog.SetEvents(nil)

	_, k1, _ := ed25519.GenerateKey(nil)
	_, k2, _ := ed25519.GenerateKey(nil)
	pub1, pub2 := k1.Public().(ed25519.PublicKey), k2.Public().(ed25519.PublicKey)
	c := newTrustChannel(t)
	state := filepath.Join(t.TempDir(), "state.json")
	d := &Daemon{Name: "demo", Version: "1.0.0", Slot: "a", Config: configs.Update{Channel: c.dir},
		PublicKeys: []ed25519.PublicKey{pub1, pub2}, StateFile: state, Disk: &bootdisk.Disk{}}
	now := time.Now()
	week := 7 * 24 * time.Hour
	var old []byte // a top manifest an attacker saved

	steps := []struct {
		name    string
		setup   func()
		keys    []ed25519.PublicKey // the running image's, if changed
		reason  string              // "" = accepted
		explain string
	}{
		{name: "fresh 1.2.0 signed by K2", setup: func() {
			c.publish("1.1.0", now.Add(-2*time.Hour), week, k1, k2)
			old, _ = os.ReadFile(filepath.Join(c.dir, payload.ManifestFile))
			c.publish("1.2.0", now.Add(-time.Hour), week, k2)
		}},
		{name: "replay of the older, unexpired 1.1.0", setup: func() {
			os.WriteFile(filepath.Join(c.dir, payload.ManifestFile), old, 0o644)
		}, reason: payload.ReasonRollback, explain: "but this machine has seen 1.2.0"},
		{name: "1.3.0 expired (freeze)", setup: func() {
			c.publish("1.3.0", now.Add(-time.Hour), time.Second, k2)
		}, reason: payload.ReasonExpired, explain: "expired at"},
		{name: "1.3.0 refreshed", setup: func() {
			if _, err := payload.Refresh(c.dir, payload.PublishOptions{Keys: []ed25519.PrivateKey{k2}}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "1.4.0 signed by K1, image trusts only K2 (revoked)", setup: func() {
			c.publish("1.4.0", now, week, k1)
		}, keys: []ed25519.PublicKey{pub2}, reason: payload.ReasonSignature, explain: "this machine trusts " + payload.KeyID(pub2)},
		{name: "1.4.0 signed by K1, image trusts K1 and K2", keys: []ed25519.PublicKey{pub1, pub2}},
	}
	for _, s := range steps {
		if s.setup != nil {
			s.setup()
		}
		if s.keys != nil {
			d.PublicKeys = s.keys
		}
		mark := len(console.String())
		err := d.Check(context.Background())
		lines := console.String()[mark:]
		st := d.Status()
		if s.reason == "" {
			if err == nil || !strings.Contains(err.Error(), "partition") || payload.ReasonOf(err) != "" {
				t.Errorf("%s: err = %v, want it accepted (and failing later, at the slot)", s.name, err)
			}
			continue
		}
		if payload.ReasonOf(err) != s.reason || !strings.Contains(err.Error(), s.explain) {
			t.Errorf("%s: err = %v, want reason %s saying %q", s.name, err, s.reason, s.explain)
		}
		if want := "SLATE-UPDATE state=failed reason=" + s.reason + " err="; !strings.Contains(lines, want) {
			t.Errorf("%s: console %q lacks %q", s.name, lines, want)
		}
		if !strings.HasPrefix(st.LastError, s.reason+": ") || st.State != "failed" {
			t.Errorf("%s: status %s, last error %q", s.name, st.State, st.LastError)
		}
		if st.Staged != "" {
			t.Errorf("%s: staged %s", s.name, st.Staged)
		}
	}
	// what the machine remembers survives the daemon (a reboot)
	seen, err := loadSeen(filepath.Join(filepath.Dir(state), seenFileName))
	if err != nil || seen.Version != "1.4.0" {
		t.Errorf("remembered %+v, %v; want 1.4.0", seen, err)
	}
	// `slate update apply` of a version folder (no expiry) is a person's choice
	if _, err := d.fetchTrusted(context.Background(), dirSource(filepath.Join(c.dir, "1.3.0")), true); err != nil {
		t.Errorf("explicit apply of a version folder: %v", err)
	}
	if _, err := d.fetchTrusted(context.Background(), dirSource(filepath.Join(c.dir, "1.3.0")), false); payload.ReasonOf(err) != payload.ReasonNoExpiry {
		t.Errorf("a version folder's manifest served as the channel: %v", err)
	}
}
