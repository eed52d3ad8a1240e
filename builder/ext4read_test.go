package builder

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/format/ext4fs"
	"github.com/slateos/slate/internal/imageinfo"
)

// ext4Image writes a small filesystem the way the builder writes roots.
func ext4Image(t testing.TB) []byte {
	t.Helper()
	fsys, err := ext4fs.New(ext4fs.Options{Size: 8 << 20, Time: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := fsys.Mkdir("/usr/lib/slate/many", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	// a directory of several blocks
	for i := range 300 {
		if err := fsys.AddFile(fmt.Sprintf("/usr/lib/slate/many/file-with-a-long-name-%04d", i), 0o644, 0, 0, 1, staticBytes([]byte{'x'})); err != nil {
			t.Fatal(err)
		}
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000)
	for p, b := range map[string][]byte{"/usr/lib/slate/image.json": []byte(`{"name":"x"}`), "/usr/lib/slate/many/big": big} {
		if err := fsys.AddFile(p, 0o644, 0, 0, int64(len(b)), staticBytes(b)); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "fs.img")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := fsys.WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// WriteTo leaves the zeros at the end unwritten
	return append(b, make([]byte, 8<<20-len(b))...)
}

func TestExt4Read(t *testing.T) {
	img := ext4Image(t)
	x, err := openExt4(bytes.NewReader(img), 0, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string][]byte{
		"/usr/lib/slate/image.json":                      []byte(`{"name":"x"}`),
		"/usr/lib/slate/many/big":                        bytes.Repeat([]byte("0123456789abcdef"), 20000),
		"/usr/lib/slate/many/file-with-a-long-name-0299": []byte("x"),
	} {
		got, err := x.readFile(p, 1<<20)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v; want %d bytes", p, len(got), err, len(want))
		}
	}
	if _, err := x.readFile("/usr/lib/slate/nope", 1<<20); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := x.readFile("/usr/lib/slate/many/big", 1000); err == nil {
		t.Error("read past the limit")
	}
	if _, err := x.readFile("/usr/lib/slate", 1<<20); err == nil {
		t.Error("read a directory as a file")
	}
	if _, err := openExt4(bytes.NewReader(make([]byte, 8192)), 0, 8192); !errors.Is(err, errNoFS) {
		t.Errorf("zeros: %v", err)
	}
}

// FuzzExt4Read: a damaged or hostile root never panics the reader.
func FuzzExt4Read(f *testing.F) {
	img := ext4Image(f)
	f.Add(uint32(1024+4), byte(0xff))
	f.Add(uint32(4096+8), byte(0x7f))
	f.Fuzz(func(t *testing.T, off uint32, v byte) {
		b := bytes.Clone(img)
		// damage one byte of the metadata (the first 64 KiB)
		b[int(off)%min(len(b), 64<<10)] ^= v
		x, err := openExt4(bytes.NewReader(b), 0, int64(len(b)))
		if err != nil {
			return
		}
		_, _ = x.readFile("/usr/lib/slate/image.json", 1<<20)
		_, _ = x.readFile("/usr/lib/slate/many/big", 1<<20)
	})
}

func TestWriteContainersText(t *testing.T) {
	var b bytes.Buffer
	slots := []SlotContainers{
		{Slot: "a", Version: "1.0.0"},
		{Slot: "b", Problem: "read /usr/lib/slate/image.json: broken"},
		{Version: "2.0.0", Containers: []imageinfo.Container{{Container: configs.Container{Name: "web", Image: "r.example/web:1", Network: "host"}, Digest: "sha256:ab", UID: 5, GID: 6}}},
	}
	if err := WriteContainersText(&b, slots); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, w := range []string{"slot b: containers unknown: read /usr/lib/slate/image.json: broken", "containers (2.0.0):", "web", "r.example/web:1", "sha256:ab", "5:6", "host", "-"} {
		if !strings.Contains(got, w) {
			t.Errorf("lacks %q:\n%s", w, got)
		}
	}
	if strings.Contains(got, "slot a") {
		t.Errorf("a slot without containers is listed:\n%s", got)
	}
}
