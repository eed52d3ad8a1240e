package accounts

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const passwd = "root:x:0:0:root:/root:/bin/bash\r\n# a comment\n+nis\n-nis\n:x:1:1\nbroken line\n" +
	"bad:x:notanumber:1::/:/bin/sh\nbig:x:4294967296:1\nweb:x:4242:4343:Web server:/srv/web:/usr/sbin/nologin\n" +
	"twin:x:4242:4242::/twin:/bin/sh\nshort:x:5001:5002\n"

const group = "root:x:0:\nweb:x:4343:\nextra:x:4444:someone,web\nother:x:4545:someone\nbad:x:nan:web\nthree:x:7\n#web:x:1:web\n"

func TestUsers(t *testing.T) {
	want := []User{
		{Name: "root", Password: "x", Gecos: "root", Home: "/root", Shell: "/bin/bash"},
		{Name: "web", Password: "x", UID: 4242, GID: 4343, Gecos: "Web server", Home: "/srv/web", Shell: "/usr/sbin/nologin"},
		{Name: "twin", Password: "x", UID: 4242, GID: 4242, Home: "/twin", Shell: "/bin/sh"},
		{Name: "short", Password: "x", UID: 5001, GID: 5002},
	}
	if got := Users(passwd); !reflect.DeepEqual(got, want) {
		t.Errorf("Users =\n%+v\nwant\n%+v", got, want)
	}
}

func TestGroups(t *testing.T) {
	want := []Group{
		{Name: "root", Password: "x"},
		{Name: "web", Password: "x", GID: 4343},
		{Name: "extra", Password: "x", GID: 4444, Members: []string{"someone", "web"}},
		{Name: "other", Password: "x", GID: 4545, Members: []string{"someone"}},
		{Name: "three", Password: "x", GID: 7},
	}
	if got := Groups(group); !reflect.DeepEqual(got, want) {
		t.Errorf("Groups =\n%+v\nwant\n%+v", got, want)
	}
	if got := MemberOf(group, "web"); !slices.Equal(got, []uint32{4444}) {
		t.Errorf("MemberOf(web) = %v", got)
	}
}

func TestLookupUser(t *testing.T) {
	for _, tc := range []struct {
		user string
		want string // name found, "" for none
	}{
		{"web", "web"},
		{"4242", "web"}, // the first entry with the uid, as getpwuid
		{"twin", "twin"},
		{"0", "root"},
		{"7000", ""},
		{"+nis", ""},
		{"bad", ""},
		{"big", ""},
		{"", ""},
	} {
		u, ok := LookupUser(passwd, tc.user)
		if ok != (tc.want != "") || u.Name != tc.want {
			t.Errorf("LookupUser(%q) = %q, %v; want %q", tc.user, u.Name, ok, tc.want)
		}
	}
}

func TestEdit(t *testing.T) {
	in := "root:x:0:\n# keep me\nweb:x:4343:a\n\n"
	f := Parse([]byte(in))
	if !bytes.Equal(f.Bytes(), []byte(in)) || f.Changed {
		t.Fatalf("untouched file = %q, changed %v", f.Bytes(), f.Changed)
	}
	if i, fs := f.Find("web"); i != 2 || fs[2] != "4343" {
		t.Fatalf("Find(web) = %d %v", i, fs)
	}
	if i, _ := f.Find("# keep me"); i != -1 {
		t.Errorf("a comment is found as an entry")
	}
	if !f.Used(4343) || f.Used(1) {
		t.Error("Used")
	}
	added := f.AddMember("web", "b", 3)
	again := f.AddMember("web", "b", 3) // already a member: still true
	if !added || !again || f.AddMember("none", "b", 3) {
		t.Error("AddMember")
	}
	f.Add("app", "x", "1000", "")
	want := "root:x:0:\n# keep me\nweb:x:4343:a,b\n\napp:x:1000:\n"
	if got := string(f.Bytes()); got != want || !f.Changed {
		t.Errorf("edited = %q, want %q", got, want)
	}
	if ids := f.IDs(); !reflect.DeepEqual(ids, map[string]int{"root": 0, "web": 4343, "app": 1000}) {
		t.Errorf("IDs = %v", ids)
	}
	if got := string(Parse(nil).Bytes()); got != "\n" {
		t.Errorf("empty = %q", got)
	}
}

// FuzzAccounts feeds outside text (an Ignition config may write these
// files) to every parser: no panic, an untouched file is written back as
// it was, every entry parsed is found again, and an added entry is found.
func FuzzAccounts(f *testing.F) {
	f.Add(passwd, "web")
	f.Add(group, "4242")
	f.Add("a:b:1:2\n::::\n\r\n", "a")
	f.Fuzz(func(t *testing.T, text, name string) {
		for _, u := range Users(text) {
			if got, ok := LookupUser(text, u.Name); !ok || got.Name != u.Name {
				t.Fatalf("user %q parsed but not found", u.Name)
			}
			if strings.ContainsAny(u.Name, ":\n") || u.Name == "" {
				t.Fatalf("bad name %q", u.Name)
			}
		}
		for _, g := range Groups(text) {
			if strings.ContainsAny(g.Name, ":\n") || g.Name == "" {
				t.Fatalf("bad group name %q", g.Name)
			}
		}
		_ = MemberOf(text, name)
		file := Parse([]byte(text))
		out := string(file.Bytes())
		if text != "" && out != text && out != text+"\n" {
			t.Fatalf("untouched %q written back as %q", text, out)
		}
		if Fields(name) == nil || strings.ContainsAny(name, ":\n\r") {
			return
		}
		file.Add(name, "x", "123456", "")
		if i, fs := file.Find(name); i < 0 || fs[0] != name {
			t.Fatalf("added %q not found", name)
		}
		_ = file.Used(123456)
		_ = file.IDs()
	})
}
