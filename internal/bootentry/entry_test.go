package bootentry

import (
	"testing"
)

func TestParseName(t *testing.T) {
	cases := []struct {
		name string
		want Entry
		bad  bool
	}{
		{name: "slate-1.0.0-a.conf", want: Entry{Version: "1.0.0", Slot: "a"}},
		{name: "slate-1.0.0-b+3.conf", want: Entry{Version: "1.0.0", Slot: "b", Counted: true, Left: 3}},
		{name: "slate-2.0.0-rc1-b+2-1.conf", want: Entry{Version: "2.0.0-rc1", Slot: "b", Counted: true, Left: 2, Done: 1}},
		{name: "slate-2.0.0-b+0-3.conf", want: Entry{Version: "2.0.0", Slot: "b", Counted: true, Left: 0, Done: 3}},
		{name: "slate-1.0.0-c.conf", bad: true},
		{name: "slate-1.0.0-a", bad: true},
		{name: "other-1.0.0-a.conf", bad: true},
		{name: "slate--a.conf", bad: true},
		{name: "slate-1.0.0-a+x.conf", bad: true},
		{name: "slate-1.0.0-a+99999.conf", bad: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseName(c.name)
			if c.bad {
				if err == nil {
					t.Fatalf("accepted %q as %+v", c.name, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			if got.Name() != c.name {
				t.Fatalf("Name() = %q, want %q", got.Name(), c.name)
			}
		})
	}
}

func TestNextBoot(t *testing.T) {
	e := func(n string) Entry {
		x, err := ParseName(n)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	cases := []struct {
		entries []string
		want    string // slot, "" for none
	}{
		{[]string{"slate-1.0.0-a.conf"}, "a"},
		{[]string{"slate-1.0.0-a.conf", "slate-2.0.0-b+3.conf"}, "b"},
		{[]string{"slate-1.0.0-a.conf", "slate-2.0.0-b+1-2.conf"}, "b"},
		{[]string{"slate-1.0.0-a.conf", "slate-2.0.0-b+0-3.conf"}, "a"},
		{[]string{"slate-1.10.0-a.conf", "slate-1.9.0-b.conf"}, "a"},
		{[]string{"slate-2.0.0-a.conf", "slate-2.0.0-rc1-b.conf"}, "a"},
		{[]string{"slate-1.0.0-a+0-3.conf", "slate-2.0.0-b+0-3.conf"}, ""},
		{nil, ""},
	}
	for _, c := range cases {
		var es []Entry
		for _, n := range c.entries {
			es = append(es, e(n))
		}
		got, ok := NextBoot(es)
		if c.want == "" {
			if ok {
				t.Errorf("%v: got %+v, want none", c.entries, got)
			}
			continue
		}
		if !ok || got.Slot != c.want {
			t.Errorf("%v: got %+v (%v), want slot %s", c.entries, got, ok, c.want)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"1.0.0", "1.0.0", 0},
		{"1.0.1", "1.0.0", 1},
		{"1.10.0", "1.9.0", 1},
		{"2.0.0-rc1", "2.0.0", -1},
		{"2.0.0-rc2", "2.0.0-rc1", 1},
		{"1.0.0", "1.0.0-beta", 1},
		{"0.9.9", "1.0.0", -1},
		{"1.0.01", "1.0.1", 0},
	}
	for _, c := range cases {
		if got := CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := CompareVersions(c.b, c.a); got != -c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}

func FuzzParseName(f *testing.F) {
	for _, s := range []string{"slate-1.0.0-a.conf", "slate-2.0.0-rc1-b+2-1.conf", "slate-x-a+0-3.conf", "loader.conf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseName(s)
		if err != nil {
			return
		}
		if e.Slot != "a" && e.Slot != "b" {
			t.Fatalf("slot %q", e.Slot)
		}
		// a parsed name renders back to a name that parses the same
		again, err := ParseName(e.Name())
		if err != nil || again != e {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, e, e.Name(), again, err)
		}
	})
}

func FuzzParseKeys(f *testing.F) {
	f.Add([]byte("title x\nversion 1.0.0\noptions root=PARTUUID=abc ro\n"))
	f.Add([]byte("# comment\n\n  linux /slate/a/vmlinuz  \n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys := ParseKeys(b)
		for k := range keys {
			if k == "" && len(keys[k]) > 0 && keys[k][0] == ' ' {
				t.Fatalf("untrimmed value %q", keys[k])
			}
		}
	})
}
