package payload

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// publishSmall publishes a small release of name and version.
func publishSmall(t testing.TB, ch, name, version string, o PublishOptions) (*Manifest, error) {
	t.Helper()
	r := smallRelease(version)
	scratch := t.TempDir()
	kernel, initrd := filepath.Join(scratch, "vmlinuz"), filepath.Join(scratch, "initrd.img")
	if err := os.WriteFile(kernel, r.kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initrd, r.initrd, 0o644); err != nil {
		t.Fatal(err)
	}
	return Publish(ch, Release{
		Name: name, Version: version, KernelVersion: "6.1.0-56-amd64",
		Created: fixtureCreated, Root: r.root(), RootSize: r.rootSize, Kernel: kernel, Initrd: initrd,
	}, o)
}

func keysOf(ks ...ed25519.PrivateKey) []ed25519.PrivateKey { return ks }

// TestPublishRefusesStrandingChannel: publishing into a channel whose
// machines could not follow the new version is refused (and changes
// nothing), unless forced; a private key in the folder is refused always.
func TestPublishRefusesStrandingChannel(t *testing.T) {
	_, k1 := testKeys(t)
	_, k2 := testKeys(t)
	tests := []struct {
		name    string
		setup   func(t *testing.T, ch string)
		pubName string
		keys    []ed25519.PrivateKey
		force   bool
		want    string // "" = accepted
	}{
		{name: "same name and key", pubName: "demo", keys: keysOf(k1)},
		{name: "another image name", pubName: "other", keys: keysOf(k1), want: `the channel serves image "demo", this is "other"`},
		{name: "another key", pubName: "demo", keys: keysOf(k2), want: "does not verify with the signing key(s) " + KeyID(k2.Public().(ed25519.PublicKey))},
		{name: "another key, forced", pubName: "demo", keys: keysOf(k2), force: true},
		{name: "another name, forced", pubName: "other", keys: keysOf(k1), force: true},
		{name: "rotation: old and new key", pubName: "demo", keys: keysOf(k1, k2)},
		{name: "damaged top manifest", pubName: "demo", keys: keysOf(k1), setup: func(t *testing.T, ch string) {
			os.WriteFile(filepath.Join(ch, ManifestFile), []byte("{}"), 0o644)
		}, want: "does not verify"},
		{name: "private key in the folder", pubName: "demo", keys: keysOf(k1), force: true, setup: func(t *testing.T, ch string) {
			os.WriteFile(filepath.Join(ch, "update.key"), pemPriv(t, k1), 0o600)
		}, want: "holds a private key"},
		{name: "private key deep in the folder", pubName: "demo", keys: keysOf(k1), setup: func(t *testing.T, ch string) {
			os.WriteFile(filepath.Join(ch, "1.0.0", "notes.txt"), append([]byte("keep this\n"), pemPriv(t, k2)...), 0o644)
		}, want: "holds a private key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch := t.TempDir()
			if _, err := publishSmall(t, ch, "demo", "1.0.0", PublishOptions{Keys: keysOf(k1)}); err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(t, ch)
			}
			before := snapshot(t, ch)
			m, err := publishSmall(t, ch, tc.pubName, "1.1.0", PublishOptions{Keys: tc.keys, Force: tc.force})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				var pubs []ed25519.PublicKey
				for _, k := range tc.keys {
					pubs = append(pubs, k.Public().(ed25519.PublicKey))
				}
				for _, p := range pubs {
					if top := readTop(t, ch, p); top.Version != "1.1.0" || top.Name != tc.pubName || !sameContent(top, m) {
						t.Errorf("top manifest is %s %s, want %s 1.1.0", top.Name, top.Version, tc.pubName)
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if after := snapshot(t, ch); after != before {
				t.Errorf("a refused publish changed the channel:\n%s\n---\n%s", before, after)
			}
		})
	}
}

