package bootentry

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/slateos/slate/internal/format/fatfs"
	"github.com/slateos/slate/partitions"
)

// ESP is the FAT32 EFI system partition of an image file or of a device
// that is not mounted. (A running system goes through the kernel's vfat
// mount instead, see Dir.)
type ESP struct {
	fs *fatfs.FS
}

// OpenESP opens partition p of f as FAT32.
func OpenESP(f *os.File, p partitions.Part) (*ESP, error) {
	fsys, err := fatfs.Open(f, p.Start, p.Size)
	if err != nil {
		return nil, fmt.Errorf("read FAT32 of partition %d (%s): %w", p.Num, p.Label, err)
	}
	return &ESP{fs: fsys}, nil
}

func rel(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		return "."
	}
	return p
}

// ReadFile reads a whole (small) file.
func (e *ESP) ReadFile(p string) ([]byte, error) {
	b, err := e.fs.ReadFile(rel(p))
	if err != nil {
		return nil, fmt.Errorf("ESP: read %s: %w", p, err)
	}
	return b, nil
}

// File is an entry with what its file says.
type File struct {
	Entry
	File    string            // name in /loader/entries
	Options string            // kernel command line
	Keys    map[string]string // every key of the file
}

// Entries lists slate's boot entries. Files that are not slate entries
// are skipped; a slate-looking name that does not parse is an error.
func (e *ESP) Entries() ([]File, error) {
	ents, err := e.fs.ReadDir(rel(EntriesDir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("ESP: list %s: %w", EntriesDir, err)
	}
	names := make([]string, 0, len(ents))
	for _, d := range ents {
		if !d.IsDir() {
			names = append(names, d.Name())
		}
	}
	return readEntries(names, func(name string) ([]byte, error) { return e.ReadFile(path.Join(EntriesDir, name)) })
}

// readEntries parses the slate entries among the file names of an entries
// folder: files that are not slate entries are skipped; a slate-looking
// name that does not parse is an error.
func readEntries(names []string, read func(name string) ([]byte, error)) ([]File, error) {
	var out []File
	for _, name := range names {
		low := strings.ToLower(name)
		if !strings.HasPrefix(low, "slate-") || !strings.HasSuffix(low, ".conf") {
			continue
		}
		en, err := ParseName(name)
		if err != nil {
			return nil, err
		}
		b, err := read(name)
		if err != nil {
			return nil, err
		}
		keys := ParseKeys(b)
		out = append(out, File{Entry: en, File: name, Options: keys["options"], Keys: keys})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out, nil
}

// ParseKeys reads "key value" lines of a Boot Loader Specification
// entry; later keys win, comments and blank lines are skipped.
func ParseKeys(b []byte) map[string]string {
	keys := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		keys[k] = strings.TrimSpace(v)
	}
	return keys
}
