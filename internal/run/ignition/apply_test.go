package ignition

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"pack.ag/tftp"
)

// requireRoot: Apply sets owners (root by default), which needs root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("applying configs needs root (chown); CI must run these tests as root")
		}
		t.Skip("needs root")
	}
}

const (
	basePasswd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	baseGroup  = "root:x:0:\nwheel:x:10:\nnogroup:x:65534:\n"
	baseShadow = "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"
)

// newRoot makes a target root with minimal account files.
func newRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for name, data := range map[string]string{"etc/passwd": basePasswd, "etc/group": baseGroup, "etc/shadow": baseShadow} {
		writeFile(t, root, name, data, 0o644)
	}
	if err := os.Chmod(filepath.Join(root, "etc/shadow"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "root"), 0o700); err != nil {
		t.Fatal(err)
	}
	return root
}

func writeFile(t *testing.T, root, name, data string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type stat struct {
	mode     os.FileMode
	uid, gid int
	ino      uint64
}

func statOf(t *testing.T, root, name string) stat {
	t.Helper()
	st, err := os.Lstat(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	s := st.Sys().(*syscall.Stat_t)
	return stat{st.Mode(), int(s.Uid), int(s.Gid), s.Ino}
}

func gzipped(t *testing.T, data string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func sha512of(s string) string { return fmt.Sprintf("sha512-%x", sha512.Sum512([]byte(s))) }
func sha256of(s string) string { return fmt.Sprintf("sha256-%x", sha256.Sum256([]byte(s))) }

// server serves fixed bodies on 127.0.0.1; "/flaky" answers 503 twice
// first, "/missing" is 404 and "/hdr" needs an X-Token header.
func server(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	var flaky atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { hits.Add(1); io.WriteString(w, "hello from http\n") })
	mux.HandleFunc("/missing", func(w http.ResponseWriter, r *http.Request) { hits.Add(1); http.NotFound(w, r) })
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if flaky.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "eventually\n")
	})
	mux.HandleFunc("/hdr", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("X-Token") != "secret" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		io.WriteString(w, "authorized\n")
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s, &hits
}

// tftpServer serves files from a map over TFTP on 127.0.0.1.
func tftpServer(t *testing.T, files map[string]string) string {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := tftp.NewServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.ReadHandler(tftp.ReadHandlerFunc(func(r tftp.ReadRequest) {
		data, ok := files[r.Name()]
		if !ok {
			r.WriteError(tftp.ErrCodeFileNotFound, "not found")
			return
		}
		r.WriteSize(int64(len(data)))
		r.Write([]byte(data))
	}))
	go srv.Serve(conn)
	t.Cleanup(func() { srv.Close() })
	return conn.LocalAddr().String()
}

var fastFetcher = &DefaultFetcher{Backoff: 10 * time.Millisecond, Attempts: 3, TFTPTimeout: time.Second}

// applyBoth parses data and applies it to a fresh root twice: through
// Apply (os.Root) and through the plain tree used for "/". Both must agree.
func applyBoth(t *testing.T, data []byte, setup func(root string)) (roots []string, errs []error) {
	t.Helper()
	p, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	for _, host := range []bool{false, true} {
		root := newRoot(t)
		if setup != nil {
			setup(root)
		}
		if host {
			err = p.apply(context.Background(), &prefixTree{base: root}, fastFetcher)
		} else {
			err = p.Apply(context.Background(), root, fastFetcher)
		}
		roots, errs = append(roots, root), append(errs, err)
	}
	return roots, errs
}

