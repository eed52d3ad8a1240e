package oci

import (
	"archive/tar"
	"reflect"
	"strings"
	"testing"
)

const (
	testPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"# comment\n" +
		"app:x:1000:1000::/home/app:/bin/sh\n" +
		"1234:x:1500:1500::/:/bin/sh\n" + // a name that looks like a uid
		"bad:x:notanumber:0::/:/bin/sh\n"
	testGroup = "root:x:0:root\n" +
		"wheel:x:10:root,app\n" +
		"app:x:1000:\n" +
		"extra:x:2000:app\n" +
		"dup:x:2000:app\n" +
		"staff:x:50:\n"
)

func TestResolveUser(t *testing.T) {
	cases := []struct {
		spec string
		want User
		err  string
	}{
		{"", User{UID: 0, GID: 0, AdditionalGids: []uint32{0, 10}}, ""},
		{"root", User{UID: 0, GID: 0, AdditionalGids: []uint32{0, 10}}, ""},
		{"app", User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 2000}}, ""},
		{"1000", User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 2000}}, ""},
		{"app:staff", User{UID: 1000, GID: 50}, ""},
		{"app:2000", User{UID: 1000, GID: 2000}, ""},
		{"app:777", User{UID: 1000, GID: 777}, ""},
		{"4242", User{UID: 4242, GID: 0}, ""},
		{"4242:4343", User{UID: 4242, GID: 4343}, ""},
		{"1234", User{UID: 1234, GID: 0}, ""}, // numbers are uids, not names
		{":50", User{UID: 0, GID: 50}, ""},
		{"nobody", User{}, `no user "nobody"`},
		{"app:nogroup", User{}, `no group "nogroup"`},
		{"bad", User{}, `no user "bad"`},
		{"99999999999", User{}, "out of range"},
		{"app:4294967296", User{}, "out of range"},
		{"a\nb", User{}, "not a user spec"},
	}
	for _, tc := range cases {
		got, err := resolveUser(tc.spec, testPasswd, testGroup)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.spec, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %+v, want %+v", tc.spec, got, tc.want)
		}
	}
}

func TestResolveUserInImage(t *testing.T) {
	cases := []struct {
		name      string
		entries   []tarEntry
		imageUser string
		spec      string
		want      User
		err       string
	}{
		{"no passwd, root", nil, "", "", User{}, ""},
		{"no passwd, uid", nil, "", "1000:1000", User{UID: 1000, GID: 1000}, ""},
		{"no passwd, name", nil, "", "app", User{}, `user "app": no user "app"`},
		{"the image's bad user", nil, "ghost", "", User{}, `the image's user "ghost"`},
		{"passwd through symlinks", []tarEntry{
			fileE("usr/share/passwd", "app:x:7:8::/:/bin/sh\n", 0o644),
			{name: "etc/alt", typ: tar.TypeSymlink, link: "../usr/share"},
			{name: "etc/passwd", typ: tar.TypeSymlink, link: "/etc/alt/passwd"},
		}, "app", "", User{UID: 7, GID: 8}, ""},
		{"symlink loop", []tarEntry{{name: "etc/passwd", typ: tar.TypeSymlink, link: "/etc/passwd"}}, "", "app", User{}, "too many symlinks"},
		{"passwd a directory", []tarEntry{dirE("etc/passwd/", 0o755)}, "", "app", User{}, "not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := localImage(t, tarBytes(t, append([]tarEntry{dirE("etc/", 0o755)}, tc.entries...)...))
			img.Config.User = tc.imageUser
			r, err := img.Unpack(UnpackOptions{StageDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := r.ResolveUser(tc.spec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%+v, want %+v", got, tc.want)
			}
		})
	}
}

func FuzzResolveUser(f *testing.F) {
	f.Add("app:staff", testPasswd, testGroup)
	f.Add("1000", testPasswd, testGroup)
	f.Add("", "root:x:0:0::/:/bin/sh\n", "")
	f.Fuzz(func(t *testing.T, spec, passwd, group string) {
		u, err := resolveUser(spec, passwd, group)
		if err != nil {
			return
		}
		if u.UID > maxID || u.GID > maxID {
			t.Fatalf("%q: id out of range: %+v", spec, u)
		}
		for i, g := range u.AdditionalGids {
			if g > maxID || (i > 0 && g <= u.AdditionalGids[i-1]) {
				t.Fatalf("%q: additional gids not sorted or out of range: %v", spec, u.AdditionalGids)
			}
		}
		if strings.Contains(spec, ":") && len(u.AdditionalGids) > 0 {
			t.Fatalf("%q: a group was given, yet supplementary gids %v", spec, u.AdditionalGids)
		}
	})
}
