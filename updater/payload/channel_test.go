package payload

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRoundTrip reads every file of every version back, from disk and over
// HTTP, through the Verifier, and compares it with what went in.
func TestRoundTrip(t *testing.T) {
	f := fixture(t)

	tm := readTop(t, f.channel, f.pub)
	if tm.Expires.Sub(tm.Published) != DefaultExpiry || time.Since(tm.Published) > time.Hour {
		t.Errorf("top-level manifest published %s, expires %s: want now and now+%s", tm.Published, tm.Expires, DefaultExpiry)
	}
	if tm.Version != fixtureNewest {
		t.Errorf("top-level manifest is %s, want the newest %s", tm.Version, fixtureNewest)
	}

	for _, r := range fixtureReleases {
		t.Run("disk/"+r.version, func(t *testing.T) {
			vdir := filepath.Join(f.channel, r.version)
			raw, err := os.ReadFile(filepath.Join(vdir, ManifestFile))
			if err != nil {
				t.Fatal(err)
			}
			env, err := ParseEnvelope(raw)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := env.Verify([]ed25519.PublicKey{f.pub}); err != nil {
				t.Fatal(err)
			}
			data := env.Signed
			m, err := ParseManifest(data)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(bytes.TrimSpace(m.Marshal()), data) {
				t.Error("re-marshalled manifest differs from the stored bytes")
			}
			if !m.Published.IsZero() || !m.Expires.IsZero() {
				t.Errorf("a version folder's manifest has published %s, expires %s: want neither", m.Published, m.Expires)
			}
			if m.Version != r.version || m.Name != "slate-demo" || !m.Created.Equal(fixtureCreated) {
				t.Errorf("manifest header = %+v", m)
			}
			if len(m.Files) != 3 {
				t.Fatalf("%d files", len(m.Files))
			}
			for _, file := range m.Files {
				if !strings.HasPrefix(file.Path, r.version+"/") {
					t.Errorf("%s: path %q is not in the version folder", file.Role, file.Path)
				}
				st, err := os.Stat(filepath.Join(f.channel, filepath.FromSlash(file.Path)))
				if err != nil {
					t.Fatal(err)
				}
				if st.Size() != file.CompressedSize {
					t.Errorf("%s: stored %d bytes, manifest says %d", file.Path, st.Size(), file.CompressedSize)
				}
				in, err := os.Open(filepath.Join(f.channel, filepath.FromSlash(file.Path)))
				if err != nil {
					t.Fatal(err)
				}
				v, err := OpenFile(file, in)
				if err != nil {
					t.Fatal(err)
				}
				sameStream(t, f.expected(r.version, file.Role), v)
				// The last read must have been a clean EOF.
				if _, err := v.Read(make([]byte, 1)); err != io.EOF { //nolint:errorlint // io.Reader must return io.EOF itself, unwrapped: that is what is tested
					t.Errorf("%s: after the end: %v, want io.EOF", file.Path, err)
				}
				v.Close()
				in.Close()
			}
			root, _ := m.File(RoleRoot)
			if r.every >= 4 && root.CompressedSize*2 > root.Size {
				t.Errorf("root %d bytes compressed to %d: zstd did not work", root.Size, root.CompressedSize)
			}
		})
	}

	t.Run("http", func(t *testing.T) {
		srv := httptest.NewServer(Serve(f.channel))
		defer srv.Close()
		m, _, err := download(context.Background(), t, srv.Client(), srv.URL, f.pub, func(file File, r io.Reader) error {
			sameStream(t, f.expected(fixtureNewest, file.Role), r)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if m.Version != fixtureNewest {
			t.Errorf("served manifest is %s", m.Version)
		}
	})
}

func TestAddToChannelTopLevelOrder(t *testing.T) {
	_, priv := testKeys(t)
	tests := []struct {
		name  string
		order []string
		want  string
	}{
		{"ascending", []string{"1.0.0", "1.0.1", "1.1.0"}, "1.1.0"},
		{"descending", []string{"2.0.0", "1.9.9", "1.10.0"}, "2.0.0"},
		{"numeric not lexical", []string{"1.9.0", "1.10.0", "1.2.0"}, "1.10.0"},
		{"release beats its prerelease", []string{"3.0.0", "3.0.0-rc.1"}, "3.0.0"},
		{"prerelease precedence", []string{"1.0.0-alpha", "1.0.0-beta.11", "1.0.0-beta.2", "1.0.0-alpha.1"}, "1.0.0-beta.11"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch := t.TempDir()
			for _, v := range tc.order {
				r := smallRelease(v)
				if _, err := addTestRelease(ch, priv, r, t.TempDir()); err != nil {
					t.Fatal(err)
				}
			}
			m := readTop(t, ch, priv.Public().(ed25519.PublicKey))
			if m.Version != tc.want {
				t.Errorf("top-level manifest is %s, want %s", m.Version, tc.want)
			}
			entries, _ := os.ReadDir(ch)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".") && e.Name() != LockFile {
					t.Errorf("leftover %s in the channel", e.Name())
				}
			}
		})
	}
}

