package deb

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ulikunitz/xz"
)

// testFile is one member of a test package's data archive.
type testFile struct {
	name   string // "./usr/bin/x"
	typ    byte   // tar.TypeReg by default
	mode   int64
	uid    int
	body   string
	target string // symlink or hard link target
}

// testPkg is a package of the test repository.
type testPkg struct {
	name, version, arch string
	depends, pre        string
	provides            string
	files               []testFile
	gz                  bool // data.tar.gz instead of data.tar.xz
}

// arMember writes one ar member (60-byte header, body, padding).
func arMember(b *bytes.Buffer, name string, body []byte) {
	fmt.Fprintf(b, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(body))
	b.Write(body)
	if len(body)%2 == 1 {
		b.WriteByte('\n')
	}
}

func tarOf(t testing.TB, files []testFile) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.uid, ModTime: time.Unix(0, 0), Format: tar.FormatGNU}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		switch {
		case f.typ == tar.TypeDir || strings.HasSuffix(f.name, "/"):
			h.Typeflag = tar.TypeDir
			if f.mode == 0 {
				h.Mode = 0o755
			}
		case f.typ == tar.TypeSymlink || f.typ == tar.TypeLink:
			h.Typeflag = f.typ
			h.Linkname = f.target
			h.Mode = 0o777
		default:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(f.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func gz(data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

func xzOf(t testing.TB, data []byte) []byte {
	var b bytes.Buffer
	w, err := xz.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// buildDeb makes a .deb: debian-binary, control.tar.gz, data.tar.xz|gz.
func buildDeb(t testing.TB, p testPkg) []byte {
	ctl := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: t <t@example.org>\nDescription: test\n", p.name, p.version, p.arch)
	if p.depends != "" {
		ctl += "Depends: " + p.depends + "\n"
	}
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	arMember(&b, "debian-binary", []byte("2.0\n"))
	arMember(&b, "control.tar.gz", gz(tarOf(t, []testFile{{name: "./control", body: ctl}})))
	data := tarOf(t, p.files)
	if p.gz {
		arMember(&b, "data.tar.gz", gz(data))
	} else {
		arMember(&b, "data.tar.xz", xzOf(t, data))
	}
	return b.Bytes()
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// testRepo is a signed repository served on loopback.
type testRepo struct {
	srv      *httptest.Server
	keyring  []byte // the public key, binary
	entity   *openpgp.Entity
	mu       sync.Mutex
	files    map[string][]byte
	requests atomic.Int64
	paths    []string
}

func newKey(t testing.TB) *openpgp.Entity {
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Time: func() time.Time { return time.Now().Add(-time.Hour) }}
	e, err := openpgp.NewEntity("slate test archive", "", "archive@example.org", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func pubRing(t testing.TB, e *openpgp.Entity) []byte {
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func clearSign(t testing.TB, e *openpgp.Entity, text []byte) []byte {
	var b bytes.Buffer
	w, err := clearsign.Encode(&b, e.PrivateKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(text)
	w.Close()
	return b.Bytes()
}

// indexText is the Packages paragraph of p whose .deb is data.
func indexText(p testPkg, data []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Package: %s\nVersion: %s\nArchitecture: %s\n", p.name, p.version, p.arch)
	if p.pre != "" {
		fmt.Fprintf(&b, "Pre-Depends: %s\n", p.pre)
	}
	if p.depends != "" {
		fmt.Fprintf(&b, "Depends: %s\n", p.depends)
	}
	if p.provides != "" {
		fmt.Fprintf(&b, "Provides: %s\n", p.provides)
	}
	fmt.Fprintf(&b, "Description: the %s package\n a longer text\n .\n more\n", p.name)
	fmt.Fprintf(&b, "Filename: %s\nSize: %d\nSHA256: %s\n\n", poolPath(p), len(data), sum(data))
	return b.String()
}

func poolPath(p testPkg) string {
	return fmt.Sprintf("pool/main/%c/%s/%s_%s_%s.deb", p.name[0], p.name, p.name, p.version[strings.Index(p.version, ":")+1:], p.arch)
}

// newRepo builds and serves a repository of pkgs for suite "test".
func newRepo(t testing.TB, pkgs []testPkg) *testRepo {
	r := &testRepo{files: map[string][]byte{}, entity: newKey(t)}
	r.keyring = pubRing(t, r.entity)
	sort.SliceStable(pkgs, func(i, j int) bool { return pkgs[i].name < pkgs[j].name })
	var index strings.Builder
	for _, p := range pkgs {
		if p.arch == "" {
			p.arch = "amd64"
		}
		d := buildDeb(t, p)
		pp := poolPath(p)
		r.files[pp] = d
		index.WriteString(indexText(p, d))
	}
	r.setIndex(t, []byte(index.String()))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		r.mu.Lock()
		p := strings.TrimPrefix(req.URL.Path, "/debian/")
		r.paths = append(r.paths, p)
		data, ok := r.files[p]
		r.mu.Unlock()
		if !ok {
			http.NotFound(w, req)
			return
		}
		w.Write(data)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// setIndex publishes an index (as .xz) and re-signs the release.
func (r *testRepo) setIndex(t testing.TB, index []byte) {
	x := xzOf(t, index)
	r.files["dists/test/main/binary-amd64/Packages.xz"] = x
	rel := fmt.Sprintf("Origin: Test\nSuite: test\nCodename: test\nDate: Sat, 10 May 2025 09:00:00 UTC\nArchitectures: amd64\nComponents: main\nSHA256:\n %s %d main/binary-amd64/Packages.xz\n %s %d main/binary-amd64/Packages\n",
		sum(x), len(x), sum(index), len(index))
	r.files["dists/test/InRelease"] = clearSign(t, r.entity, []byte(rel))
}

func (r *testRepo) mirror() string { return r.srv.URL + "/debian" }