func pemPriv(t testing.TB, k ed25519.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func pemPub(t testing.TB, k ed25519.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// TestConcurrentPublishers: publishers racing on one channel (each with
// its own versions) and readers polling the top manifest meanwhile. Every
// read verifies and names a version whose folder is complete, and the
// channel ends on the newest version. With format 1's two files (manifest,
// then signature, each its own rename) and no lock, readers saw mismatched
// pairs and the end state could pair one publisher's manifest with the
// other's signature.
func TestConcurrentPublishers(t *testing.T) {
	pub, key := testKeys(t)
	ch := t.TempDir()
	if _, err := publishSmall(t, ch, "demo", "1.0.0", PublishOptions{Keys: keysOf(key)}); err != nil {
		t.Fatal(err)
	}
	const publishers, each = 4, 6
	var stop atomic.Bool
	var reads, bad atomic.Int64
	var rwg sync.WaitGroup
	for r := 0; r < 4; r++ {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for !stop.Load() {
				data, err := os.ReadFile(filepath.Join(ch, ManifestFile))
				if err == nil {
					var m *Manifest
					m, err = OpenEnvelope([]ed25519.PublicKey{pub}, data)
					if err == nil {
						_, err = os.Stat(filepath.Join(ch, m.Version, RootFile))
					}
				}
				reads.Add(1)
				if err != nil {
					if bad.Add(1) < 5 {
						t.Errorf("reader: %v", err)
					}
				}
			}
		}()
	}
	var pwg sync.WaitGroup
	errs := make(chan error, publishers*each)
	for p := 0; p < publishers; p++ {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for i := 0; i < each; i++ {
				v := fmt.Sprintf("1.%d.%d", i+1, p)
				if _, err := publishSmall(t, ch, "demo", v, PublishOptions{Keys: keysOf(key)}); err != nil {
					errs <- err
				}
			}
		}()
	}
	pwg.Wait()
	stop.Store(true)
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if top := readTop(t, ch, pub); top.Version != fmt.Sprintf("1.%d.%d", each, publishers-1) {
		t.Errorf("top manifest is %s, want the newest", top.Version)
	}
	t.Logf("%d reads, %d bad", reads.Load(), bad.Load())
	if reads.Load() == 0 {
		t.Error("readers never ran")
	}
}

