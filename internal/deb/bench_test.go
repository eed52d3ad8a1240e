package deb

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
)

// genIndex is an index of n packages shaped like bookworm's: each depends
// on a few lower-numbered ones (one alternative group, one versioned
// relation), every tenth provides a virtual name, and each has a
// description.
func genIndex(n int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "Package: pkg%d\nVersion: 1.%d-1\nArchitecture: amd64\nInstalled-Size: 100\nMaintainer: m <m@example.org>\n", i, i%7)
		if i > 3 {
			fmt.Fprintf(&b, "Depends: pkg%d (>= 1.0), pkg%d | virt%d, pkg%d\n", i/2, i/3, i%50, i-1-(i%3))
		}
		if i%10 == 0 {
			fmt.Fprintf(&b, "Provides: virt%d (= 1.0), other%d\n", i%50, i)
		}
		fmt.Fprintf(&b, "Description: package %d\n a longer description of package %d\n .\n and another line\nSection: misc\nPriority: optional\n", i, i)
		fmt.Fprintf(&b, "Filename: pool/main/p/pkg%d/pkg%d_1.%d-1_amd64.deb\nSize: %d\nSHA256: %064x\n\n", i, i, i%7, 1000+i, i)
	}
	return b.Bytes()
}

func BenchmarkParseIndex60k(b *testing.B) {
	data := genIndex(60000)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseIndex(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewIndex60k(b *testing.B) {
	pkgs, err := ParseIndex(bytes.NewReader(genIndex(60000)))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := NewIndex(pkgs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResolve60k resolves the top package of a 60k index: its
// closure is a large part of the index.
func BenchmarkResolve60k(b *testing.B) {
	pkgs, err := ParseIndex(bytes.NewReader(genIndex(60000)))
	if err != nil {
		b.Fatal(err)
	}
	ix, err := NewIndex(pkgs)
	if err != nil {
		b.Fatal(err)
	}
	var size int
	for b.Loop() {
		res, err := ix.Resolve([]configs.PackageRef{{Name: "pkg59999"}}, DefaultExclude)
		if err != nil {
			b.Fatal(err)
		}
		size = len(res.Packages)
	}
	b.ReportMetric(float64(size), "packages")
}

func BenchmarkHint60k(b *testing.B) {
	pkgs, _ := ParseIndex(bytes.NewReader(genIndex(60000)))
	ix, _ := NewIndex(pkgs)
	for b.Loop() {
		if h := ix.Hint("pkq1234"); !strings.HasPrefix(h, "pkg") {
			b.Fatal(h)
		}
	}
}
