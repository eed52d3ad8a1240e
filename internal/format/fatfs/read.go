package fatfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf16"
)

// FS is a FAT32 filesystem opened for reading. It implements fs.FS, fs.ReadDirFS, fs.ReadFileFS and
// fs.StatFS; names follow fs.ValidPath ("." is the root, no leading "/")
// and are matched case-insensitively, against long and short names. An FS
// is not safe for concurrent use.
type FS struct {
	r   io.ReaderAt
	off int64 // partition start in r

	bps        int64 // bytes per sector
	spc        uint32
	cs         int64 // cluster size
	reserved   uint32
	nfats      uint32
	fatSectors uint32
	activeFAT  int // -1: all FATs mirrored
	total      uint32
	clusters   uint32 // data clusters, numbered 2..clusters+1
	root       uint32
	dataOff    int64  // absolute offset of cluster 2
	infoSector uint32 // 0: none
	label      string

	// One cached block of the FAT: chains are mostly contiguous.
	cacheOff int64
	cache    []byte
}

// BootSectorError is returned by Open for a boot sector that does not
// describe a FAT32 filesystem; Field names the field at fault.
type BootSectorError struct {
	Field string
	Msg   string
}

func (e *BootSectorError) Error() string {
	return fmt.Sprintf("fatfs: boot sector: %s: %s", e.Field, e.Msg)
}

