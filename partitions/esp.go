package partitions

import (
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// ESP is the FAT32 EFI system partition of an image file or a device that
// is not mounted. (A running system goes through the kernel's vfat mount
// instead.)
type ESP struct {
	fs *fat32.FileSystem
}

// OpenESP opens partition p of f as FAT32.
func OpenESP(f *os.File, p Part, writable bool) (*ESP, error) {
	fsys, err := fat32.Read(file.New(f, !writable), p.Size, p.Start, SectorSize)
	if err != nil {
		return nil, fmt.Errorf("read FAT32 of partition %d (%s): %w", p.Num, p.Label, err)
	}
	return &ESP{fs: fsys}, nil
}

// CreateESP makes a new FAT32 filesystem on partition p of f. Reproducible
// mode fixes the volume ID; file times come from SOURCE_DATE_EPOCH.
func CreateESP(f *os.File, p Part) (*ESP, error) {
	fsys, err := fat32.Create(file.New(f, false), p.Size, p.Start, SectorSize, LabelESP, true)
	if err != nil {
		return nil, fmt.Errorf("create FAT32 on partition %d (%s): %w", p.Num, p.Label, err)
	}
	return &ESP{fs: fsys}, nil
}

// WriteFile writes a file, making its folders.
func (e *ESP) WriteFile(p string, r io.Reader) error {
	if err := e.fs.Mkdir(path.Dir(p)); err != nil {
		return fmt.Errorf("ESP: mkdir %s: %w", path.Dir(p), err)
	}
	w, err := e.fs.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("ESP: create %s: %w", p, err)
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return fmt.Errorf("ESP: write %s: %w", p, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("ESP: close %s: %w", p, err)
	}
	return nil
}

// ReadFile reads a whole (small) file.
func (e *ESP) ReadFile(p string) ([]byte, error) {
	f, err := e.fs.OpenFile(p, os.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("ESP: open %s: %w", p, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("ESP: read %s: %w", p, err)
	}
	return b, nil
}

// EntryFile is an entry with what its file says.
type EntryFile struct {
	Entry
	File    string            // name in /loader/entries
	Options string            // kernel command line
	Keys    map[string]string // every key of the file
}

// Entries lists slate's boot entries. Files that are not slate entries
// are skipped; a slate-looking name that does not parse is an error.
func (e *ESP) Entries() ([]EntryFile, error) {
	ents, err := e.fs.ReadDir(EntriesDir)
	if err != nil {
		if isNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("ESP: list %s: %w", EntriesDir, err)
	}
	var out []EntryFile
	for _, d := range ents {
		name := d.Name()
		if d.IsDir() || !strings.HasPrefix(strings.ToLower(name), "slate-") || !strings.HasSuffix(strings.ToLower(name), ".conf") {
			continue
		}
		en, err := ParseEntryName(name)
		if err != nil {
			return nil, err
		}
		b, err := e.ReadFile(path.Join(EntriesDir, name))
		if err != nil {
			return nil, err
		}
		keys := ParseEntryFile(b)
		out = append(out, EntryFile{Entry: en, File: name, Options: keys["options"], Keys: keys})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out, nil
}

// ParseEntryFile reads "key value" lines of a Boot Loader Specification
// entry; later keys win, comments and blank lines are skipped.
func ParseEntryFile(b []byte) map[string]string {
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

func isNotExist(err error) bool {
	return err != nil && (os.IsNotExist(err) || strings.Contains(err.Error(), "not found") || strings.Contains(err.Error(), "does not exist") || err == iofs.ErrNotExist)
}

var _ filesystem.FileSystem = (*fat32.FileSystem)(nil)
