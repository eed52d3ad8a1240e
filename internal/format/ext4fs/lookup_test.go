package ext4fs

import (
	"errors"
	"io/fs"
	"testing"
)

func TestLookup(t *testing.T) {
	f, err := New(Options{Size: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.Mkdir("/usr/bin", 0o755|fs.ModeSetgid, 0, 0))
	must(f.AddFile("/usr/bin/su", 0o755|fs.ModeSetuid, 0, 0, 0, nil))
	must(f.AddFile("/usr/bin/own", 0o640|fs.ModeSticky, 1000, 2000, 0, nil))
	must(f.Symlink("/bin", "usr/bin", 0, 0))
	must(f.Mknod("/null", fs.ModeDevice|fs.ModeCharDevice|0o666, 1, 3, 0, 0))
	tests := []struct {
		path string
		want Entry
		err  bool
	}{
		{"/", Entry{Mode: fs.ModeDir | 0o755}, false},
		{"/usr/bin", Entry{Mode: fs.ModeDir | fs.ModeSetgid | 0o755}, false},
		{"/usr/bin/su", Entry{Mode: fs.ModeSetuid | 0o755}, false},
		{"/usr/bin/own", Entry{Mode: fs.ModeSticky | 0o640, UID: 1000, GID: 2000}, false},
		{"/bin", Entry{Mode: fs.ModeSymlink | 0o777, Target: "usr/bin"}, false},
		{"/null", Entry{Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666}, false},
		{"/bin/su", Entry{}, true}, // links are not followed
		{"/usr/bin/su/x", Entry{}, true},
		{"/nothing", Entry{}, true},
		{"/usr/../etc", Entry{}, true},
	}
	for _, tt := range tests {
		got, err := f.Lookup(tt.path)
		if tt.err {
			if err == nil {
				t.Errorf("Lookup(%s) = %+v, want an error", tt.path, got)
			} else if tt.path != "/usr/../etc" && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Lookup(%s): %v, want fs.ErrNotExist", tt.path, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Lookup(%s) = %+v, %v; want %+v", tt.path, got, err, tt.want)
		}
	}
}
