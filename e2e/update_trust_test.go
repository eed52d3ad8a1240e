package e2e

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/internal/qemu"
	"github.com/slateos/slate/updater/payload"
)

// trustSpec is c.spec with the image trusting the given public keys
// (update.public_keys) instead of the channel's one key.
func trustSpec(t *testing.T, c *channel, s updSpec, pubs ...string) string {
	t.Helper()
	p := c.spec(t, s)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	one := "  public_key: " + filepath.Join(c.keys, "update.pub") + "\n"
	if !strings.Contains(string(b), one) {
		t.Fatalf("spec %s has no %q", p, one)
	}
	body := strings.Replace(string(b), one, "  public_keys: ["+strings.Join(pubs, ", ")+"]\n", 1)
	out := filepath.Join(c.dir, "trust-"+s.version+".yaml")
	if err := os.WriteFile(out, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUpdateKeyRotationAndFreshness, on one machine: v1 trusts K1 and K2
// and takes v2, signed by K2 only (the rotation's second step); v2 trusts
// only K2, so v3 signed by K1 alone (a revoked key) is refused and said
// so on the console and in `slate update status`; then an expired top
// manifest (a frozen channel) is reported as failed with its reason
// instead of looking idle. On the host, publishing K1's v3 over K2's
// channel needs --force.
func TestUpdateKeyRotationAndFreshness(t *testing.T) {
	needQEMU(t)
	t.Parallel()
	t0 := time.Now()
	c := newChannel(t)
	k1 := c.keys // the channel's first key
	k2 := filepath.Join(c.dir, "keys2")
	if out, err := slate(t, "keygen", "-o", k2); err != nil {
		t.Fatalf("slate keygen: %v\n%s", err, out)
	}
	pub1, pub2 := filepath.Join(k1, "update.pub"), filepath.Join(k2, "update.pub")
	env := map[string]string{"STATUS_ERRORS": "1"}

	v1 := build(t, trustSpec(t, c, updSpec{version: "1.0.0", statusEnv: env}, pub1, pub2), "--version", "1.0.0")
	build(t, trustSpec(t, c, updSpec{version: "1.1.0", statusEnv: env}, pub2), "--version", "1.1.0",
		"--channel", c.root, "--sign", filepath.Join(k2, "update.key"))
	vm := boot(t, machine(t, v1), qemu.Options{Network: true})

	// (a) rotation: the K2-only version is accepted by an image trusting K1 and K2
	nthMatch(t, vm, `^SLATE-READY version=1\.0\.0 slot=a$`, 1, 6*time.Minute)
	nthMatch(t, vm, `^SLATE-UPDATE state=staged version=1\.1\.0 slot=b`, 1, 4*time.Minute)
	nthMatch(t, vm, `^SLATE-READY version=1\.1\.0 slot=b$`, 1, 3*time.Minute)
	nthMatch(t, vm, `^SLATE-UPDATE state=blessed version=1\.1\.0`, 1, 2*time.Minute)

	// K1 cannot publish over K2's channel by accident
	v3 := trustSpec(t, c, updSpec{version: "1.2.0", statusEnv: env}, pub2)
	sign1 := filepath.Join(k1, "update.key")
	out, err := slate(t, "build", "-c", v3, "-o", filepath.Join(t.TempDir(), "out"), "--version", "1.2.0", "--channel", c.root, "--sign", sign1)
	if err == nil || !strings.Contains(out, "does not verify with the signing key") {
		t.Fatalf("publishing with another key: %v\n%s", err, out)
	}
	build(t, v3, "--version", "1.2.0", "--channel", c.root, "--sign", sign1, "--force")

	// (a) revocation: v2 trusts only K2 and refuses K1's v3
	nthMatch(t, vm, `^SLATE-UPDATE state=failed reason=bad-signature err=".*no signature by a trusted key`, 1, 2*time.Minute)
	nthMatch(t, vm, `STATUS state=failed version=1\.1\.0 slot=b entry=good .* error="bad-signature: `, 1, time.Minute)

	// (b) freeze: a top manifest signed by K2 that expired an hour ago
	key2, err := payload.LoadPrivateKey(filepath.Join(k2, "update.key"))
	if err != nil {
		t.Fatal(err)
	}
	expired(t, c.root, key2)
	nthMatch(t, vm, `^SLATE-UPDATE state=failed reason=channel-expired err=".*expired at`, 1, 2*time.Minute)
	nthMatch(t, vm, `STATUS state=failed version=1\.1\.0 slot=b entry=good .* error="channel-expired: `, 1, time.Minute)

	noneMatch(t, vm.Lines(), `SLATE-UPDATE state=(downloading|staged) version=1\.2\.0`, "an untrusted or expired version was applied")
	t.Logf("whole test: %s", time.Since(t0).Round(time.Second))
}

// expired replaces a channel's top manifest by the same one signed by key
// with published two hours and expires one hour ago, as a mirror that
// stopped syncing serves it.
func expired(t *testing.T, dir string, key ed25519.PrivateKey) {
	t.Helper()
	p := filepath.Join(dir, payload.ManifestFile)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	env, err := payload.ParseEnvelope(data)
	if err != nil {
		t.Fatal(err)
	}
	m, err := payload.ParseManifest(env.Signed)
	if err != nil {
		t.Fatal(err)
	}
	m.Published = time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	m.Expires = m.Published.Add(time.Hour)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, payload.SignEnvelope(m.Marshal(), key), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}
