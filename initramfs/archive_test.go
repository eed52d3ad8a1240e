package initramfs

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

func TestArchiveRoundTripAndDeterminism(t *testing.T) {
	build := func(order []string) []byte {
		a := New(time.Unix(1577836800, 0))
		for _, n := range order {
			if err := a.AddBytes(n, 0o644, []byte("content of "+n)); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.Symlink("bin/sh", "/init"); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if _, err := a.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	one := build([]string{"init", "lib/modules/6.1/kernel/a.ko", "lib/modules/6.1/modules.dep"})
	two := build([]string{"lib/modules/6.1/modules.dep", "init", "lib/modules/6.1/kernel/a.ko"})
	if !bytes.Equal(one, two) {
		t.Fatal("archive depends on the order files were added")
	}
	dec, err := zstd.NewReader(bytes.NewReader(one))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(dec)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]cpio.Record{}
	var names []string
	for _, r := range recs {
		got[r.Name] = r
		names = append(names, r.Name)
	}
	for _, want := range []string{"init", "dev/console", "lib/modules/6.1/kernel/a.ko", "bin/sh", "lib", "lib/modules"} {
		if _, ok := got[want]; !ok {
			t.Errorf("archive lacks %s (has %v)", want, names)
		}
	}
	// parents come before their children
	seen := map[string]bool{}
	for _, n := range names {
		for d := n; ; {
			i := bytes.LastIndexByte([]byte(d), '/')
			if i < 0 {
				break
			}
			d = d[:i]
			if !seen[d] {
				t.Errorf("%s comes before its folder %s", n, d)
			}
		}
		seen[n] = true
	}
	r := got["init"]
	b, _ := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	if string(b) != "content of init" || r.MTime != 1577836800 || r.Mode&0o777 != 0o644 {
		t.Errorf("init record: %q mtime %d mode %o", b, r.MTime, r.Mode)
	}
	if c := got["dev/console"]; c.Mode&cpio.S_IFMT != cpio.S_IFCHR || c.Rmajor != 5 || c.Rminor != 1 {
		t.Errorf("dev/console: %+v", c.Info)
	}
}

func TestArchiveRejectsFileOverFolder(t *testing.T) {
	a := New(time.Unix(0, 0))
	if err := a.AddBytes("x", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.AddBytes("x/y", 0o644, nil); err == nil {
		t.Fatal("accepted a file under a file")
	}
}
