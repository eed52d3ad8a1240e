package kmod

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// refMatch is a plain recursive fnmatch used as the reference for match: it
// is exponential on many stars, so the fuzz test bounds its input.
func refMatch(p, n string) bool {
	if p == "" {
		return n == ""
	}
	switch p[0] {
	case '*':
		for i := 0; i <= len(n); i++ {
			if refMatch(p[1:], n[i:]) {
				return true
			}
		}
		return false
	case '?':
		return n != "" && refMatch(p[1:], n[1:])
	case '[':
		if n == "" {
			return false
		}
		ok, w := matchBracket(p, n[0])
		if w == 0 {
			return n[0] == '[' && refMatch(p[1:], n[1:])
		}
		return ok && refMatch(p[w:], n[1:])
	case '\\':
		if len(p) == 1 {
			return n == "\\"
		}
		return n != "" && n[0] == p[1] && refMatch(p[2:], n[1:])
	}
	return n != "" && n[0] == p[0] && refMatch(p[1:], n[1:])
}

func FuzzMatch(f *testing.F) {
	f.Add("pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF4d00001042sv00001AF4sd00001042bc01sc80i00")
	f.Add("usb:v13FDp3940d0[0-2]*dc*", "usb:v13FDp3940d0150dc00")
	f.Add("[!a-c]?\\*", "d1*")
	f.Add("[[:digit:]]*", "7")
	f.Add("a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		got := match(pattern, name) // must not panic or hang on any input
		if len(pattern) > 24 || len(name) > 24 || strings.Count(pattern, "*") > 6 {
			return
		}
		if want := refMatch(pattern, name); got != want {
			t.Errorf("match(%q, %q) = %v, reference says %v", pattern, name, got, want)
		}
		if p := literalPrefix(pattern); got && !strings.HasPrefix(name, p) {
			t.Errorf("match(%q, %q) matched without the literal prefix %q", pattern, name, p)
		}
	})
}

func FuzzParseModulesDep(f *testing.F) {
	f.Add(testModulesDep)
	f.Add("a.ko:\n#c\n\nb.ko: a.ko\n")
	f.Add("no colon here\n")
	f.Add(":\n")
	f.Fuzz(func(t *testing.T, data string) {
		deps, err := parseModulesDep(data)
		if err != nil {
			return
		}
		for name, e := range deps {
			if name != moduleName(e.path) {
				t.Errorf("entry %q has path %q", name, e.path)
			}
			if strings.ContainsAny(e.path, " \t\n") {
				t.Errorf("path %q has spaces", e.path)
			}
		}
	})
}

func FuzzParseModulesAlias(f *testing.F) {
	f.Add(testModulesAlias)
	f.Add("alias a b\nalias  c\n")
	f.Add("# only a comment\n")
	f.Fuzz(func(t *testing.T, data string) {
		entries, err := parseModulesAlias(data)
		if err != nil {
			return
		}
		x := newAliasIndex(entries)
		for _, e := range entries {
			if e.pattern == "" || e.module == "" {
				t.Errorf("empty field in %+v", e)
			}
			// a literal pattern must find its own module
			if literalPrefix(e.pattern) == e.pattern {
				found := false
				for _, m := range x.lookup(e.pattern) {
					found = found || m == e.module
				}
				if !found {
					t.Errorf("lookup(%q) misses %s", e.pattern, e.module)
				}
			}
		}
	})
}

func FuzzParseModulesSoftdep(f *testing.F) {
	f.Add(testModulesSoftdep)
	f.Add("softdep cifs gcm\nsoftdep x pre: a post: b pre: c\n")
	f.Add("softdep\n")
	f.Fuzz(func(t *testing.T, data string) {
		sd, err := parseModulesSoftdep(data)
		if err != nil {
			return
		}
		for _, s := range sd {
			for _, n := range append(s.pre, s.post...) {
				if n == "pre:" || n == "post:" || n == "" {
					t.Errorf("keyword %q kept as a name", n)
				}
			}
		}
	})
}

func FuzzParseModinfo(f *testing.F) {
	f.Add([]byte("alias=fs-ext4\x00depends=jbd2,mbcache,crc16\x00\x00\x00softdep=pre: crypto-crc32c\x00vermagic=6.1.0-56-amd64 SMP\x00"))
	f.Add([]byte("depends=\x00alias=\x00=\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Module
		parseModinfo(&m, data)
		for _, d := range m.Depends {
			if d == "" || strings.Contains(d, "-") {
				t.Errorf("bad dependency name %q", d)
			}
		}
		parseBuiltinModinfo(data)
	})
}

func FuzzModinfoFromELF(f *testing.F) {
	f.Add([]byte("\x7fELF\x02\x01\x01\x00"))
	f.Add([]byte{})
	// a real module as a seed, when the kernel cache is there
	if data, err := os.ReadFile(filepath.Join("../../..", ".cache", "kernel", "linux-image-amd64", "lib", "modules", "6.1.0-56-amd64", "kernel", "lib", "crc16.ko")); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		modinfoFromELF(bytes.NewReader(data)) // errors are fine, panics are not
	})
}