func TestRefresh(t *testing.T) {
	pub1, k1 := testKeys(t)
	pub2, k2 := testKeys(t)
	ch := t.TempDir()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	first, err := publishSmall(t, ch, "demo", "1.0.0", PublishOptions{Keys: keysOf(k1), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if !first.Published.Equal(now) || !first.Expires.Equal(now.Add(DefaultExpiry)) {
		t.Fatalf("published %s expires %s", first.Published, first.Expires)
	}
	vfolder := snapshot(t, filepath.Join(ch, "1.0.0"))

	// a day later, with a 3-day expiry and the new key beside the old
	now = now.Add(24 * time.Hour)
	m, err := Refresh(ch, PublishOptions{Keys: keysOf(k1, k2), Expires: 72 * time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []ed25519.PublicKey{pub1, pub2} {
		top := readTop(t, ch, p)
		if top.Version != "1.0.0" || !top.Published.Equal(now) || !top.Expires.Equal(now.Add(72*time.Hour)) || !sameContent(top, first) {
			t.Errorf("refreshed top %+v", top)
		}
	}
	if !m.Published.Equal(now) {
		t.Errorf("Refresh returned published %s", m.Published)
	}
	if snapshot(t, filepath.Join(ch, "1.0.0")) != vfolder {
		t.Error("refresh changed the version folder")
	}

	// a clock that went backwards still publishes a newer manifest
	now = now.Add(-48 * time.Hour)
	m2, err := Refresh(ch, PublishOptions{Keys: keysOf(k2), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if !m2.Published.After(m.Published) {
		t.Errorf("published went from %s to %s", m.Published, m2.Published)
	}

	tests := []struct {
		name string
		dir  string
		o    PublishOptions
		want string
	}{
		{"another key", ch, PublishOptions{Keys: keysOf(k1)}, "does not verify"},
		{"no key", ch, PublishOptions{}, "no signing key"},
		{"expiry too long", ch, PublishOptions{Keys: keysOf(k2), Expires: 400 * 24 * time.Hour}, "out of range"},
		{"empty channel", t.TempDir(), PublishOptions{Keys: keysOf(k2)}, "no top manifest yet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, tc.dir)
			if _, err := Refresh(tc.dir, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if snapshot(t, tc.dir) != before {
				t.Error("a refused refresh changed the channel")
			}
		})
	}
}

func TestCheckFresh(t *testing.T) {
	pub := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	m := func(v string, published time.Time, ttl time.Duration) *Manifest {
		mm := &Manifest{Version: v, Published: published}
		if ttl != 0 {
			mm.Expires = published.Add(ttl)
		}
		return mm
	}
	week := 7 * 24 * time.Hour
	tests := []struct {
		name   string
		m      *Manifest
		seen   Seen
		now    time.Time
		reason string // "" = fresh
		next   Seen
	}{
		{name: "first look", m: m("1.1.0", pub, week), now: pub.Add(time.Hour), next: Seen{"1.1.0", pub}},
		{name: "same as seen", m: m("1.1.0", pub, week), seen: Seen{"1.1.0", pub}, now: pub.Add(time.Hour), next: Seen{"1.1.0", pub}},
		{name: "refreshed", m: m("1.1.0", pub.Add(time.Hour), week), seen: Seen{"1.1.0", pub}, now: pub.Add(2 * time.Hour), next: Seen{"1.1.0", pub.Add(time.Hour)}},
		{name: "newer version", m: m("1.2.0", pub, week), seen: Seen{"1.1.0", pub.Add(time.Hour)}, now: pub.Add(2 * time.Hour), next: Seen{"1.2.0", pub}},
		{name: "expired (freeze)", m: m("1.1.0", pub, week), seen: Seen{"1.1.0", pub}, now: pub.Add(week), reason: ReasonExpired},
		{name: "older version (replay)", m: m("1.1.0", pub.Add(time.Hour), week), seen: Seen{"1.2.0", pub}, now: pub.Add(2 * time.Hour), reason: ReasonRollback},
		{name: "older publish of the same version (replay)", m: m("1.1.0", pub, week), seen: Seen{"1.1.0", pub.Add(time.Hour)}, now: pub.Add(2 * time.Hour), reason: ReasonRollback},
		{name: "no expiry (a version folder's manifest)", m: m("1.3.0", time.Time{}, 0), now: pub, reason: ReasonNoExpiry},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			next, err := CheckFresh(tc.m, tc.seen, tc.now)
			if tc.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				if next != tc.next {
					t.Errorf("remembers %+v, want %+v", next, tc.next)
				}
				return
			}
			if ReasonOf(err) != tc.reason || !strings.HasPrefix(fmt.Sprint(err), tc.reason+": ") {
				t.Fatalf("err = %v, want reason %s", err, tc.reason)
			}
			if next != tc.seen {
				t.Errorf("a refused manifest changed what is remembered: %+v", next)
			}
		})
	}
	if r := ReasonOf(fmt.Errorf("x: %w", ErrUntrusted)); r != ReasonSignature {
		t.Errorf("ReasonOf(untrusted) = %q", r)
	}
}

func TestParsePublicKeys(t *testing.T) {
	pub1, k1 := testKeys(t)
	pub2, _ := testKeys(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER})
	two := append(pemPub(t, pub1), pemPub(t, pub2)...)
	tests := []struct {
		name string
		data []byte
		n    int
		want string
	}{
		{name: "one key", data: pemPub(t, pub1), n: 1},
		{name: "two keys", data: two, n: 2},
		{name: "private key", data: pemPriv(t, k1), want: "this is a private key"},
		{name: "private key after a public one", data: append(pemPub(t, pub1), pemPriv(t, k1)...), want: "this is a private key"},
		{name: "not PEM", data: []byte("hello\n"), want: "no PEM block"},
		{name: "empty", data: nil, want: "no PEM block"},
		{name: "rsa", data: rsaPEM, want: "not ed25519"},
		{name: "certificate", data: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), want: `is "CERTIFICATE"`},
		{name: "junk after", data: append(pemPub(t, pub1), "junk"...), want: "unexpected data after PEM block 1"},
		{name: "duplicate", data: append(pemPub(t, pub1), pemPub(t, pub1)...), want: "appears twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := ParsePublicKeys(tc.data)
			if tc.want == "" {
				if err != nil || len(keys) != tc.n {
					t.Fatalf("%d keys, %v", len(keys), err)
				}
				ring, err := MarshalPublicKeys(keys)
				if err != nil {
					t.Fatal(err)
				}
				if again, err := ParsePublicKeys(ring); err != nil || len(again) != tc.n {
					t.Fatalf("keyring does not round-trip: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFindPrivateKeys(t *testing.T) {
	_, k := testKeys(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "1.0.0"), 0o755)
	os.WriteFile(filepath.Join(dir, "1.0.0", "big"), append(bytes.Repeat([]byte{0}, MaxKeyringFile+1), pemPriv(t, k)...), 0o644)
	os.WriteFile(filepath.Join(dir, "update.pub"), pemPub(t, k.Public().(ed25519.PublicKey)), 0o644)
	if found, err := FindPrivateKeys(dir); err != nil || len(found) != 0 {
		t.Fatalf("found %q, %v in a folder without key files", found, err)
	}
	os.WriteFile(filepath.Join(dir, "1.0.0", "update.key"), pemPriv(t, k), 0o600)
	if found, err := FindPrivateKeys(dir); err != nil || len(found) != 1 || !strings.HasSuffix(found[0], "1.0.0/update.key") {
		t.Fatalf("found %q, %v", found, err)
	}
	if found, err := FindPrivateKeys(filepath.Join(dir, "nope")); err != nil || len(found) != 0 {
		t.Fatalf("missing folder: %q, %v", found, err)
	}
}

func FuzzParsePublicKeys(f *testing.F) {
	seed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	f.Add(pemPub(f, seed.Public().(ed25519.PublicKey)))
	f.Add(pemPriv(f, seed))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParsePublicKeys(data)
		if err != nil {
			return
		}
		if len(keys) == 0 || len(keys) > MaxTrustedKeys || ContainsPrivateKey(data) {
			t.Fatalf("accepted %d keys from %q", len(keys), data)
		}
		for _, k := range keys {
			if len(k) != ed25519.PublicKeySize {
				t.Fatalf("key of %d bytes", len(k))
			}
		}
	})
}
