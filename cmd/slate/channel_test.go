package main

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/updater/payload"
)

// slate channel rollout|pause|resume re-sign the top manifest with a key
// that verifies, and refuse one that does not (or a bad spec), changing
// nothing.
func TestChannelRolloutPauseResume(t *testing.T) {
	dir := t.TempDir()
	keys, other := filepath.Join(dir, "keys"), filepath.Join(dir, "other")
	for _, d := range []string{keys, other} {
		os.Mkdir(d, 0o700)
		if err := payload.GenerateKey(d); err != nil {
			t.Fatal(err)
		}
	}
	key, err := payload.LoadPrivateKey(filepath.Join(keys, "update.key"))
	if err != nil {
		t.Fatal(err)
	}
	kp, ip := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
	os.WriteFile(kp, []byte("kernel"), 0o644)
	os.WriteFile(ip, []byte("initrd"), 0o644)
	ch := filepath.Join(dir, "channel")
	root := make([]byte, 4096)
	if _, err := payload.Publish(ch, payload.Release{
		Name: "demo", Version: "1.0.0", KernelVersion: "6.1.0", Created: time.Unix(1700000000, 0),
		Root: bytes.NewReader(root), RootSize: int64(len(root)), Kernel: kp, Initrd: ip,
	}, payload.PublishOptions{Keys: []ed25519.PrivateKey{key}}); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := newChannelCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return out.String(), err
	}
	top := func() *payload.Manifest {
		data, err := os.ReadFile(filepath.Join(ch, payload.ManifestFile))
		if err != nil {
			t.Fatal(err)
		}
		m, err := payload.OpenEnvelope([]ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, data)
		if err != nil {
			t.Fatalf("the top manifest does not verify: %v", err)
		}
		return m
	}
	good, bad := filepath.Join(keys, "update.key"), filepath.Join(other, "update.key")
	for _, tc := range []struct {
		args []string
		out  string
		spec string
	}{
		{[]string{"rollout", "--channel", ch, "--sign", good, "34%:0h,100%:1h"}, ", rollout 34%:0h,100%:1h from ", "34%:0h,100%:1h"},
		{[]string{"pause", "--channel", ch, "--key", good}, ", paused since ", "34%:0h,100%:1h"},
		{[]string{"resume", "--channel", ch, "--sign", good}, ", rollout 34%:0h,100%:1h from ", "34%:0h,100%:1h"},
	} {
		before := top()
		badArgs := append([]string(nil), tc.args...)
		for i, a := range badArgs {
			if a == good {
				badArgs[i] = bad
			}
		}
		if _, err := run(badArgs...); err == nil || !strings.Contains(err.Error(), "does not verify") {
			t.Fatalf("%s with another key: %v", tc.args[0], err)
		}
		if after := top(); !after.Published.Equal(before.Published) {
			t.Fatalf("a refused %s re-signed the channel", tc.args[0])
		}
		out, err := run(tc.args...)
		if err != nil || !strings.Contains(out, tc.out) {
			t.Fatalf("%s: %v\n%s", tc.args[0], err, out)
		}
		m := top()
		if m.Rollout == nil || payload.FormatRolloutSpec(m.Rollout.Waves) != tc.spec || m.Rollout.Paused != (tc.args[0] == "pause") {
			t.Errorf("after %s: %+v", tc.args[0], m.Rollout)
		}
	}
	if _, err := run("rollout", "--channel", ch, "--key", good, "50%:0h"); err == nil || !strings.Contains(err.Error(), "the last wave's share must be 100%") {
		t.Errorf("bad spec: %v", err)
	}
	if _, err := run("pause", "--channel", ch); err == nil || !strings.Contains(err.Error(), "key") {
		t.Errorf("no key: %v", err)
	}
}
