package deb

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pierrec/lz4/v4"
	"github.com/slateos/slate/configs"
)

const aptLists = "/var/lib/apt/lists"

// aptListName is the file name apt gives a mirror's file in its lists:
// the URL without its scheme, "/" as "_".
func aptListName(mirror, rel string) string {
	u := mirror[strings.Index(mirror, "://")+3:]
	return strings.ReplaceAll(u+"/"+rel, "/", "_")
}

// hostSuite reads the build host's apt copy of a suite's InRelease
// (verified with the host's Debian keyring) and main amd64 index (checked
// against the release's sha256 of the plain Packages file), its packages
// tagged with the suite.
func hostSuite(t testing.TB, src Source) (*Release, []*Package, time.Duration) {
	inrel := filepath.Join(aptLists, aptListName(src.Mirror, "dists/"+src.Suite+"/InRelease"))
	idx := filepath.Join(aptLists, aptListName(src.Mirror, "dists/"+src.Suite+"/main/binary-amd64/Packages.lz4"))
	data, err := os.ReadFile(inrel)
	if err != nil {
		t.Skipf("no apt copy of %s: %v", src.Suite, err)
	}
	if _, err := os.Stat(idx); err != nil {
		t.Skipf("no apt copy of %s's index: %v", src.Suite, err)
	}
	ring, err := LoadKeyring(configs.DefaultDebianKeyring)
	if err != nil {
		t.Skip(err)
	}
	rel, err := ParseInRelease(data, ring)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(idx)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	plain, err := io.ReadAll(lz4.NewReader(bufio.NewReader(f)))
	if err != nil {
		t.Fatal(err)
	}
	want := rel.Files["main/binary-amd64/Packages"]
	s := sha256.Sum256(plain)
	if int64(len(plain)) != want.Size || hex.EncodeToString(s[:]) != want.SHA256 {
		t.Skipf("the apt copy of %s's index is not the one its InRelease names", src.Suite)
	}
	start := time.Now()
	pkgs, err := ParseIndex(bytes.NewReader(plain))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkgs {
		p.Source = src.Suite
	}
	return rel, pkgs, time.Since(start)
}

// hostBookworm is the host's bookworm, bookworm-updates and
// bookworm-security (those its apt sources name), as a spec without a
// debian section resolves against.
func hostBookworm(t testing.TB) ([]*Package, time.Duration) {
	var all []*Package
	var parse time.Duration
	for _, src := range SourcesOf(nil) {
		_, pkgs, d := hostSuite(t, src)
		all = append(all, pkgs...)
		parse += d
	}
	return all, parse
}

// The real bookworm indexes (bookworm, -updates, -security, as the
// host's apt has them) resolve openssh-server, busybox-static and
// ca-certificates to apt's set on an empty root (without exclusions),
// version for version, and the default exclusions only take packages
// away.
func TestHostBookwormLikeApt(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the host's 60 MB bookworm index")
	}
	pkgs, parse := hostBookworm(t)
	start := time.Now()
	ix, err := NewIndex(pkgs)
	if err != nil {
		t.Fatal(err)
	}
	index := time.Since(start)
	req := []configs.PackageRef{{Name: "openssh-server"}, {Name: "busybox-static"}, {Name: "ca-certificates"}}
	start = time.Now()
	all, err := ix.Resolve(req, nil)
	if err != nil {
		t.Fatal(err)
	}
	resolve := time.Since(start)
	ex, err := ix.Resolve(req, DefaultExclude)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bookworm: %d entries (%d names): parse %v, index %v, resolve %v; closure %d packages, %d with the default exclusions",
		len(pkgs), ix.Len(), parse.Round(time.Millisecond), index.Round(time.Millisecond), resolve.Round(time.Microsecond), len(all.Packages), len(ex.Packages))
	var got, gotEx []string
	for _, p := range all.Packages {
		got = append(got, p.Name+"="+p.Version)
		if p.Name == "libssl3" {
			t.Logf("libssl3 %s from %s", p.Version, p.Source)
		}
	}
	for _, p := range ex.Packages {
		gotEx = append(gotEx, p.Name)
		if _, excluded := DefaultExclude[p.Name]; excluded {
			t.Errorf("excluded %s is in the closure", p.Name)
		}
	}
	t.Logf("with exclusions: %s", strings.Join(gotEx, " "))
	for _, n := range gotEx {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, n+"=") }) {
			t.Errorf("%s is in the excluded closure only", n)
		}
	}
	apt, err := exec.LookPath("apt-get")
	if err != nil {
		t.Skip("no apt-get to compare with")
	}
	status := filepath.Join(t.TempDir(), "status")
	os.WriteFile(status, nil, 0o644)
	out, err := exec.Command("nice", "-n", "19", apt, "-s", "-o", "Dir::State::status="+status, "-o", "APT::Install-Recommends=false",
		"install", "openssh-server", "busybox-static", "ca-certificates").Output()
	if err != nil {
		t.Skipf("apt-get -s: %v", err)
	}
	var want []string
	for _, line := range strings.Split(string(out), "\n") {
		// Inst libssl3 (3.0.22-1~deb12u2 Debian-Security:12/stable-security [amd64])
		if f := strings.Fields(line); len(f) > 2 && f[0] == "Inst" {
			want = append(want, f[1]+"="+strings.TrimPrefix(f[2], "("))
		}
	}
	byName := func(a, b string) int {
		na, _, _ := strings.Cut(a, "=")
		nb, _, _ := strings.Cut(b, "=")
		return strings.Compare(na, nb)
	}
	slices.SortFunc(want, byName)
	if !slices.Equal(got, want) {
		t.Errorf("closure differs from apt's:\n ours %v\n apt's %v", got, want)
	}
}