func smallRelease(version string) testRelease {
	return testRelease{
		version: version, rootSize: 256 << 10, every: 2,
		kernel: randomBytes(4096, seedOf("k"+version)), initrd: randomBytes(3000, seedOf("i"+version)),
	}
}

func TestAddToChannelExisting(t *testing.T) {
	_, priv := testKeys(t)
	_, otherPriv := testKeys(t)
	ch := t.TempDir()
	base := smallRelease("1.0.0")
	m1, err := addTestRelease(ch, priv, base, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("identical content keeps the version and refreshes the top", func(t *testing.T) {
		before := snapshot(t, filepath.Join(ch, "1.0.0"))
		m2, err := addTestRelease(ch, priv, base, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if !sameContent(m1, m2) || !m2.Published.After(m1.Published) {
			t.Errorf("second add returned %+v, want the same content published later than %s", m2, m1.Published)
		}
		if after := snapshot(t, filepath.Join(ch, "1.0.0")); after != before {
			t.Errorf("version folder changed:\n%s\n---\n%s", before, after)
		}
	})

	changed := base
	changed.kernel = append([]byte(nil), base.kernel...)
	changed.kernel[100] ^= 1
	tests := []struct {
		name string
		key  ed25519.PrivateKey
		r    testRelease
		want string
	}{
		{"different kernel", priv, changed, "version 1.0.0 already exists in the channel with different content"},
		{"different root", priv, testRelease{version: "1.0.0", rootSize: base.rootSize, every: 3, kernel: base.kernel, initrd: base.initrd}, "with different content"},
		{"signed by another key", otherPriv, base, "does not verify with the signing key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, ch)
			_, err := addTestRelease(ch, tc.key, tc.r, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "1.0.0") {
				t.Fatalf("err = %v, want one naming 1.0.0 and containing %q", err, tc.want)
			}
			if after := snapshot(t, ch); after != before {
				t.Errorf("a refused add changed the channel:\n%s\n---\n%s", before, after)
			}
		})
	}
}

func TestAddToChannelBadInput(t *testing.T) {
	_, priv := testKeys(t)
	scratch := t.TempDir()
	kernel := filepath.Join(scratch, "k")
	empty := filepath.Join(scratch, "empty")
	os.WriteFile(kernel, []byte("kernel"), 0o644)
	os.WriteFile(empty, nil, 0o644)
	good := func() Release {
		return Release{Name: "demo", Version: "1.0.0", KernelVersion: "6.1.0", Created: fixtureCreated,
			Root: bytes.NewReader(make([]byte, 1000)), RootSize: 1000, Kernel: kernel, Initrd: kernel}
	}
	tests := []struct {
		name   string
		key    ed25519.PrivateKey
		mutate func(*Release)
		want   string
	}{
		{"root shorter than RootSize", priv, func(r *Release) { r.RootSize = 1001 }, "image has 1000 bytes, stated size is 1001"},
		{"root longer than RootSize", priv, func(r *Release) { r.RootSize = 999 }, "longer than its stated size 999"},
		{"no root", priv, func(r *Release) { r.Root = nil }, "no root image"},
		{"bad version", priv, func(r *Release) { r.Version = "1.0" }, "not a semantic version"},
		{"build metadata", priv, func(r *Release) { r.Version = "1.0.0+git" }, "must not carry +build"},
		{"bad name", priv, func(r *Release) { r.Name = "Demo" }, "name \"Demo\""},
		{"no created", priv, func(r *Release) { r.Created = time.Time{} }, "no creation time"},
		{"missing kernel", priv, func(r *Release) { r.Kernel = filepath.Join(scratch, "nope") }, "kernel: open"},
		{"empty initrd", priv, func(r *Release) { r.Initrd = empty }, "initrd:"},
		{"bad key", ed25519.PrivateKey(make([]byte, 10)), func(r *Release) {}, "signing key 1 is 10 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch := t.TempDir()
			r := good()
			tc.mutate(&r)
			_, err := AddToChannel(ch, tc.key, r)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if s := snapshot(t, ch); s != "" {
				t.Errorf("failed add left files behind:\n%s", s)
			}
		})
	}
}

// snapshot lists every file under dir with its size and content hash prefix.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.Name() == LockFile {
			return nil
		}
		if d.IsDir() {
			b.WriteString(rel + "/\n")
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		st, _ := d.Info()
		b.WriteString(rel + " " + st.Mode().String() + " " + fmt.Sprintf("%x", sha256.Sum256(data))[:16] + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
