package cmdline

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		key  string
		want string
		has  bool
	}{
		{"root=PARTUUID=x ro slate.slot=a", "slate.slot", "a", true},
		{"slate.slot=a slate.slot=b", "slate.slot", "b", true}, // last wins
		{"slate.slot=b slate.slot=a", "slate.slot", "a", true},
		{"slate.debugger=1", "slate.debug", "", false}, // exact keys
		{"xroot=1 root=2", "root", "2", true},
		{"root=1 xroot=2", "root", "1", true},
		{`a="b c" d=e`, "a", "b c", true},
		{`a="b c" d=e`, "d", "e", true},
		{`"a=b c" d=e`, "a", "b c", true},
		{`"flag"`, "flag", "", true},
		{"a=b=c", "a", "b=c", true},
		{"a= b", "a", "", true},
		{"ro -- slate.debug", "slate.debug", "", false}, // init's argv
		{"\tro\nslate.slot=a\n", "slate.slot", "a", true},
		{`a="unterminated b=c`, "a", "unterminated b=c", true},
		{"", "root", "", false},
	}
	for _, c := range cases {
		got, has := Parse(c.in).Lookup(c.key)
		if got != c.want || has != c.has {
			t.Errorf("Parse(%q).Lookup(%q) = %q, %v; want %q, %v", c.in, c.key, got, has, c.want, c.has)
		}
	}
}

func TestFlag(t *testing.T) {
	cases := []struct {
		in   string
		want bool
	}{
		{"slate.debug", true},
		{"slate.debug=1", true},
		{"slate.debug=", true},
		{"slate.debug=y", true},
		{"slate.debug=0", false},
		{"slate.debug=off", false},
		{"slate.debug slate.debug=0", false}, // last wins
		{"slate.debug=0 slate.debug", true},
		{"slate.debugger=1", false},
		{"slate.debugger", false},
		{"xslate.debug", false},
		{"ro", false},
	}
	for _, c := range cases {
		if got := Parse(c.in).Flag("slate.debug"); got != c.want {
			t.Errorf("Parse(%q).Flag(slate.debug) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestReservedKey(t *testing.T) {
	for _, a := range []string{"root=/dev/sda", "root", "init=/bin/sh", "slate.slot=b", `"root=x"`, "initrd=x", "slate.root_url=http://x", "slate.root_sha256=00", "slate.root_size=1"} {
		if _, ok := ReservedKey(a); !ok {
			t.Errorf("%q not reserved", a)
		}
	}
	for _, a := range []string{"rootwait", "rootfstype=ext4", "slate.slots=1", "console=ttyS0", "ro", "initcall_debug"} {
		if k, ok := ReservedKey(a); ok {
			t.Errorf("%q reserved as %s", a, k)
		}
	}
}

func TestSlotOptions(t *testing.T) {
	const id = "5A92BAF2-4FF3-4F69-98D8-137964E3D4E3"
	cases := []struct {
		slot string
		args []string
		want string
	}{
		{"a", []string{"panic=10", "loglevel=4", "console=ttyS0,115200"}, "root=PARTUUID=5a92baf2-4ff3-4f69-98d8-137964e3d4e3 ro slate.slot=a panic=10 loglevel=4 console=ttyS0,115200"},
		// a running entry's line fed back in comes out in the same order
		{"b", Fields("root=PARTUUID=aaa ro slate.slot=a panic=10 loglevel=4 console=ttyS0"), "root=PARTUUID=5a92baf2-4ff3-4f69-98d8-137964e3d4e3 ro slate.slot=b panic=10 loglevel=4 console=ttyS0"},
		{"b", Fields(`slate.slot=a x="a b" ro`), `root=PARTUUID=5a92baf2-4ff3-4f69-98d8-137964e3d4e3 ro slate.slot=b x="a b"`},
		{"a", nil, "root=PARTUUID=5a92baf2-4ff3-4f69-98d8-137964e3d4e3 ro slate.slot=a"},
	}
	for _, c := range cases {
		if got := SlotOptions(c.slot, id, c.args); got != c.want {
			t.Errorf("SlotOptions(%s, %q) =\n %q\nwant\n %q", c.slot, c.args, got, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("root=PARTUUID=x ro slate.slot=a slate.debug")
	f.Add(`a="b c" "d=e f" -- g`)
	f.Add(`"`)
	f.Fuzz(func(t *testing.T, s string) {
		c := Parse(s)
		for _, a := range c.Args {
			if a.Raw == "" || strings.ContainsAny(a.Key, " \t\n") && !strings.Contains(a.Raw, `"`) {
				t.Fatalf("%q: bad arg %+v", s, a)
			}
		}
		// Writing the arguments back and reading them again gives the same.
		var raws []string
		for _, a := range c.Args {
			raws = append(raws, a.Raw)
		}
		again := Parse(strings.Join(raws, " "))
		if len(again.Args) != len(c.Args) {
			t.Fatalf("%q: %d args, %d after a round trip", s, len(c.Args), len(again.Args))
		}
		for i := range c.Args {
			if again.Args[i] != c.Args[i] {
				t.Fatalf("%q: arg %d %+v became %+v", s, i, c.Args[i], again.Args[i])
			}
		}
	})
}
