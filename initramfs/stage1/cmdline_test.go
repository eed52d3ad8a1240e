package stage1

import "testing"

func TestParseCmdline(t *testing.T) {
	const id = "5a92baf2-4ff3-4f69-98d8-137964e3d4e3"
	cases := []struct {
		in   string
		want Cmdline
		bad  bool
	}{
		{in: "root=PARTUUID=" + id + " ro slate.slot=a panic=10", want: Cmdline{Root: "5A92BAF2-4FF3-4F69-98D8-137964E3D4E3", Slot: "a", RootWait: 30}},
		{in: "slate.slot=b root=PARTUUID=" + id + " slate.debug slate.rootwait=5\n", want: Cmdline{Root: "5A92BAF2-4FF3-4F69-98D8-137964E3D4E3", Slot: "b", Debug: true, RootWait: 5}},
		{in: "root=/dev/vda2 slate.slot=a", bad: true},
		{in: "root=PARTUUID=short slate.slot=a", bad: true},
		{in: "root=PARTUUID=" + id, bad: true},
		{in: "root=PARTUUID=" + id + " slate.slot=c", bad: true},
		{in: "root=PARTUUID=" + id + " slate.slot=a slate.rootwait=0", bad: true},
		{in: "root=PARTUUID=" + id + " slate.slot=a slate.rootwait=x", bad: true},
		{in: "", bad: true},
		{in: "root=PARTUUID=" + id + " slate.slot=a slate.break=later", bad: true},
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
		if got.Root != c.want.Root || got.Slot != c.want.Slot || got.Debug != c.want.Debug || got.RootWait != c.want.RootWait {
			t.Errorf("%q: got %+v, want %+v", c.in, got, c.want)
		}
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add("root=PARTUUID=5a92baf2-4ff3-4f69-98d8-137964e3d4e3 ro slate.slot=a")
	f.Add("slate.debug slate.rootwait=3600 root=x")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCmdline(s)
		if err != nil {
			return
		}
		if len(c.Root) != 36 || (c.Slot != "a" && c.Slot != "b") || c.RootWait < 1 || c.RootWait > 3600 {
			t.Fatalf("accepted %q as %+v", s, c)
		}
	})
}
