package builder

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/updater/payload"
)

// TestPublishIsTheLastStep: a build with --channel whose qcow2 step fails
// (a qemu-img that exits 1) leaves the channel as it was, and the fixed
// rebuild of the same version publishes it. Publishing used to come before
// the qcow2 and RAM steps, so the failed build left its version in the
// channel, moved the top manifest to it, and the rebuild was refused.
// A channel folder holding a private key is refused before the build.
func TestPublishIsTheLastStep(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images")
	}
	cache := ramCache(t)
	slate := staticSlate(t)
	spec, err := configs.Load(filepath.Join("..", "configs", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	if err := payload.GenerateKey(keys); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(keys, payload.PrivateKeyFile)
	channel := filepath.Join(t.TempDir(), "channel")
	opts := func(out string, formats ...string) Options {
		return Options{Spec: spec, OutDir: out, Formats: formats, CacheDir: cache, Slate: slate,
			Channel: channel, SignKeys: []string{keyFile}}
	}

	fake := t.TempDir()
	if err := os.WriteFile(filepath.Join(fake, "qemu-img"), []byte("#!/bin/sh\necho 'qemu-img: simulated failure' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := os.Getenv("PATH")
	t.Setenv("PATH", fake+string(os.PathListSeparator)+path)
	out := filepath.Join(t.TempDir(), "out")
	_, err = Build(context.Background(), opts(out, "raw", "qcow2"))
	if err == nil || !strings.Contains(err.Error(), "simulated failure") {
		t.Fatalf("build with a failing qemu-img: %v", err)
	}
	if entries, _ := os.ReadDir(channel); len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("a failed build changed the channel: %q", names)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a failed build left %s", out)
	}

	t.Setenv("PATH", path)
	if _, err := Build(context.Background(), opts(out, "raw")); err != nil {
		t.Fatalf("rebuild of the same version: %v", err)
	}
	key, err := payload.LoadPrivateKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(channel, payload.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := payload.OpenEnvelope([]ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, data)
	if err != nil || m.Version != spec.Version || m.Expires.IsZero() {
		t.Fatalf("top manifest after the rebuild: %+v, %v", m, err)
	}

	// a private key next to the channel's files: refused at once, nothing built
	if err := os.WriteFile(filepath.Join(channel, "update.key"), []byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(t.TempDir(), "out")
	if _, err := Build(context.Background(), opts(out2, "raw")); err == nil || !strings.Contains(err.Error(), "Options.Channel") || !strings.Contains(err.Error(), "private key") {
		t.Fatalf("build into a channel holding a private key: %v", err)
	}
	if _, err := os.Stat(out2); err == nil {
		t.Errorf("a refused build left %s", out2)
	}
}
