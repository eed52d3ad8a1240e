package ignition

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func unitCfg(name, contents string) []byte {
	c, _ := json.Marshal(contents)
	n, _ := json.Marshal(name)
	return cfg("3.4.0", `"systemd":{"units":[{"name":`+string(n)+`,"enabled":true,"contents":`+string(c)+`}]}`)
}

const okUnit = "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"

func TestCheckUnitName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"web.service", true},
		{"node-exporter.service", true},
		{"a_b.c.service", true},
		{"...service", false}, // prefix ".." is no service name
		{".service", false},
		{"a\nSLATE-READY version=1 slot=a\nb.service", false},
		{"a b.service", false},
		{"A.service", false}, // systemd allows it, slate's service names do not
		{"a@b.service", false},
		{"a.socket", false},
		{"a/b.service", false},
		{strings.Repeat("a", 63) + ".service", true},
		{strings.Repeat("a", 64) + ".service", false},
		{strings.Repeat("a", 300) + ".service", false},
		{"a\x00.service", false},
	} {
		err := CheckUnitName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("CheckUnitName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		_, perr := Parse(unitCfg(tt.name, okUnit))
		if (perr == nil) != tt.ok {
			t.Errorf("Parse of unit %q = %v, want ok=%v", tt.name, perr, tt.ok)
		} else if perr != nil && !strings.Contains(perr.Error(), "$.systemd.units[0].name") {
			t.Errorf("Parse of unit %q: %v does not name $.systemd.units[0].name", tt.name, perr)
		}
	}
}

func FuzzUnit(f *testing.F) {
	f.Add("web.service", okUnit)
	f.Add("...service", "[Unit]\nAfter=network-online.target\n[Service]\nExecStartPre=-/bin/a\nExecStart=/bin/b\nTimeoutStartSec=1min 30s\n")
	f.Add("a\nb.service", "[Service]\nExecStart=/bin/true\nRestartSec=100ms\n")
	f.Fuzz(func(t *testing.T, name, contents string) {
		u, err := ParseUnit(name, contents)
		if err != nil {
			return
		}
		base := strings.TrimSuffix(u.Name, ".service")
		if !serviceNameRe.MatchString(base) || len(base) > maxServiceName || strings.ContainsAny(u.Name, "\n\r \x00/") {
			t.Fatalf("unit name %q accepted", u.Name)
		}
		for _, c := range append(append(append([]string(nil), u.ExecStart[0]), argv0(u.ExecStartPre)...), argv0(u.ExecStop)...) {
			if !strings.HasPrefix(c, "/") {
				t.Fatalf("relative command %q accepted", c)
			}
		}
		if u.RestartSec < 0 {
			t.Fatalf("negative RestartSec %v", u.RestartSec)
		}
	})
}

func argv0(cs []ExecCommand) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Argv[0])
	}
	return out
}