func bad(field, format string, a ...any) error {
	return &BootSectorError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Open reads and checks the boot sector of the FAT32 filesystem of size
// bytes at offset in r, and its root folder.
func Open(r io.ReaderAt, offset, size int64) (*FS, error) {
	if offset < 0 || size <= 0 {
		return nil, fmt.Errorf("fatfs: offset %d, size %d: want offset >= 0 and size > 0", offset, size)
	}
	s := make([]byte, 512)
	if _, err := r.ReadAt(s, offset); err != nil {
		return nil, fmt.Errorf("fatfs: reading boot sector: %w", err)
	}
	le := binary.LittleEndian
	f := &FS{r: r, off: offset, activeFAT: -1, cacheOff: -1}
	if s[510] != 0x55 || s[511] != 0xaa {
		return nil, bad("signature", "bytes 510-511 are %#02x %#02x, want 0x55 0xaa", s[510], s[511])
	}
	if !(s[0] == 0xeb && s[2] == 0x90) && s[0] != 0xe9 {
		return nil, bad("jump instruction", "% x, want eb xx 90 or e9 xx xx", s[0:3])
	}
	bps := le.Uint16(s[11:])
	switch bps {
	case 512, 1024, 2048, 4096:
	default:
		return nil, bad("bytes per sector", "%d, want 512, 1024, 2048 or 4096", bps)
	}
	f.bps = int64(bps)
	spc := uint32(s[13])
	if spc == 0 || spc&(spc-1) != 0 {
		return nil, bad("sectors per cluster", "%d, not a power of two", spc)
	}
	f.spc = spc
	f.cs = f.bps * int64(spc)
	if f.cs > 64<<10 {
		return nil, bad("sectors per cluster", "%d sectors of %d bytes make clusters over 64 KiB", spc, bps)
	}
	f.reserved = uint32(le.Uint16(s[14:]))
	if f.reserved == 0 {
		return nil, bad("reserved sectors", "0, at least 1 needed")
	}
	f.nfats = uint32(s[16])
	if f.nfats == 0 {
		return nil, bad("number of FATs", "0")
	}
	if n := le.Uint16(s[17:]); n != 0 {
		return nil, bad("root entry count", "%d: a FAT12/16 filesystem (FAT32 has 0)", n)
	}
	if n := le.Uint16(s[22:]); n != 0 {
		return nil, bad("FAT size (16-bit)", "%d: a FAT12/16 filesystem (FAT32 has 0)", n)
	}
	f.fatSectors = le.Uint32(s[36:])
	if f.fatSectors == 0 {
		return nil, bad("FAT size", "0 sectors")
	}
	f.total = uint32(le.Uint16(s[19:]))
	if f.total == 0 {
		f.total = le.Uint32(s[32:])
	}
	if f.total == 0 {
		return nil, bad("total sectors", "0")
	}
	if int64(f.total) > size/f.bps {
		return nil, bad("total sectors", "%d sectors of %d bytes exceed the partition size %d", f.total, bps, size)
	}
	meta := uint64(f.reserved) + uint64(f.nfats)*uint64(f.fatSectors)
	if meta >= uint64(f.total) {
		return nil, bad("FAT size", "reserved sectors and %d FATs of %d sectors fill the %d sectors of the filesystem", f.nfats, f.fatSectors, f.total)
	}
	f.clusters = uint32((uint64(f.total) - meta) / uint64(spc))
	if f.clusters < minClusters {
		return nil, bad("total sectors", "%d data clusters: too few for FAT32 (at least %d)", f.clusters, minClusters)
	}
	if f.clusters > maxClusters {
		return nil, bad("total sectors", "%d data clusters: too many for FAT32", f.clusters)
	}
	if uint64(f.fatSectors)*uint64(f.bps)/4 < uint64(f.clusters)+2 {
		return nil, bad("FAT size", "%d sectors map %d clusters, the filesystem has %d", f.fatSectors, uint64(f.fatSectors)*uint64(f.bps)/4-2, f.clusters)
	}
	if flags := le.Uint16(s[40:]); flags&0x80 != 0 {
		f.activeFAT = int(flags & 0xf)
		if f.activeFAT >= int(f.nfats) {
			return nil, bad("extended flags", "active FAT %d of %d", f.activeFAT, f.nfats)
		}
	}
	if v := le.Uint16(s[42:]); v != 0 {
		return nil, bad("version", "%d.%d, only 0.0 is defined", v>>8, v&0xff)
	}
	f.root = le.Uint32(s[44:])
	if f.root < 2 || f.root > f.clusters+1 {
		return nil, bad("root cluster", "%d, outside clusters 2..%d", f.root, f.clusters+1)
	}
	if info := uint32(le.Uint16(s[48:])); info > 0 && info < f.reserved && info != 0xffff {
		f.infoSector = info
	}
	f.dataOff = offset + int64(meta)*f.bps
	if s[66] == 0x29 {
		f.label = strings.TrimRight(string(s[71:82]), " ")
		if f.label == "NO NAME" {
			f.label = ""
		}
	}
	d, err := f.readDir(f.root, "/")
	if err != nil {
		return nil, err
	}
	if d.label != "" {
		f.label = d.label
	}
	return f, nil
}

// Label returns the volume label: the root folder's label entry, else
// the boot sector's; "" when there is none.
func (f *FS) Label() string { return f.label }

// fatOff is the absolute offset of FAT entry c in FAT n.
func (f *FS) fatOff(n int, c uint32) int64 {
	return f.off + (int64(f.reserved)+int64(n)*int64(f.fatSectors))*f.bps + int64(c)*4
}

// readFAT returns FAT entry c (c must be below clusters+2).
func (f *FS) readFAT(c uint32) (uint32, error) {
	n := max(f.activeFAT, 0)
	off := f.fatOff(n, c)
	const block = 4096
	blk := off &^ (block - 1)
	if blk != f.cacheOff {
		if f.cache == nil {
			f.cache = make([]byte, block)
		}
		// The last block may run past the end of the FAT; only entries
		// below clusters+2 are ever read.
		k, err := f.r.ReadAt(f.cache, blk)
		if k < int(off-blk)+4 {
			f.cacheOff = -1
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("fatfs: reading FAT entry %d: %w", c, err)
		}
		clear(f.cache[k:])
		f.cacheOff = blk
	}
	return binary.LittleEndian.Uint32(f.cache[off-blk:]) & fatMask, nil
}

// extent is a run of consecutive clusters.
type extent struct{ first, n uint32 }

// chain follows the cluster chain from start. It stops after want
// clusters (want > 0) or at the end mark (want == 0, then at most limit
// clusters). Bad links, a chain shorter than want and loops are errors.
func (f *FS) chain(start, want, limit uint32, what string) ([]extent, error) {
	var (
		ext   []extent
		seen  []uint64 // visited clusters, kept once the chain jumps
		count uint32
	)
	mark := func(c uint32) bool {
		i := (c - 2) / 64
		bit := uint64(1) << ((c - 2) % 64)
		was := seen[i]&bit != 0
		seen[i] |= bit
		return was
	}
	for c := start; ; {
		if c < 2 || c > f.clusters+1 {
			return nil, fmt.Errorf("fatfs: %s: cluster chain reaches %#x, outside clusters 2..%d", what, c, f.clusters+1)
		}
		if len(ext) > 0 && ext[len(ext)-1].first+ext[len(ext)-1].n == c {
			ext[len(ext)-1].n++
		} else {
			// A run of consecutive clusters cannot loop; only a jump
			// can, so the visited set is only built for chains that jump.
			if len(ext) == 1 {
				seen = make([]uint64, f.clusters/64+1)
				for k := range ext[0].n {
					mark(ext[0].first + k)
				}
			}
			ext = append(ext, extent{c, 1})
		}
		if seen != nil && mark(c) {
			return nil, fmt.Errorf("fatfs: %s: cluster chain loops at cluster %d", what, c)
		}
		count++
		if want > 0 && count == want {
			return ext, nil
		}
		next, err := f.readFAT(c)
		if err != nil {
			return nil, err
		}
		if next >= fatEOCLo {
			if want > 0 {
				return nil, fmt.Errorf("fatfs: %s: cluster chain ends after %d clusters, %d needed for its size", what, count, want)
			}
			return ext, nil
		}
		if next == fatBad {
			return nil, fmt.Errorf("fatfs: %s: cluster chain reaches a bad cluster", what)
		}
		if want == 0 && count >= limit {
			return nil, fmt.Errorf("fatfs: %s: cluster chain longer than %d clusters (a folder over %d entries)", what, limit, maxDirEntries)
		}
		c = next
	}
}

func (f *FS) clusterOff(c uint32) int64 { return f.dataOff + int64(c-2)*f.cs }

// readExtents reads len(p) bytes starting at byte off of the data in ext.
func (f *FS) readExtents(ext []extent, p []byte, off int64) error {
	left, err := f.spanExtents(ext, p, off, func(b []byte, at int64) error {
		_, err := f.r.ReadAt(b, at)
		return err
	})
	if err != nil {
		return err
	}
	if left > 0 {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// spanExtents cuts p, placed at byte off of the data in ext, into the
// pieces that fall in each extent and calls do with each piece and its
// offset on the disk. It returns how many bytes of p lay past the end of
// ext, or the first error of do.
func (f *FS) spanExtents(ext []extent, p []byte, off int64, do func(b []byte, at int64) error) (int, error) {
	for _, e := range ext {
		if len(p) == 0 {
			break
		}
		n := int64(e.n) * f.cs
		if off >= n {
			off -= n
			continue
		}
		k := min(int64(len(p)), n-off)
		if err := do(p[:k], f.clusterOff(e.first)+off); err != nil {
			return 0, err
		}
		p = p[k:]
		off = 0
	}
	return len(p), nil
}

// entry is one name in a folder.
type entry struct {
	name    string
	short   [11]byte
	attr    byte
	cluster uint32
	size    uint32
	mtime   time.Time
	first   int // index of its first slot (LFN or short) in the folder
	slots   int // number of slots (LFN entries + 1)
}

func (e *entry) isDir() bool { return e.attr&attrDir != 0 }

// dir is a folder as read from disk.
type dir struct {
	cluster uint32
	path    string
	ext     []extent
	data    []byte
	entries []entry
	label   string
	end     int // index of the first slot after the last used one
}

// maxDirClusters is how many clusters a folder of maxDirEntries entries
// takes.
func (f *FS) maxDirClusters() uint32 {
	return uint32((maxDirEntries*dirEntrySize + f.cs - 1) / f.cs)
}

// readDir reads and decodes the folder at cluster.
func (f *FS) readDir(cluster uint32, p string) (*dir, error) {
	ext, err := f.chain(cluster, 0, f.maxDirClusters(), "folder "+p)
	if err != nil {
		return nil, err
	}
	var n uint32
	for _, e := range ext {
		n += e.n
	}
	d := &dir{cluster: cluster, path: p, ext: ext, data: make([]byte, int64(n)*f.cs)}
	if err := f.readExtents(ext, d.data, 0); err != nil {
		return nil, fmt.Errorf("fatfs: reading folder %s: %w", p, err)
	}
	d.decode()
	return d, nil
}

// decode fills d.entries from d.data. Broken LFN runs are ignored (the
// short name is used), as FAT drivers do.
func (d *dir) decode() {
	le := binary.LittleEndian
	var (
		lfn      [][]uint16 // parts by ordinal-1
		lfnSum   byte
		lfnNext  int // ordinal expected next, 0: none
		lfnStart int
	)
	reset := func() { lfn, lfnNext = nil, 0 }
	slots := len(d.data) / dirEntrySize
	d.end = slots
	for i := 0; i < slots; i++ {
		e := d.data[i*dirEntrySize : (i+1)*dirEntrySize]
		if e[0] == 0 {
			d.end = i
			return
		}
		if e[0] == 0xe5 {
			reset()
			continue
		}
		attr := e[11]
		if attr&0x3f == attrLFN {
			ord := int(e[0] & 0x3f)
			switch {
			case e[0]&0x40 != 0 && ord >= 1 && ord <= 20:
				lfn = make([][]uint16, ord)
				lfn[ord-1] = lfnPart(e)
				lfnSum, lfnNext, lfnStart = e[13], ord-1, i
			case lfnNext > 0 && ord == lfnNext && e[13] == lfnSum:
				lfn[ord-1] = lfnPart(e)
				lfnNext--
			default:
				reset()
			}
			continue
		}
		var short [11]byte
		copy(short[:], e[:11])
		if attr&attrVolumeID != 0 {
			if attr&attrDir == 0 && d.label == "" {
				d.label = strings.TrimRight(string(e[:11]), " ")
			}
			reset()
			continue
		}
		if short == dotName || short == dotDotName {
			reset()
			continue
		}
		ent := entry{
			short:   short,
			attr:    attr,
			cluster: uint32(le.Uint16(e[20:]))<<16 | uint32(le.Uint16(e[26:])),
			size:    le.Uint32(e[28:]),
			mtime:   parseTime(le.Uint16(e[24:]), le.Uint16(e[22:])),
			first:   i,
			slots:   1,
		}
		if lfn != nil && lfnNext == 0 && lfnSum == lfnChecksum(short) {
			var u []uint16
			for _, part := range lfn {
				u = append(u, part...)
			}
			// A long name that no FAT driver would accept (a garbage or
			// hostile image) is ignored for the short one.
			if name := string(utf16.Decode(u)); validName(name) == nil {
				ent.name = name
				ent.first, ent.slots = lfnStart, i-lfnStart+1
			}
		}
		if ent.name == "" {
			ent.name = displayShort(short, e[12])
		}
		// A short name of a corrupt folder can hold bytes no path can
		// name; such an entry is left out rather than listed unreachable.
		if ent.name == "" || ent.name == "." || ent.name == ".." || strings.ContainsAny(ent.name, "/\x00") {
			reset()
			continue
		}
		d.entries = append(d.entries, ent)
		reset()
	}
}

// find returns the entry named name (case-insensitively, long or short).
func (d *dir) find(name string) (*entry, bool) {
	key := foldKey(name)
	for i := range d.entries {
		e := &d.entries[i]
		if foldKey(e.name) == key || foldKey(displayShort(e.short, 0)) == key {
			return e, true
		}
	}
	return nil, false
}

// lookup resolves a slash-separated path: the folder holding its last
// element and that element's entry (nil for the root).
func (f *FS) lookup(op, name string) (*dir, *entry, error) {
	if !fs.ValidPath(name) {
		return nil, nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	d, err := f.readDir(f.root, "/")
	if err != nil {
		return nil, nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	if name == "." {
		return d, nil, nil
	}
	parts := strings.Split(name, "/")
	for i, part := range parts {
		e, ok := d.find(part)
		if !ok {
			return nil, nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		if i == len(parts)-1 {
			return d, e, nil
		}
		if !e.isDir() {
			return nil, nil, &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("%s is not a folder", path.Join(parts[:i+1]...))}
		}
		if d, err = f.subdir(e, "/"+path.Join(parts[:i+1]...)); err != nil {
			return nil, nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
	}
	return nil, nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
}

// subdir reads the folder of entry e. A ".." that points at cluster 0
// means the root.
func (f *FS) subdir(e *entry, p string) (*dir, error) {
	c := e.cluster
	if c == 0 {
		c = f.root
	}
	return f.readDir(c, p)
}

// fileInfo describes an entry; it is both fs.FileInfo and fs.DirEntry.
type fileInfo struct {
	name  string
	short string
	attr  byte
	size  int64
	mtime time.Time
}

func newInfo(e *entry) *fileInfo {
	fi := &fileInfo{name: e.name, short: displayShort(e.short, 0), attr: e.attr, size: int64(e.size), mtime: e.mtime}
	if e.isDir() {
		fi.size = 0
	}
	return fi
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return fi.size }
func (fi *fileInfo) ModTime() time.Time { return fi.mtime }
func (fi *fileInfo) IsDir() bool        { return fi.attr&attrDir != 0 }
func (fi *fileInfo) Sys() any           { return nil }
func (fi *fileInfo) Mode() fs.FileMode {
	m := fs.FileMode(0o644)
	if fi.IsDir() {
		m = fs.ModeDir | 0o755
	}
	if fi.attr&attrReadOnly != 0 {
		m &^= 0o222
	}
	return m
}
func (fi *fileInfo) Type() fs.FileMode          { return fi.Mode().Type() }
func (fi *fileInfo) Info() (fs.FileInfo, error) { return fi, nil }
func (fi *fileInfo) String() string             { return fs.FormatDirEntry(fi) }

// rootInfo describes the root folder.
func rootInfo() *fileInfo { return &fileInfo{name: ".", attr: attrDir} }

// ReadDir lists the folder name, sorted by name.
func (f *FS) ReadDir(name string) ([]fs.DirEntry, error) {
	d, e, err := f.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if e != nil {
		if !e.isDir() {
			return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a folder")}
		}
		if d, err = f.subdir(e, "/"+name); err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
		}
	}
	out := make([]fs.DirEntry, 0, len(d.entries))
	for i := range d.entries {
		out = append(out, newInfo(&d.entries[i]))
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// ReadFile returns the content of the file name.
func (f *FS) ReadFile(name string) ([]byte, error) {
	_, e, err := f.lookup("readfile", name)
	if err != nil {
		return nil, err
	}
	if e == nil || e.isDir() {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: errors.New("is a folder")}
	}
	ext, err := f.fileExtents(e, name)
	if err != nil {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: err}
	}
	b := make([]byte, e.size)
	if err := f.readExtents(ext, b, 0); err != nil {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: err}
	}
	return b, nil
}

// fileExtents checks and returns the clusters of a file's content.
func (f *FS) fileExtents(e *entry, name string) ([]extent, error) {
	if e.size == 0 {
		return nil, nil
	}
	want := uint32((int64(e.size) + f.cs - 1) / f.cs)
	if e.cluster == 0 || want > f.clusters {
		return nil, fmt.Errorf("fatfs: %s: %d bytes in cluster %d of a filesystem of %d clusters", name, e.size, e.cluster, f.clusters)
	}
	return f.chain(e.cluster, want, 0, name)
}

// Stat describes the file or folder name.
func (f *FS) Stat(name string) (fs.FileInfo, error) {
	_, e, err := f.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return rootInfo(), nil
	}
	return newInfo(e), nil
}

// Open opens the file or folder name for reading.
func (f *FS) Open(name string) (fs.File, error) {
	d, e, err := f.lookup("open", name)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return &openDir{info: rootInfo(), d: d}, nil
	}
	if e.isDir() {
		sub, err := f.subdir(e, "/"+name)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return &openDir{info: newInfo(e), d: sub}, nil
	}
	ext, err := f.fileExtents(e, name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &openFile{fs: f, info: newInfo(e), ext: ext}, nil
}

// openDir is an open folder.
type openDir struct {
	info *fileInfo
	d    *dir
	pos  int
}

func (o *openDir) Stat() (fs.FileInfo, error) { return o.info, nil }
func (o *openDir) Close() error               { return nil }
func (o *openDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: o.info.name, Err: errors.New("is a folder")}
}

// ReadDir returns the next n entries in on-disk order (all if n <= 0).
func (o *openDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := o.d.entries[o.pos:]
	if n > 0 && len(rest) == 0 {
		return nil, io.EOF
	}
	if n > 0 && n < len(rest) {
		rest = rest[:n]
	}
	out := make([]fs.DirEntry, len(rest))
	for i := range rest {
		out[i] = newInfo(&rest[i])
	}
	o.pos += len(rest)
	return out, nil
}

// openFile is an open file; it reads straight from the filesystem.
type openFile struct {
	fs   *FS
	info *fileInfo
	ext  []extent
	pos  int64
}

func (o *openFile) Stat() (fs.FileInfo, error) { return o.info, nil }
func (o *openFile) Close() error               { return nil }

func (o *openFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: o.info.name, Err: fs.ErrInvalid}
	}
	if off >= o.info.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), o.info.size-off))
	if err := o.fs.readExtents(o.ext, p[:n], off); err != nil {
		return 0, &fs.PathError{Op: "read", Path: o.info.name, Err: err}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (o *openFile) Read(p []byte) (int, error) {
	if o.pos >= o.info.size {
		return 0, io.EOF
	}
	n, err := o.ReadAt(p, o.pos)
	o.pos += int64(n)
	if errors.Is(err, io.EOF) && n > 0 {
		err = nil
	}
	return n, err
}

func (o *openFile) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += o.pos
	case io.SeekEnd:
		offset += o.info.size
	default:
		return 0, &fs.PathError{Op: "seek", Path: o.info.name, Err: fs.ErrInvalid}
	}
	if offset < 0 {
		return 0, &fs.PathError{Op: "seek", Path: o.info.name, Err: fs.ErrInvalid}
	}
	o.pos = offset
	return offset, nil
}
