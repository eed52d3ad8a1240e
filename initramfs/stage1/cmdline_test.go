package stage1

import (
	"strings"
	"testing"

	"github.com/slateos/slate/internal/boot/netroot"
)

func TestParseCmdline(t *testing.T) {
	const id = "5a92baf2-4ff3-4f69-98d8-137964e3d4e3"
	sum := strings.Repeat("0f", 32)
	cases := []struct {
		in   string
		want Cmdline
		bad  bool
	}{
		{in: "root=PARTUUID=" + id + " ro slate.slot=a panic=10", want: Cmdline{Root: "5A92BAF2-4FF3-4F69-98D8-137964E3D4E3", Slot: "a", RootWait: 30}},
		{in: "slate.slot=b root=PARTUUID=" + id + " slate.debug slate.rootwait=5\n", want: Cmdline{Root: "5A92BAF2-4FF3-4F69-98D8-137964E3D4E3", Slot: "b", Debug: true, RootWait: 5}},
		{in: "root=/dev/vda2 slate.slot=a", bad: true},
		// the last of a duplicated key wins, as for PID 1 and the kernel
		{in: "slate.slot=a root=PARTUUID=" + id + " slate.slot=b", want: Cmdline{Root: "5A92BAF2-4FF3-4F69-98D8-137964E3D4E3", Slot: "b", RootWait: 30}},
		{in: "root=/dev/vda2 root=PARTUUID=" + id + " slate.slot=a", want: Cmdline{Root: "5A92BAF2-4FF3-4F69-98D8-137964E3D4E3", Slot: "a", RootWait: 30}},
		// exact keys: slate.debugger is not slate.debug
		{in: "root=PARTUUID=" + id + " slate.slot=a slate.debugger=1", want: Cmdline{Root: "5A92BAF2-4FF3-4F69-98D8-137964E3D4E3", Slot: "a", RootWait: 30}},
		{in: "root=PARTUUID=" + id + " slate.slot=a slate.debug=1", want: Cmdline{Root: "5A92BAF2-4FF3-4F69-98D8-137964E3D4E3", Slot: "a", Debug: true, RootWait: 30}},
		{in: "root=PARTUUID=" + id + " slate.slot=a slate.debug=0", want: Cmdline{Root: "5A92BAF2-4FF3-4F69-98D8-137964E3D4E3", Slot: "a", RootWait: 30}},
		{in: "root=PARTUUID=" + id + " slate.slot=a slate.rootwait=5x", bad: true},
		{in: "root=PARTUUID=short slate.slot=a", bad: true},
		{in: "root=PARTUUID=000000000000000000\xa600000000000000000 slate.slot=a", bad: true}, // not UTF-8
		{in: "root=PARTUUID=5a92baf2-4ff3-4f69-98d8-137964e3d4eg slate.slot=a", bad: true},    // not hex
		{in: "root=PARTUUID=5a92baf2x4ff3-4f69-98d8-137964e3d4e3 slate.slot=a", bad: true},    // no hyphen
		{in: "root=PARTUUID=" + id, bad: true},
		{in: "root=PARTUUID=" + id + " slate.slot=c", bad: true},
		{in: "root=PARTUUID=" + id + " slate.slot=a slate.rootwait=0", bad: true},
		{in: "root=PARTUUID=" + id + " slate.slot=a slate.rootwait=x", bad: true},
		{in: "", bad: true},
		{in: "root=PARTUUID=" + id + " slate.slot=a slate.break=later", bad: true},
		{in: "ro panic=10 slate.root_url=http://10.0.2.2:8080/root.img.zst slate.root_sha256=" + sum + " slate.root_size=73400320 BOOTIF=01-52-54-00-12-34-56",
			want: Cmdline{RootWait: 30, RAM: true, Net: netroot.Source{URL: "http://10.0.2.2:8080/root.img.zst", SHA256: sum, Size: 73400320}, BootIf: "52:54:00:12:34:56"}},
		{in: "slate.root_sha256=" + sum + " slate.root_size=1", want: Cmdline{RootWait: 30, RAM: true, Net: netroot.Source{SHA256: sum, Size: 1}}},
		{in: "slate.root_url=http://x/r slate.root_size=1", bad: true},                                                                                        // no hash
		{in: "slate.root_url=ftp://x/r slate.root_sha256=" + sum + " slate.root_size=1", bad: true},                                                           // scheme
		{in: "root=PARTUUID=" + id + " slate.slot=a slate.root_sha256=" + sum + " slate.root_size=1", bad: true},                                              // both
		{in: "slate.root_sha256=" + sum + " slate.root_size=1 BOOTIF=01-", want: Cmdline{RootWait: 30, RAM: true, Net: netroot.Source{SHA256: sum, Size: 1}}}, // ignored
	}
	for _, c := range cases {
		got, err := ParseCmdline(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("%q: accepted", c.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if got.Root != c.want.Root || got.Slot != c.want.Slot || got.Debug != c.want.Debug || got.RootWait != c.want.RootWait ||
			got.RAM != c.want.RAM || got.Net != c.want.Net || got.BootIf != c.want.BootIf {
			t.Errorf("%q: got %+v, want %+v", c.in, got, c.want)
		}
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add("root=PARTUUID=5a92baf2-4ff3-4f69-98d8-137964e3d4e3 ro slate.slot=a")
	f.Add("slate.debug slate.rootwait=3600 root=x")
	f.Add("slate.root_url=tftp://10.0.2.2/root.img.zst slate.root_sha256=" + strings.Repeat("ab", 32) + " slate.root_size=99 BOOTIF=01-52-54-00-12-34-56")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCmdline(s)
		if err != nil {
			return
		}
		if c.RAM {
			if c.Root != "" || len(c.Net.SHA256) != 64 || c.Net.Size <= 0 {
				t.Fatalf("accepted %q as %+v", s, c)
			}
			return
		}
		if len(c.Root) != 36 || (c.Slot != "a" && c.Slot != "b") || c.RootWait < 1 || c.RootWait > 3600 {
			t.Fatalf("accepted %q as %+v", s, c)
		}
	})
}
