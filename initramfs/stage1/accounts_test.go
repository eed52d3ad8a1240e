package stage1

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMergeAccounts(t *testing.T) {
	dir := t.TempDir()
	lower, upper := filepath.Join(dir, "etc"), filepath.Join(dir, "upper")
	for _, d := range []string{lower, upper} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(lower, "passwd"), "root:x:0:0:root:/root:/bin/sh\nsshd:x:65000:65534:sshd:/run/sshd:/usr/sbin/nologin\n", 0o644)
	write(filepath.Join(lower, "shadow"), "root:*::0:99999:7:::\nsshd:!::0:99999:7:::\n", 0o600)
	write(filepath.Join(lower, "group"), "root:x:0:\n", 0o644)
	// the machine's copies, as Ignition left them (no group copy)
	write(filepath.Join(upper, "passwd"), "root:x:0:0:root:/root:/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/sh\n", 0o644)
	write(filepath.Join(upper, "shadow"), "root:!::0:99999:7:::\nalice:*::0:99999:7:::\n", 0o600)
	mergeAccounts(lower, upper)
	for name, want := range map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nsshd:x:65000:65534:sshd:/run/sshd:/usr/sbin/nologin\n",
		"shadow": "root:*::0:99999:7:::\nalice:*::0:99999:7:::\nsshd:!::0:99999:7:::\n",
	} {
		b, err := os.ReadFile(filepath.Join(upper, name))
		if err != nil || string(b) != want {
			t.Errorf("%s: %v\n%s\nwant\n%s", name, err, b, want)
		}
	}
	if st, _ := os.Stat(filepath.Join(upper, "shadow")); st.Mode().Perm() != 0o600 {
		t.Errorf("shadow's mode became %v", st.Mode())
	}
	if _, err := os.Lstat(filepath.Join(upper, "group")); err == nil {
		t.Error("a group copy was made where the machine had none")
	}
	ents, _ := os.ReadDir(upper)
	if len(ents) != 2 {
		t.Errorf("%d files in the upper layer, want 2 (no temporary file left)", len(ents))
	}
}
