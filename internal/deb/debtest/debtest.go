// Package debtest builds a signed Debian repository for tests: its own
// OpenPGP key, a clear-signed InRelease, a Packages index and .deb files
// made in the test, served by httptest on loopback. Tests only.
package debtest

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
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// File is one member of a test package's data archive.
type File struct {
	Name   string // "./usr/bin/x"; a name ending in / is a directory
	Type   byte   // tar.TypeReg by default
	Mode   int64
	UID    int
	Body   string
	Target string // symlink or hard link target
}

// Pkg is a package of the test repository.
type Pkg struct {
	Name, Version, Arch string // Arch: amd64 when empty
	Depends, PreDepends string
	Provides            string
	Files               []File
	Gzip                bool // data.tar.gz instead of data.tar.xz
	Zstd                bool // data.tar.zst
}

// arMember writes one ar member (60-byte header, body, padding).
func arMember(b *bytes.Buffer, name string, body []byte) {
	fmt.Fprintf(b, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(body))
	b.Write(body)
	if len(body)%2 == 1 {
		b.WriteByte('\n')
	}
}

func tarOf(t testing.TB, files []File) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Mode: f.Mode, Uid: f.UID, Gid: f.UID, ModTime: time.Unix(0, 0), Format: tar.FormatGNU}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		switch {
		case f.Type == tar.TypeDir || strings.HasSuffix(f.Name, "/"):
			h.Typeflag = tar.TypeDir
			if f.Mode == 0 {
				h.Mode = 0o755
			}
		case f.Type == tar.TypeSymlink || f.Type == tar.TypeLink:
			h.Typeflag = f.Type
			h.Linkname = f.Target
			h.Mode = 0o777
		default:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(f.Body))
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

// BuildDeb makes a .deb: debian-binary, control.tar.gz, data.tar.xz|gz.
func BuildDeb(t testing.TB, p Pkg) []byte {
	ctl := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: t <t@example.org>\nDescription: test\n", p.Name, p.Version, p.Arch)
	if p.Depends != "" {
		ctl += "Depends: " + p.Depends + "\n"
	}
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	arMember(&b, "debian-binary", []byte("2.0\n"))
	arMember(&b, "control.tar.gz", gz(tarOf(t, []File{{Name: "./control", Body: ctl}})))
	data := tarOf(t, p.Files)
	if p.Zstd {
		w, err := zstd.NewWriter(nil)
		if err != nil {
			t.Fatal(err)
		}
		arMember(&b, "data.tar.zst", w.EncodeAll(data, nil))
		w.Close()
	} else if p.Gzip {
		arMember(&b, "data.tar.gz", gz(data))
	} else {
		arMember(&b, "data.tar.xz", xzOf(t, data))
	}
	return b.Bytes()
}

// SHA256 is the hex sha256 of b.
func SHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Repo is a signed repository served on loopback.
type Repo struct {
	srv      *httptest.Server
	Keyring  []byte // the public key, binary
	Entity   *openpgp.Entity
	mu       sync.Mutex
	files    map[string][]byte
	requests atomic.Int64
}

// Requests is the number of requests served so far.
func (r *Repo) Requests() int64 { return r.requests.Load() }

// File is the served file at path (relative to the mirror).
func (r *Repo) File(path string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.files[path]
}

// SetFile replaces a served file.
func (r *Repo) SetFile(path string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files[path] = data
}

// Release is the path of the InRelease file, Index that of Packages.xz.
const (
	Release = "dists/test/InRelease"
	Index   = "dists/test/main/binary-amd64/Packages.xz"
)

// NewKey makes a signing key.
func NewKey(t testing.TB) *openpgp.Entity {
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

// ClearSign clear-signs text with e.
func ClearSign(t testing.TB, e *openpgp.Entity, text []byte) []byte {
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
func indexText(p Pkg, data []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Package: %s\nVersion: %s\nArchitecture: %s\n", p.Name, p.Version, p.Arch)
	if p.PreDepends != "" {
		fmt.Fprintf(&b, "Pre-Depends: %s\n", p.PreDepends)
	}
	if p.Depends != "" {
		fmt.Fprintf(&b, "Depends: %s\n", p.Depends)
	}
	if p.Provides != "" {
		fmt.Fprintf(&b, "Provides: %s\n", p.Provides)
	}
	fmt.Fprintf(&b, "Description: the %s package\n a longer text\n .\n more\n", p.Name)
	fmt.Fprintf(&b, "Filename: %s\nSize: %d\nSHA256: %s\n\n", PoolPath(p), len(data), SHA256(data))
	return b.String()
}

// PoolPath is the Filename of p in the index.
func PoolPath(p Pkg) string {
	return fmt.Sprintf("pool/main/%c/%s/%s_%s_%s.deb", p.Name[0], p.Name, p.Name, p.Version[strings.Index(p.Version, ":")+1:], p.Arch)
}

// NewRepo builds and serves a repository of pkgs for suite "test".
func NewRepo(t testing.TB, pkgs []Pkg) *Repo {
	r := &Repo{files: map[string][]byte{}, Entity: NewKey(t)}
	r.Keyring = pubRing(t, r.Entity)
	sort.SliceStable(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	var index strings.Builder
	for _, p := range pkgs {
		if p.Arch == "" {
			p.Arch = "amd64"
		}
		d := BuildDeb(t, p)
		pp := PoolPath(p)
		r.files[pp] = d
		index.WriteString(indexText(p, d))
	}
	r.SetIndex(t, []byte(index.String()))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		r.mu.Lock()
		p := strings.TrimPrefix(req.URL.Path, "/debian/")
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

// SetIndex publishes an index (as .xz) and re-signs the release.
func (r *Repo) SetIndex(t testing.TB, index []byte) {
	r.setIndex(t, "test", index)
}

func (r *Repo) setIndex(t testing.TB, suite string, index []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	x := xzOf(t, index)
	r.files["dists/"+suite+"/main/binary-amd64/Packages.xz"] = x
	rel := fmt.Sprintf("Origin: Test\nSuite: %s\nCodename: %s\nDate: Sat, 10 May 2025 09:00:00 UTC\nArchitectures: amd64\nComponents: main\nSHA256:\n %s %d main/binary-amd64/Packages.xz\n %s %d main/binary-amd64/Packages\n",
		suite, suite, SHA256(x), len(x), SHA256(index), len(index))
	r.files["dists/"+suite+"/InRelease"] = ClearSign(t, r.Entity, []byte(rel))
}

// AddSuite publishes another suite of the repository (signed with the
// same key), like bookworm-security beside bookworm. Its .debs go into the
// same pool.
func (r *Repo) AddSuite(t testing.TB, suite string, pkgs []Pkg) {
	sort.SliceStable(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	var index strings.Builder
	for _, p := range pkgs {
		if p.Arch == "" {
			p.Arch = "amd64"
		}
		d := BuildDeb(t, p)
		r.SetFile(PoolPath(p), d)
		index.WriteString(indexText(p, d))
	}
	r.setIndex(t, suite, []byte(index.String()))
}

// Mirror is the repository's URL, for debian.mirror (suite "test").
func (r *Repo) Mirror() string { return r.srv.URL + "/debian" }
