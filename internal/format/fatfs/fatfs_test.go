package fatfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

var testSizes = []int64{33 * mib, 64 * mib, 128 * mib, 200 * mib, 256 * mib, 259 * mib, 300 * mib, 512 * mib, 1 * gib, 4*gib - 1*mib}

// TestWriteRead writes every content set at every size and reads it back
// with fsck.vfat, mtools, the kernel (when it can mount vfat) and Open.
func TestWriteRead(t *testing.T) {
	sizes := testSizes
	if testing.Short() {
		sizes = []int64{33 * mib, 256 * mib}
	}
	for _, size := range sizes {
		for _, c := range allSets() {
			t.Run(fmt.Sprintf("%dMiB/%s", size/mib, c.name), func(t *testing.T) {
				dir := t.TempDir()
				opts := Options{Size: size, Label: "ESP", VolumeID: 0xdeadbeef, Time: testTime}
				img := writeImage(t, dir, opts, c, 0)
				want := c.expected()

				fsck(t, img, 0, size)

				sameTree(t, "mcopy", asMtools(want), mcopyTree(t, img, 0))
				if len(c.files) > 0 {
					f := c.files[0]
					cmd := exec.Command(needTool(t, "mtype"), "-i", img, "::"+f.path)
					cmd.Env = mtoolsEnv()
					out, err := cmd.Output()
					if err != nil {
						t.Fatalf("mtype %s: %v", f.path, err)
					}
					if !bytes.Equal(out, patternBytes(f.seed, f.size)) {
						t.Errorf("mtype %s: content differs", f.path)
					}
				}

				r, err := os.Open(img)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				fsys, err := Open(r, 0, size)
				if err != nil {
					t.Fatal(err)
				}
				if fsys.Label() != "ESP" {
					t.Errorf("Label() = %q, want ESP", fsys.Label())
				}
				sameTree(t, "Open", want, walkFS(t, fsys))

				mountCheck(t, img, 0, want)
			})
		}
	}
}

// TestFSTest runs the standard library's fs.FS conformance checks.
func TestFSTest(t *testing.T) {
	c := espSet()
	c.files = append(c.files, tailSet().files...)
	c.files = append(c.files, unicodeSet().files...)
	c.dirs = append(c.dirs, nestedSet().dirs...)
	// fstest reads every file many ways (small reads, seeks): keep the
	// kernel-sized files small, still several clusters.
	for i := range c.files {
		c.files[i].size = min(c.files[i].size, 300*kib+7)
	}
	opts := Options{Size: 64 * mib, Label: "ESP", Time: testTime}
	img := writeImage(t, t.TempDir(), opts, c, 0)
	r, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fsys, err := Open(r, 0, opts.Size)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := range c.expected() {
		names = append(names, strings.TrimSuffix(k, "/"))
	}
	if err := fstest.TestFS(fsys, names...); err != nil {
		t.Fatal(err)
	}
}

// TestOffset writes into the middle of a disk image: the hidden-sectors
// field is the partition start and nothing outside the partition changes.
func TestOffset(t *testing.T) {
	const size, offset = 64 * mib, 3 * mib
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	// Fill the disk with a marker so that stray writes show.
	marker := bytes.Repeat([]byte{0xa5}, 1*mib)
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	total := int64(offset + size + 2*mib)
	for off := int64(0); off < total; off += mib {
		if _, err := f.WriteAt(marker, off); err != nil {
			t.Fatal(err)
		}
	}
	c := espSet()
	b := build(t, Options{Size: size, Label: "ESP", Time: testTime}, c)
	if err := b.WriteTo(f, offset); err != nil {
		t.Fatal(err)
	}
	f.Close()
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw[:offset], bytes.Repeat([]byte{0xa5}, offset)) || !bytes.Equal(raw[offset+size:], bytes.Repeat([]byte{0xa5}, int(total-offset-size))) {
		t.Fatal("bytes outside the partition changed")
	}
	for _, sec := range []int64{0, backupBoot} {
		if h := binary.LittleEndian.Uint32(raw[offset+sec*512+28:]); h != offset/512 {
			t.Errorf("sector %d: hidden sectors %d, want %d", sec, h, offset/512)
		}
	}
	sameTree(t, "mcopy", c.expected(), mcopyTree(t, img, offset))
	r, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fsys, err := Open(r, offset, size)
	if err != nil {
		t.Fatal(err)
	}
	sameTree(t, "Open", c.expected(), walkFS(t, fsys))
	// The free data area still holds the marker; fsck must not care.
	fsck(t, img, offset, size)
}

// TestDeterministic writes the same tree twice, added in different
// orders, and compares the images.
func TestDeterministic(t *testing.T) {
	c := espSet()
	c.files = append(c.files, manySet().files...)
	opts := Options{Size: 300 * mib, Label: "esp", VolumeID: 7, Time: testTime}
	var sums [2][32]byte
	for i := range sums {
		if i == 1 {
			for l, r := 0, len(c.files)-1; l < r; l, r = l+1, r-1 {
				c.files[l], c.files[r] = c.files[r], c.files[l]
			}
		}
		img := writeImage(t, t.TempDir(), opts, c, 0)
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			t.Fatal(err)
		}
		f.Close()
		copy(sums[i][:], h.Sum(nil))
	}
	if sums[0] != sums[1] {
		t.Fatalf("two writes differ: %x vs %x", sums[0], sums[1])
	}
}