func TestApplyFiles(t *testing.T) {
	requireRoot(t)
	srv, _ := server(t)
	tftpAddr := tftpServer(t, map[string]string{"boot/motd": "over tftp\n"})
	gz := "data:;base64," + base64.StdEncoding.EncodeToString(gzipped(t, "unzipped text\n"))
	hello := "hello from http\n"

	tests := []struct {
		name    string
		files   string
		setup   func(root string)
		wantErr []string
		check   func(t *testing.T, root string)
	}{
		{
			name:  "inline",
			files: `{"path":"/etc/motd","contents":{"source":"data:,hello%20world%0A"}}`,
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, "etc/motd"); got != "hello world\n" {
					t.Errorf("motd = %q", got)
				}
				if s := statOf(t, root, "etc/motd"); s.mode != 0o644 || s.uid != 0 || s.gid != 0 {
					t.Errorf("stat = %+v", s)
				}
			},
		},
		{
			name:  "gzip data with sha512 of the uncompressed bytes",
			files: `{"path":"/var/lib/app/z.txt","mode":384,"contents":{"source":"` + gz + `","compression":"gzip","verification":{"hash":"` + sha512of("unzipped text\n") + `"}}}`,
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, "var/lib/app/z.txt"); got != "unzipped text\n" {
					t.Errorf("z = %q", got)
				}
				if s := statOf(t, root, "var/lib/app/z.txt"); s.mode != 0o600 {
					t.Errorf("mode = %v", s.mode)
				}
				if s := statOf(t, root, "var/lib/app"); s.mode != os.ModeDir|0o755 {
					t.Errorf("parent mode = %v", s.mode)
				}
			},
		},
		{
			name:  "http with right sha512",
			files: `{"path":"/etc/h","contents":{"source":"` + srv.URL + `/hello","verification":{"hash":"` + sha512of(hello) + `"}}}`,
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, "etc/h"); got != hello {
					t.Errorf("h = %q", got)
				}
			},
		},
		{
			name:    "http with wrong sha512",
			files:   `{"path":"/etc/h","contents":{"source":"` + srv.URL + `/hello","verification":{"hash":"` + sha512of("something else") + `"}}}`,
			wantErr: []string{"$.storage.files[0]: contents: hash mismatch", sha512of(hello)},
			check: func(t *testing.T, root string) {
				if _, err := os.Lstat(filepath.Join(root, "etc/h")); !os.IsNotExist(err) {
					t.Errorf("etc/h exists after a hash mismatch: %v", err)
				}
				assertNoTemp(t, filepath.Join(root, "etc"))
			},
		},
		{
			name:    "wrong hash keeps the old file",
			files:   `{"path":"/etc/h","overwrite":true,"contents":{"source":"` + srv.URL + `/hello","verification":{"hash":"` + sha256of("x") + `"}}}`,
			setup:   func(root string) { writeFile(t, root, "etc/h", "old\n", 0o600) },
			wantErr: []string{"$.storage.files[0]", "hash mismatch"},
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, "etc/h"); got != "old\n" {
					t.Errorf("h = %q", got)
				}
			},
		},
		{
			name:  "http headers and retries",
			files: `{"path":"/etc/a","contents":{"source":"` + srv.URL + `/hdr","httpHeaders":[{"name":"X-Token","value":"secret"}]}},{"path":"/etc/b","contents":{"source":"` + srv.URL + `/flaky"}}`,
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, "etc/a") + readFile(t, root, "etc/b"); got != "authorized\neventually\n" {
					t.Errorf("a+b = %q", got)
				}
			},
		},
		{
			name:    "http 404",
			files:   `{"path":"/etc/m","contents":{"source":"` + srv.URL + `/missing"}}`,
			wantErr: []string{"$.storage.files[0]", "404"},
		},
		{
			name:  "tftp",
			files: `{"path":"/etc/t","contents":{"source":"tftp://` + tftpAddr + `/boot/motd","verification":{"hash":"` + sha256of("over tftp\n") + `"}}}`,
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, "etc/t"); got != "over tftp\n" {
					t.Errorf("t = %q", got)
				}
			},
		},
		{
			name:  "contents then append in order",
			files: `{"path":"/etc/ap","contents":{"source":"data:,x"},"append":[{"source":"data:,y"},{"source":"` + srv.URL + `/hello"},{"source":"` + gz + `","compression":"gzip"}]}`,
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, "etc/ap"); got != "xy"+hello+"unzipped text\n" {
					t.Errorf("ap = %q", got)
				}
			},
		},
		{
			name:  "append to an existing file keeps its mode",
			files: `{"path":"/etc/hosts","append":[{"source":"data:,10.0.0.1%20db%0A"}]}`,
			setup: func(root string) { writeFile(t, root, "etc/hosts", "127.0.0.1 localhost\n", 0o600) },
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, "etc/hosts"); got != "127.0.0.1 localhost\n10.0.0.1 db\n" {
					t.Errorf("hosts = %q", got)
				}
				if s := statOf(t, root, "etc/hosts"); s.mode != 0o600 {
					t.Errorf("mode = %v", s.mode)
				}
			},
		},
		{
			name:    "bad append hash leaves the file alone",
			files:   `{"path":"/etc/hosts","append":[{"source":"data:,x","verification":{"hash":"` + sha256of("y") + `"}}]}`,
			setup:   func(root string) { writeFile(t, root, "etc/hosts", "orig\n", 0o644) },
			wantErr: []string{"$.storage.files[0]: append[0]: hash mismatch"},
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, "etc/hosts"); got != "orig\n" {
					t.Errorf("hosts = %q", got)
				}
			},
		},
		{
			name:  "no source and no file: empty file",
			files: `{"path":"/etc/empty","mode":420}`,
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, "etc/empty"); got != "" {
					t.Errorf("empty = %q", got)
				}
			},
		},
		{
			name:  "no source keeps an existing file",
			files: `{"path":"/etc/keep","mode":256}`,
			setup: func(root string) { writeFile(t, root, "etc/keep", "kept", 0o644) },
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, "etc/keep"); got != "kept" {
					t.Errorf("keep = %q", got)
				}
				if s := statOf(t, root, "etc/keep"); s.mode != 0o400 {
					t.Errorf("mode = %v", s.mode)
				}
			},
		},
		{
			name:    "existing file without overwrite",
			files:   `{"path":"/etc/ex","contents":{"source":"data:,new"}}`,
			setup:   func(root string) { writeFile(t, root, "etc/ex", "new", 0o644) },
			wantErr: []string{"$.storage.files[0]: a file exists at /etc/ex and overwrite is false"},
		},
		{
			name:  "overwrite replaces a file",
			files: `{"path":"/etc/ex","overwrite":true,"contents":{"source":"data:,new"}}`,
			setup: func(root string) { writeFile(t, root, "etc/ex", "old", 0o600) },
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, "etc/ex"); got != "new" {
					t.Errorf("ex = %q", got)
				}
				if s := statOf(t, root, "etc/ex"); s.mode != 0o644 {
					t.Errorf("mode = %v", s.mode)
				}
			},
		},
		{
			name:    "directory in the way without overwrite",
			files:   `{"path":"/etc/d"}`,
			setup:   func(root string) { os.MkdirAll(filepath.Join(root, "etc/d/sub"), 0o755) },
			wantErr: []string{"$.storage.files[0]: a non-regular file exists at /etc/d and overwrite is false"},
		},
		{
			name:  "overwrite replaces a directory",
			files: `{"path":"/etc/d","overwrite":true,"contents":{"source":"data:,f"}}`,
			setup: func(root string) { os.MkdirAll(filepath.Join(root, "etc/d/sub"), 0o755) },
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, "etc/d"); got != "f" {
					t.Errorf("d = %q", got)
				}
			},
		},
		{
			name:  "owner by id and by name",
			files: `{"path":"/etc/o1","user":{"id":1234},"group":{"id":4321}},{"path":"/etc/o2","user":{"name":"nobody"},"group":{"name":"wheel"}}`,
			check: func(t *testing.T, root string) {
				if s := statOf(t, root, "etc/o1"); s.uid != 1234 || s.gid != 4321 {
					t.Errorf("o1 = %+v", s)
				}
				if s := statOf(t, root, "etc/o2"); s.uid != 65534 || s.gid != 10 {
					t.Errorf("o2 = %+v", s)
				}
			},
		},
		{
			name:    "unknown owner",
			files:   `{"path":"/etc/x"},{"path":"/etc/o","user":{"name":"ghost"}}`,
			wantErr: []string{`$.storage.files[1]: user.name: no user "ghost"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			roots, errs := applyBoth(t, cfg("3.4.0", `"storage":{"files":[`+tt.files+`]}`), tt.setup)
			for i, root := range roots {
				err := errs[i]
				if tt.wantErr == nil && err != nil {
					t.Fatalf("tree %d: %v", i, err)
				}
				for _, w := range tt.wantErr {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("tree %d: error %v, want %q", i, err, w)
					}
				}
				if tt.check != nil {
					tt.check(t, root)
				}
			}
		})
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".slate-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestApplyRetriesAreBounded(t *testing.T) {
	requireRoot(t)
	var hits atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer s.Close()
	p, err := Parse(cfg("3.4.0", `"storage":{"files":[{"path":"/etc/x","contents":{"source":"`+s.URL+`/x"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	err = p.Apply(context.Background(), newRoot(t), fastFetcher)
	if err == nil || !strings.Contains(err.Error(), "502") || !strings.Contains(err.Error(), "after 3 failed attempts") {
		t.Fatalf("error = %v", err)
	}
	if hits.Load() != 3 {
		t.Errorf("server saw %d requests, want 3", hits.Load())
	}
	// A 404 is not retried.
	srv, nh := server(t)
	p, _ = Parse(cfg("3.4.0", `"storage":{"files":[{"path":"/etc/x","contents":{"source":"`+srv.URL+`/missing"}}]}`))
	if err := p.Apply(context.Background(), newRoot(t), fastFetcher); err == nil || nh.Load() != 1 {
		t.Errorf("404: err %v after %d requests", err, nh.Load())
	}
}

func TestApplyDirsAndLinks(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		storage string
		setup   func(root string)
		wantErr []string
		check   func(t *testing.T, root string)
	}{
		{
			name:    "directory with mode and owner, files inside after it",
			storage: `"files":[{"path":"/srv/data/app/f","contents":{"source":"data:,f"}}],"directories":[{"path":"/srv/data","mode":488,"user":{"id":1000},"group":{"id":1000}}]`,
			check: func(t *testing.T, root string) {
				if s := statOf(t, root, "srv/data"); s.mode != os.ModeDir|0o750 || s.uid != 1000 || s.gid != 1000 {
					t.Errorf("srv/data = %+v", s)
				}
				if got := readFile(t, root, "srv/data/app/f"); got != "f" {
					t.Errorf("f = %q", got)
				}
			},
		},
		{
			name:    "existing directory keeps its mode and contents",
			storage: `"directories":[{"path":"/var/keep"}]`,
			setup: func(root string) {
				os.MkdirAll(filepath.Join(root, "var/keep"), 0o700)
				os.Chmod(filepath.Join(root, "var/keep"), 0o710)
				writeFile(t, root, "var/keep/x", "x", 0o644)
			},
			check: func(t *testing.T, root string) {
				if s := statOf(t, root, "var/keep"); s.mode != os.ModeDir|0o710 {
					t.Errorf("mode = %v", s.mode)
				}
				readFile(t, root, "var/keep/x")
			},
		},
		{
			name:    "sticky directory",
			storage: `"directories":[{"path":"/var/tmp","mode":1023}]`,
			check: func(t *testing.T, root string) {
				if s := statOf(t, root, "var/tmp"); s.mode != os.ModeDir|os.ModeSticky|0o777 {
					t.Errorf("mode = %v", s.mode)
				}
			},
		},
		{
			name:    "file in the way of a directory",
			storage: `"directories":[{"path":"/var/d"}]`,
			setup:   func(root string) { writeFile(t, root, "var/d", "x", 0o644) },
			wantErr: []string{"$.storage.directories[0]: a non-directory exists at /var/d and overwrite is false"},
		},
		{
			name:    "symlink, relative and absolute, with owner",
			storage: `"links":[{"path":"/etc/localtime","target":"/usr/share/zoneinfo/UTC"},{"path":"/var/l/rel","target":"../x","user":{"id":5},"group":{"id":6}}]`,
			check: func(t *testing.T, root string) {
				for name, want := range map[string]string{"etc/localtime": "/usr/share/zoneinfo/UTC", "var/l/rel": "../x"} {
					if got, err := os.Readlink(filepath.Join(root, name)); err != nil || got != want {
						t.Errorf("%s -> %q, %v", name, got, err)
					}
				}
				if s := statOf(t, root, "var/l/rel"); s.uid != 5 || s.gid != 6 {
					t.Errorf("owner = %+v", s)
				}
			},
		},
		{
			name:    "matching symlink is kept",
			storage: `"links":[{"path":"/etc/l","target":"a"}]`,
			setup:   func(root string) { os.Symlink("a", filepath.Join(root, "etc/l")) },
		},
		{
			name:    "other symlink without overwrite",
			storage: `"links":[{"path":"/etc/l","target":"a"}]`,
			setup:   func(root string) { os.Symlink("b", filepath.Join(root, "etc/l")) },
			wantErr: []string{"$.storage.links[0]: something else exists at /etc/l and overwrite is false"},
		},
		{
			name:    "overwrite replaces a file with a symlink",
			storage: `"links":[{"path":"/etc/l","target":"a","overwrite":true}]`,
			setup:   func(root string) { writeFile(t, root, "etc/l", "x", 0o644) },
			check: func(t *testing.T, root string) {
				if got, _ := os.Readlink(filepath.Join(root, "etc/l")); got != "a" {
					t.Errorf("l -> %q", got)
				}
			},
		},
		{
			name:    "hard link to a file of the config",
			storage: `"links":[{"path":"/var/h","target":"/etc/f","hard":true}],"files":[{"path":"/etc/f","contents":{"source":"data:,f"}}]`,
			check: func(t *testing.T, root string) {
				if a, b := statOf(t, root, "var/h"), statOf(t, root, "etc/f"); a.ino != b.ino {
					t.Errorf("inodes %d and %d differ", a.ino, b.ino)
				}
			},
		},
		{
			name:    "hard link to a missing target",
			storage: `"links":[{"path":"/var/h","target":"/etc/nope","hard":true}]`,
			wantErr: []string{"$.storage.links[0]: hard link target"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			roots, errs := applyBoth(t, cfg("3.4.0", `"storage":{`+tt.storage+`}`), tt.setup)
			for i, root := range roots {
				err := errs[i]
				if tt.wantErr == nil && err != nil {
					t.Fatalf("tree %d: %v", i, err)
				}
				for _, w := range tt.wantErr {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("tree %d: error %v, want %q", i, err, w)
					}
				}
				if tt.check != nil {
					tt.check(t, root)
				}
			}
		})
	}
}

// TestApplyStaysInRoot: a symbolic link in the target root that points
// outside must not let a config write outside.
func TestApplyStaysInRoot(t *testing.T) {
	requireRoot(t)
	outside := t.TempDir()
	root := newRoot(t)
	if err := os.Symlink(outside, filepath.Join(root, "var")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../..", filepath.Join(root, "etc/up")); err != nil {
		t.Fatal(err)
	}
	for i, body := range []string{
		`"storage":{"files":[{"path":"/var/escape","contents":{"source":"data:,x"}}]}`,
		`"storage":{"files":[{"path":"/etc/up/escape","contents":{"source":"data:,x"}}]}`,
		`"storage":{"links":[{"path":"/etc/hl","target":"/var/x","hard":true}]}`,
	} {
		p, err := Parse(cfg("3.4.0", body))
		if err != nil {
			t.Fatal(err)
		}
		err = p.Apply(context.Background(), root, fastFetcher)
		if err == nil {
			t.Errorf("config %d: Apply followed a link out of the root", i)
		} else if !strings.Contains(err.Error(), "$.storage.") {
			t.Errorf("config %d: error %q does not name the entry", i, err)
		}
		t.Logf("config %d: %v", i, err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("written outside the root: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(root), "escape")); err == nil {
		t.Error("escape written next to the root")
	}
}

func TestApplyAccounts(t *testing.T) {
	requireRoot(t)
	hash := "$6$salt$0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	data := cfg("3.4.0", `
	"passwd": {
		"groups": [{"name": "ops", "gid": 2000}, {"name": "dev"}, {"name": "svc", "system": true}, {"name": "wheel", "gid": 10}],
		"users": [
			{"name": "alice", "passwordHash": "`+hash+`", "groups": ["ops", "wheel"],
			 "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@laptop", "ssh-rsa AAAAB3Nza second"]},
			{"name": "bob", "uid": 1500, "gecos": "Bob B", "shell": "/bin/bash", "homeDir": "/var/home/bob", "primaryGroup": "dev"},
			{"name": "daemon1", "system": true, "noCreateHome": true, "homeDir": "/nonexistent", "passwordHash": ""},
			{"name": "root", "sshAuthorizedKeys": ["ssh-ed25519 AAAA root@admin"], "passwordHash": "`+hash+`"}
		]
	},
	"storage": {"files": [{"path": "/home/alice/notes", "contents": {"source": "data:,hi"}, "user": {"name": "alice"}, "group": {"name": "ops"}}]}`)
	roots, errs := applyBoth(t, data, func(root string) {
		writeFile(t, root, "root/.ssh/authorized_keys", "ssh-ed25519 AAAA root@admin\nssh-rsa OLD old\n", 0o600)
	})
	for i, root := range roots {
		if errs[i] != nil {
			t.Fatalf("tree %d: %v", i, errs[i])
		}
		wantPasswd := basePasswd +
			"alice:x:1000:1001::/home/alice:/bin/sh\n" +
			"bob:x:1500:1000:Bob B:/var/home/bob:/bin/bash\n" +
			"daemon1:x:999:998::/nonexistent:/bin/sh\n"
		if got := readFile(t, root, "etc/passwd"); got != wantPasswd {
			t.Errorf("passwd:\n%s\nwant:\n%s", got, wantPasswd)
		}
		// alice's own group takes gid 1000 if free: it is not (dev took
		// 1000 before users were added), so the next free one.
		wantGroup := "root:x:0:\nwheel:x:10:alice\nnogroup:x:65534:\n" +
			"ops:x:2000:alice\ndev:x:1000:\nsvc:x:999:\nalice:x:1001:\ndaemon1:x:998:\n"
		if got := readFile(t, root, "etc/group"); got != wantGroup {
			t.Errorf("group:\n%s\nwant:\n%s", got, wantGroup)
		}
		wantShadow := "root:" + hash + ":19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n" +
			"alice:" + hash + "::0:99999:7:::\n" +
			"bob:*::0:99999:7:::\n" +
			"daemon1:*::0:99999:7:::\n"
		if got := readFile(t, root, "etc/shadow"); got != wantShadow {
			t.Errorf("shadow:\n%s\nwant:\n%s", got, wantShadow)
		}
		if s := statOf(t, root, "etc/shadow"); s.mode != 0o640 {
			t.Errorf("shadow mode changed to %v", s.mode)
		}
		if s := statOf(t, root, "home/alice"); s.mode != os.ModeDir|0o700 || s.uid != 1000 || s.gid != 1001 {
			t.Errorf("home/alice = %+v", s)
		}
		if s := statOf(t, root, "var/home/bob"); s.mode != os.ModeDir|0o700 || s.uid != 1500 || s.gid != 1000 {
			t.Errorf("var/home/bob = %+v", s)
		}
		if _, err := os.Lstat(filepath.Join(root, "nonexistent")); err == nil {
			t.Error("home of a noCreateHome user was created")
		}
		keys := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@laptop\nssh-rsa AAAAB3Nza second\n"
		if got := readFile(t, root, "home/alice/.ssh/authorized_keys"); got != keys {
			t.Errorf("alice keys = %q", got)
		}
		if s := statOf(t, root, "home/alice/.ssh"); s.mode != os.ModeDir|0o700 || s.uid != 1000 || s.gid != 1001 {
			t.Errorf(".ssh = %+v", s)
		}
		if s := statOf(t, root, "home/alice/.ssh/authorized_keys"); s.mode != 0o600 || s.uid != 1000 || s.gid != 1001 {
			t.Errorf("authorized_keys = %+v", s)
		}
		// root's key was there already: not added twice
		if got := readFile(t, root, "root/.ssh/authorized_keys"); got != "ssh-ed25519 AAAA root@admin\nssh-rsa OLD old\n" {
			t.Errorf("root keys = %q", got)
		}
		if s := statOf(t, root, "home/alice/notes"); s.uid != 1000 || s.gid != 2000 {
			t.Errorf("notes owner = %+v", s)
		}
	}
}

func TestApplyAccountErrors(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name, passwd, want string
	}{
		{"existing user with another uid", `"users":[{"name":"root","uid":5}]`, `$.passwd.users[0].uid: user root exists with uid "0"`},
		{"existing user with another shell", `"users":[{"name":"nobody","shell":"/bin/bash"}]`, "$.passwd.users[0].shell:"},
		{"uid taken", `"users":[{"name":"eve","uid":65534}]`, "$.passwd.users[0].uid: uid 65534 is taken"},
		{"gid taken", `"groups":[{"name":"g","gid":10}]`, "$.passwd.groups[0].gid: gid 10 is taken"},
		{"existing group with another gid", `"groups":[{"name":"wheel","gid":11}]`, "$.passwd.groups[0].gid: group wheel exists"},
		{"missing supplementary group", `"users":[{"name":"eve","groups":["nope"]}]`, `$.passwd.users[0].groups[0]: no group "nope"`},
		{"missing primary group", `"users":[{"name":"eve","primaryGroup":"nope"}]`, `$.passwd.users[0].primaryGroup: no group "nope"`},
		{"group named like the new user", `"users":[{"name":"wheel"}]`, "$.passwd.users[0].name: a group wheel exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			roots, errs := applyBoth(t, cfg("3.4.0", `"passwd":{`+tt.passwd+`}`), nil)
			for i := range roots {
				if errs[i] == nil || !strings.Contains(errs[i].Error(), tt.want) {
					t.Errorf("tree %d: error %v, want %q", i, errs[i], tt.want)
				}
				if got := readFile(t, roots[i], "etc/passwd"); got != basePasswd {
					t.Errorf("passwd changed by a failed config:\n%s", got)
				}
			}
		})
	}
}

func TestApplyUnits(t *testing.T) {
	requireRoot(t)
	contents := "[Unit]\nAfter=network-online.target\n[Service]\nExecStart=/var/lib/app/run --port 8080\nRestart=always\n[Install]\nWantedBy=multi-user.target\n"
	data := cfg("3.4.0", `"systemd":{"units":[{"name":"app.service","enabled":true,"contents":`+fmt.Sprintf("%q", contents)+`}]}`)
	roots, errs := applyBoth(t, data, nil)
	for i, root := range roots {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		got := readFile(t, root, "etc/systemd/system/app.service")
		if got != contents {
			t.Errorf("stored unit = %q", got)
		}
		u, err := ParseUnit("app.service", got)
		if err != nil || u.Restart != "always" || strings.Join(u.ExecStart, " ") != "/var/lib/app/run --port 8080" {
			t.Errorf("read back: %+v, %v", u, err)
		}
	}
}