func TestParseHardening(t *testing.T) {
	big := make([]byte, MaxConfig+1)
	for _, tt := range []struct {
		name string
		data []byte
		img  *Image
		want string
	}{
		{"updater clash", unitCfg("slate-updated.service", okUnit), nil, `$.systemd.units[0].name: unit slate-updated.service would replace the image's service "slate-updated"`},
		{"spec service clash", unitCfg("web.service", okUnit), &Image{Services: []string{"web"}}, `$.systemd.units[0].name: unit web.service would replace`},
		{"unknown after", unitCfg("a.service", "[Unit]\nAfter=docker.service\n"+okUnit), nil, "$.systemd.units[0].contents: [Unit] After=docker.service: no such unit"},
		{"unknown wants", unitCfg("a.service", "[Unit]\nWants=foo.target\n"+okUnit), nil, "[Unit] Wants=foo.target: no such unit"},
		{"version 3.6", cfg("3.6.0", ""), nil, `$.ignition.version: version "3.6.0" is not supported: slate reads spec 3.0.0 to 3.5.0`},
		{"too big", big, nil, "larger than 8388608 bytes"},
		{"NUL in path", cfg("3.4.0", `"storage":{"files":[{"path":"/etc/a\u0000b"}]}`), nil, "$.storage.files[0].path"},
		{"NUL in directory", cfg("3.4.0", `"storage":{"directories":[{"path":"/var/a\u0000"}]}`), nil, "$.storage.directories[0].path"},
		{"two users one uid", cfg("3.4.0", `"passwd":{"users":[{"name":"a","uid":1500},{"name":"b","uid":1500}]}`), nil, "$.passwd.users[1].uid: uid 1500 is also the uid of $.passwd.users[0]"},
		{"two groups one gid", cfg("3.4.0", `"passwd":{"groups":[{"name":"a","gid":1500},{"name":"b","gid":1500}]}`), nil, "$.passwd.groups[1].gid"},
		{"group not in image", cfg("3.4.0", `"passwd":{"users":[{"name":"core","groups":["wheel","podman"]}]}`), &Image{Groups: []string{"root", "wheel"}}, `$.passwd.users[0].groups[1]: no group "podman"`},
		{"image file without overwrite", cfg("3.4.0", `"storage":{"files":[{"path":"/etc/os-release","contents":{"source":"data:,x"}}]}`), &Image{Files: []string{"/etc/os-release"}}, "$.storage.files[0].overwrite: the image has /etc/os-release"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFor(tt.data, tt.img)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
	// what the image has makes these valid
	for _, tt := range []struct {
		name string
		data []byte
		img  *Image
	}{
		{"after image service", unitCfg("a.service", "[Unit]\nAfter=web.service\nRequires=web.service\n"+okUnit), &Image{Services: []string{"web"}}},
		{"targets", unitCfg("a.service", "[Unit]\nWants=network-online.target\nAfter=network-online.target network.target\nRequires=multi-user.target\n"+okUnit), nil},
		{"groups of the image and config", cfg("3.4.0", `"passwd":{"users":[{"name":"core","groups":["wheel","docker","extra"]}],"groups":[{"name":"extra"}]}`), &Image{Groups: []string{"wheel", "docker"}}},
		{"image file with overwrite", cfg("3.4.0", `"storage":{"files":[{"path":"/etc/os-release","overwrite":true,"contents":{"source":"data:,x"}}]}`), &Image{Files: []string{"/etc/os-release"}}},
		{"hostname not in image", cfg("3.4.0", `"storage":{"files":[{"path":"/etc/hostname","contents":{"source":"data:,h"}}]}`), &Image{Files: []string{"/etc/os-release"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseFor(tt.data, tt.img); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestApplyEmptySource(t *testing.T) {
	requireRoot(t)
	roots, errs := applyBoth(t, cfg("3.4.0", `"storage":{"files":[{"path":"/etc/empty","mode":420,"contents":{"source":""}}]}`), nil)
	for i, root := range roots {
		if errs[i] != nil {
			t.Fatalf("tree %d: %v", i, errs[i])
		}
		if st, err := os.Stat(filepath.Join(root, "etc/empty")); err != nil || st.Size() != 0 || !st.Mode().IsRegular() {
			t.Fatalf("tree %d: empty file: %v %v", i, st, err)
		}
	}
}

// An existing file that a config appends to keeps its owner and mode,
// and an existing directory its owner, when the config names none.
func TestApplyKeepsOwners(t *testing.T) {
	requireRoot(t)
	body := `"storage":{"files":[{"path":"/etc/app.conf","append":[{"source":"data:,more%0A"}]}],
		"directories":[{"path":"/var/lib/app","mode":448}]}`
	roots, errs := applyBoth(t, cfg("3.4.0", body), func(root string) {
		writeFile(t, root, "etc/app.conf", "first\n", 0o640)
		if err := os.Chown(filepath.Join(root, "etc/app.conf"), 1234, 5678); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(root, "var/lib/app")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, 4321, 8765); err != nil {
			t.Fatal(err)
		}
	})
	for i, root := range roots {
		if errs[i] != nil {
			t.Fatalf("tree %d: %v", i, errs[i])
		}
		if got := readFile(t, root, "etc/app.conf"); got != "first\nmore\n" {
			t.Errorf("tree %d: contents %q", i, got)
		}
		if st := statOf(t, root, "etc/app.conf"); st.uid != 1234 || st.gid != 5678 || st.mode != 0o640 {
			t.Errorf("tree %d: appended file is %+v, want 1234:5678 0640", i, st)
		}
		if st := statOf(t, root, "var/lib/app"); st.uid != 4321 || st.gid != 8765 || st.mode&0o777 != 0o700 {
			t.Errorf("tree %d: directory is %+v, want 4321:8765 0700", i, st)
		}
	}
}

// A link that exists already under /etc and points elsewhere in the root
// (here the read-only /usr) is not followed by a write.
func TestApplyDoesNotFollowLinksOutOfTheWritableLayer(t *testing.T) {
	requireRoot(t)
	for i, body := range []string{
		`"storage":{"files":[{"path":"/etc/evil/x","contents":{"source":"data:,x"}}]}`,
		`"storage":{"files":[{"path":"/etc/evilfile","overwrite":false,"append":[{"source":"data:,x"}]}]}`,
		`"storage":{"directories":[{"path":"/etc/evil/d"}]}`,
		`"storage":{"links":[{"path":"/etc/evil/l","target":"/x"}]}`,
		`"storage":{"files":[{"path":"/var/toetc/passwd","overwrite":true,"contents":{"source":"data:,x"}}]}`,
	} {
		roots, errs := applyBoth(t, cfg("3.4.0", body), func(root string) {
			if err := os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, root, "usr/lib/file", "ro\n", 0o644)
			for link, target := range map[string]string{"etc/evil": "../usr/lib", "etc/evilfile": "../usr/lib/file", "var/toetc": "../etc"} {
				if err := os.MkdirAll(filepath.Join(root, filepath.Dir(link)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
					t.Fatal(err)
				}
			}
		})
		for j, root := range roots {
			if errs[j] == nil {
				t.Errorf("config %d tree %d: Apply followed a link out of its top folder", i, j)
			} else if !strings.Contains(errs[j].Error(), "$.storage.") {
				t.Errorf("config %d tree %d: %v does not name the entry", i, j, errs[j])
			}
			ents, _ := os.ReadDir(filepath.Join(root, "usr/lib"))
			if len(ents) != 1 || readFile(t, root, "usr/lib/file") != "ro\n" {
				t.Errorf("config %d tree %d: /usr/lib changed: %v", i, j, ents)
			}
			if readFile(t, root, "etc/passwd") != basePasswd {
				t.Errorf("config %d tree %d: /etc/passwd changed through /var/toetc", i, j)
			}
		}
	}
}

// Headers of a source are sent to its origin only, and every request asks
// for the bytes as stored.
func TestFetchHeadersAndEncoding(t *testing.T) {
	gz := gzipped(t, "payload\n")
	var otherSaw, originSaw http.Header
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherSaw = r.Header.Clone()
		// a .gz stored with Content-Encoding metadata, as object stores
		// and gzip_static servers send it: a client that asked for gzip
		// unpacks it before the config's "compression" does
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(gz)
	}))
	defer other.Close()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		originSaw = r.Header.Clone()
		if r.URL.Path == "/same" {
			http.Redirect(w, r, "/final", http.StatusFound)
			return
		}
		if r.URL.Path == "/final" {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(gz)
			return
		}
		http.Redirect(w, r, other.URL+"/file.gz", http.StatusFound)
	}))
	defer origin.Close()
	f := &DefaultFetcher{Attempts: 1}
	for _, tt := range []struct {
		path       string
		tokenThere bool
	}{{"/moved", false}, {"/same", true}} {
		otherSaw, originSaw = nil, nil
		hdr := http.Header{"X-Token": {"secret"}}
		var buf bytes.Buffer
		a := &applier{ctx: context.Background(), fetch: f}
		err := a.copyResource(&buf, Resource{Source: origin.URL + tt.path, Compression: "gzip", Headers: hdr})
		if err != nil {
			t.Fatalf("%s: %v", tt.path, err)
		}
		if buf.String() != "payload\n" {
			t.Errorf("%s: got %q", tt.path, buf.String())
		}
		if originSaw.Get("X-Token") != "secret" {
			t.Errorf("%s: the origin did not get the header", tt.path)
		}
		if !tt.tokenThere && otherSaw.Get("X-Token") != "" {
			t.Errorf("%s: the header went to another origin after a redirect", tt.path)
		}
		for _, h := range []http.Header{originSaw, otherSaw} {
			if h != nil && h.Get("Accept-Encoding") != "identity" {
				t.Errorf("%s: Accept-Encoding %q", tt.path, h.Get("Accept-Encoding"))
			}
		}
	}
}

func TestFetchTimeouts(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slowbody" {
			w.Write([]byte("a"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	for _, tt := range []struct {
		name, path string
		to         Timeouts
	}{
		{"response headers", "/slowheaders", Timeouts{ResponseHeaders: time.Second}},
		{"total", "/slowbody", Timeouts{Total: time.Second}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			requireRoot(t)
			p := &Plan{Timeouts: tt.to, Files: []File{{JSONPath: "$.storage.files[0]", Path: "/etc/x", Contents: &Resource{Source: srv.URL + tt.path}}}}
			start := time.Now()
			err := p.Apply(context.Background(), newRoot(t), &DefaultFetcher{Attempts: 1})
			if err == nil {
				t.Fatal("Apply waited for a server that never answers")
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v with a 1 s timeout", d)
			}
		})
	}
}
