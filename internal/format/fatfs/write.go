package fatfs

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"unicode/utf16"
)

// Builder collects folders and files and writes them as a new FAT32
// filesystem. It is not safe for concurrent use.
type Builder struct {
	opts  Options
	geo   geometry
	label [11]byte
	root  *node
}

// node is a folder or file of a Builder.
type node struct {
	name     string
	path     string // "/a/b", for errors
	dir      bool
	children map[string]*node // by foldKey
	size     int64
	open     func() (io.ReadCloser, error)

	// Set by WriteTo.
	short   [11]byte
	lfn     bool
	cluster uint32 // first cluster, 0 for an empty file
	nclus   uint32
}

// New checks opts and returns a Builder holding an empty root folder.
func New(opts Options) (*Builder, error) {
	g, err := layout(opts.Size)
	if err != nil {
		return nil, err
	}
	label, err := volumeLabel(opts.Label)
	if err != nil {
		return nil, err
	}
	return &Builder{
		opts:  opts,
		geo:   g,
		label: label,
		root:  &node{path: "/", dir: true, children: map[string]*node{}},
	}, nil
}

// volumeLabel upper-cases and pads a label to the 11 bytes of a short name.
func volumeLabel(l string) ([11]byte, error) {
	var b [11]byte
	if l == "" {
		copy(b[:], "NO NAME    ")
		return b, nil
	}
	if len(l) > 11 {
		return b, fmt.Errorf("fatfs: label %q is longer than 11 characters", l)
	}
	for i := range b {
		b[i] = ' '
	}
	for i, r := range l {
		c, ok := shortChar(r)
		if !ok && r != ' ' {
			return b, fmt.Errorf("fatfs: label %q: character %q is not allowed", l, r)
		}
		if r == ' ' {
			c = ' '
		}
		b[i] = c
	}
	if l[0] == ' ' {
		return b, fmt.Errorf("fatfs: label %q starts with a space", l)
	}
	return b, nil
}

// splitPath turns "/a/b" (or "a/b") into its components. ".." is refused
// rather than resolved so that a bad path cannot escape a folder.
func splitPath(p string) ([]string, error) {
	var parts []string
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return nil, fmt.Errorf("fatfs: path %q: \"..\" not allowed", p)
		}
		if err := validName(c); err != nil {
			return nil, fmt.Errorf("fatfs: path %q: %w", p, err)
		}
		parts = append(parts, c)
	}
	return parts, nil
}

// mkdirAll returns the folder made of parts, creating what is missing.
func (b *Builder) mkdirAll(p string, parts []string) (*node, error) {
	d := b.root
	for i, c := range parts {
		next, ok := d.children[foldKey(c)]
		if !ok {
			next = &node{name: c, path: "/" + strings.Join(parts[:i+1], "/"), dir: true, children: map[string]*node{}}
			d.children[foldKey(c)] = next
		} else if !next.dir {
			return nil, fmt.Errorf("fatfs: %q: %s is a file", p, next.path)
		} else if next.name != c {
			return nil, fmt.Errorf("fatfs: %q: %s exists with other case (FAT names are case-insensitive)", p, next.path)
		}
		d = next
	}
	return d, nil
}

// Mkdir creates the folder p and any missing parents.
func (b *Builder) Mkdir(p string) error {
	parts, err := splitPath(p)
	if err != nil {
		return err
	}
	_, err = b.mkdirAll(p, parts)
	return err
}

// AddFile adds the file p of size bytes, creating missing parent folders.
// open is called once, by WriteTo, and must yield exactly size bytes.
func (b *Builder) AddFile(p string, size int64, open func() (io.ReadCloser, error)) error {
	parts, err := splitPath(p)
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		return fmt.Errorf("fatfs: %q: the root folder is not a file", p)
	}
	if size < 0 || size > maxFileSize {
		return fmt.Errorf("fatfs: %q: size %d: FAT files hold 0..%d bytes", p, size, int64(maxFileSize))
	}
	if open == nil {
		return fmt.Errorf("fatfs: %q: nil open function", p)
	}
	d, err := b.mkdirAll(p, parts[:len(parts)-1])
	if err != nil {
		return err
	}
	name := parts[len(parts)-1]
	if old, ok := d.children[foldKey(name)]; ok {
		return fmt.Errorf("fatfs: %q: %s: %w", p, old.path, fs.ErrExist)
	}
	d.children[foldKey(name)] = &node{name: name, path: "/" + strings.Join(parts, "/"), size: size, open: open}
	return nil
}

// sorted returns the children of d in output order.
func (d *node) sorted() []*node {
	out := make([]*node, 0, len(d.children))
	for _, c := range d.children {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *node) int { return strings.Compare(a.name, b.name) })
	return out
}

// assignShortNames gives every child of d its short name. Names that fit
// 8.3 as they are come first so that a generated "~N" name never takes
// the short name another entry needs exactly.
func assignShortNames(d *node, kids []*node) error {
	used := map[[11]byte]bool{}
	next := map[[11]byte]int{}
	for pass := 0; pass < 2; pass++ {
		for _, c := range kids {
			_, _, lossy := basis(c.name)
			if lossy != (pass == 1) {
				continue
			}
			s, lfn, err := shortName(c.name, used, next)
			if err != nil {
				return fmt.Errorf("fatfs: %s: %w", d.path, err)
			}
			c.short, c.lfn = s, lfn
			used[s] = true
		}
	}
	return nil
}

// stamp holds the encoded timestamp shared by every entry.
type stamp struct {
	date, time uint16
	tenth      byte
}

// putShort encodes a short directory entry.
func putShort(e []byte, name [11]byte, attr byte, cluster uint32, size uint32, ts stamp) {
	le := binary.LittleEndian
	copy(e[0:11], name[:])
	e[11] = attr
	e[13] = ts.tenth
	le.PutUint16(e[14:], ts.time)
	le.PutUint16(e[16:], ts.date)
	le.PutUint16(e[18:], ts.date)
	le.PutUint16(e[20:], uint16(cluster>>16))
	le.PutUint16(e[22:], ts.time)
	le.PutUint16(e[24:], ts.date)
	le.PutUint16(e[26:], uint16(cluster))
	le.PutUint32(e[28:], size)
}

var (
	dotName    = [11]byte{'.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}
	dotDotName = [11]byte{'.', '.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}
)

// plan is the cluster layout that WriteTo computes.
type plan struct {
	dirs, files []*node // in layout order
	used        uint32  // clusters in use
}

// layoutTree assigns short names and clusters: folders first, root at
// cluster 2, then file data.
func (b *Builder) layoutTree() (*plan, error) {
	cs := uint32(b.geo.clusterSize())
	p := &plan{}
	var walk func(d *node) error
	walk = func(d *node) error {
		kids := d.sorted()
		if err := assignShortNames(d, kids); err != nil {
			return err
		}
		entries := len(kids)
		if d == b.root {
			if b.opts.Label != "" {
				entries++
			}
		} else {
			entries += 2 // "." and ".."
		}
		for _, c := range kids {
			if c.lfn {
				entries += (utf16Len(c.name) + lfnChars - 1) / lfnChars
			}
		}
		if entries > maxDirEntries {
			return fmt.Errorf("fatfs: %s: %d directory entries, FAT allows %d", d.path, entries, maxDirEntries)
		}
		d.nclus = max(1, uint32((entries*dirEntrySize+int(cs)-1)/int(cs)))
		p.dirs = append(p.dirs, d)
		for _, c := range kids {
			if c.dir {
				if err := walk(c); err != nil {
					return err
				}
			} else {
				p.files = append(p.files, c)
			}
		}
		return nil
	}
	if err := walk(b.root); err != nil {
		return nil, err
	}
	next := uint32(2)
	limit := b.geo.clusters + 2
	alloc := func(n *node, count uint32) error {
		if count > limit-next {
			return fmt.Errorf("fatfs: %s does not fit: %d clusters of %d bytes needed, %d of %d left",
				n.path, count, cs, limit-next, b.geo.clusters)
		}
		n.cluster, n.nclus = next, count
		next += count
		return nil
	}
	for _, d := range p.dirs {
		if err := alloc(d, d.nclus); err != nil {
			return nil, err
		}
	}
	for _, f := range p.files {
		count := uint32((f.size + int64(cs) - 1) / int64(cs))
		if count == 0 {
			continue
		}
		if err := alloc(f, count); err != nil {
			return nil, err
		}
	}
	p.used = next - 2
	return p, nil
}

// utf16Len is the number of UTF-16 units of name.
func utf16Len(name string) int {
	n := 0
	for _, r := range name {
		n += utf16.RuneLen(r)
	}
	return n
}

// encodeDir builds the entries of folder d (whose children have clusters).
func (b *Builder) encodeDir(d, parent *node, ts stamp) []byte {
	buf := make([]byte, int64(d.nclus)*b.geo.clusterSize())
	pos := 0
	put := func() []byte { e := buf[pos : pos+dirEntrySize]; pos += dirEntrySize; return e }
	if d == b.root {
		if b.opts.Label != "" {
			putShort(put(), b.label, attrVolumeID, 0, 0, ts)
		}
	} else {
		putShort(put(), dotName, attrDir, d.cluster, 0, ts)
		up := uint32(0) // ".." of a top-level folder points at cluster 0
		if parent != b.root {
			up = parent.cluster
		}
		putShort(put(), dotDotName, attrDir, up, 0, ts)
	}
	for _, c := range d.sorted() {
		if c.lfn {
			pos += copy(buf[pos:], lfnEntries(c.name, c.short))
		}
		if c.dir {
			putShort(put(), c.short, attrDir, c.cluster, 0, ts)
		} else {
			putShort(put(), c.short, attrArchive, c.cluster, uint32(c.size), ts)
		}
	}
	return buf
}

// WriteTo writes the filesystem into w at offset (w is typically the
// whole disk image and offset the partition start): reserved sectors,
// both FATs, every folder and every file. Free clusters are not written,
// so a fresh sparse file stays sparse. Content that does not fit is an
// error naming the first path that does not.
func (b *Builder) WriteTo(w io.WriterAt, offset int64) error {
	if offset < 0 || offset%sectorSize != 0 || offset/sectorSize > 0xffffffff {
		return fmt.Errorf("fatfs: offset %d: must be a multiple of %d below 2 TiB", offset, sectorSize)
	}
	p, err := b.layoutTree()
	if err != nil {
		return err
	}
	g := b.geo
	var ts stamp
	ts.date, ts.time, ts.tenth = fatTime(b.opts.Time)

	// Reserved area: boot sector, FSInfo and their backups, zeros else.
	free := g.clusters - p.used
	nextFree := uint32(0xffffffff)
	if free > 0 {
		nextFree = p.used + 2
	}
	res := make([]byte, reservedSectors*sectorSize)
	boot := b.bootSector(uint32(offset / sectorSize))
	info := fsInfo(free, nextFree)
	copy(res[0:], boot)
	copy(res[fsInfoSector*sectorSize:], info)
	copy(res[backupBoot*sectorSize:], boot)
	copy(res[(backupBoot+fsInfoSector)*sectorSize:], info)
	if _, err := w.WriteAt(res, offset); err != nil {
		return fmt.Errorf("fatfs: writing reserved sectors: %w", err)
	}

	if err := b.writeFATs(w, offset, p); err != nil {
		return err
	}

	dataOff := offset + int64(g.dataStart())*sectorSize
	clusterOff := func(c uint32) int64 { return dataOff + int64(c-2)*g.clusterSize() }
	parents := map[*node]*node{}
	for _, d := range p.dirs {
		for _, c := range d.children {
			parents[c] = d
		}
	}
	for _, d := range p.dirs {
		if _, err := w.WriteAt(b.encodeDir(d, parents[d], ts), clusterOff(d.cluster)); err != nil {
			return fmt.Errorf("fatfs: writing folder %s: %w", d.path, err)
		}
	}
	buf := make([]byte, 1<<20)
	for _, f := range p.files {
		if err := writeFile(w, clusterOff(f.cluster), f, g.clusterSize(), buf); err != nil {
			return err
		}
	}
	return nil
}

// writeFile copies the content of f to off and zeroes the rest of its last
// cluster.
func writeFile(w io.WriterAt, off int64, f *node, cs int64, buf []byte) error {
	rc, err := f.open()
	if err != nil {
		return fmt.Errorf("fatfs: %s: %w", f.path, err)
	}
	defer rc.Close()
	ow := io.NewOffsetWriter(w, off)
	n, err := io.CopyBuffer(ow, io.LimitReader(rc, f.size), buf)
	if err != nil {
		return fmt.Errorf("fatfs: %s: %w", f.path, err)
	}
	if n < f.size {
		return fmt.Errorf("fatfs: %s: content is %d bytes, %d declared", f.path, n, f.size)
	}
	if k, _ := io.ReadFull(rc, buf[:1]); k > 0 {
		return fmt.Errorf("fatfs: %s: content is longer than the %d bytes declared", f.path, f.size)
	}
	if tail := (cs - f.size%cs) % cs; tail > 0 {
		clear(buf[:tail])
		if _, err := ow.Write(buf[:tail]); err != nil {
			return fmt.Errorf("fatfs: %s: %w", f.path, err)
		}
	}
	if err := rc.Close(); err != nil {
		return fmt.Errorf("fatfs: %s: %w", f.path, err)
	}
	return nil
}

// bootSector encodes the FAT32 boot sector (BPB and extended BPB).
func (b *Builder) bootSector(hidden uint32) []byte {
	g := b.geo
	s := make([]byte, sectorSize)
	le := binary.LittleEndian
	copy(s[0:], []byte{0xeb, 0x58, 0x90})
	// "MSWIN4.1" is the OEM name Microsoft recommends for the widest
	// compatibility; some old drivers look at it.
	copy(s[3:], "MSWIN4.1")
	le.PutUint16(s[11:], sectorSize)
	s[13] = byte(g.spc)
	le.PutUint16(s[14:], reservedSectors)
	s[16] = numFATs
	// 17: root entries, 19: 16-bit total sectors, 22: 16-bit FAT size: 0.
	s[21] = 0xf8
	le.PutUint16(s[24:], 32) // sectors per track and heads, as mkfs.fat
	le.PutUint16(s[26:], 64) // uses for images; nothing reads them
	le.PutUint32(s[28:], hidden)
	le.PutUint32(s[32:], g.totalSectors)
	le.PutUint32(s[36:], g.fatSectors)
	// 40: flags 0 (FATs mirrored), 42: version 0.0.
	le.PutUint32(s[44:], 2) // root cluster
	le.PutUint16(s[48:], fsInfoSector)
	le.PutUint16(s[50:], backupBoot)
	s[64] = 0x80 // drive number
	s[66] = 0x29 // extended boot signature: ID, label and type follow
	le.PutUint32(s[67:], b.opts.VolumeID)
	copy(s[71:82], b.label[:])
	copy(s[82:90], "FAT32   ")
	// Boot code at the jump target 0x5A: not a boot disk, so ask the BIOS
	// for the next device (int 18h) and halt if it returns.
	copy(s[0x5a:], []byte{0xcd, 0x18, 0xf4, 0xeb, 0xfd})
	s[510], s[511] = 0x55, 0xaa
	return s
}

// fsInfo encodes the FSInfo sector.
func fsInfo(free, nextFree uint32) []byte {
	s := make([]byte, sectorSize)
	le := binary.LittleEndian
	le.PutUint32(s[0:], 0x41615252)
	le.PutUint32(s[484:], 0x61417272)
	le.PutUint32(s[488:], free)
	le.PutUint32(s[492:], nextFree)
	le.PutUint32(s[508:], 0xaa550000)
	return s
}

// writeFATs writes both FATs in chunks, so that memory does not grow with
// the filesystem size. Clusters 2..used+1 are allocated back to back, each
// folder and file a contiguous run ending in an end-of-chain mark.
func (b *Builder) writeFATs(w io.WriterAt, offset int64, p *plan) error {
	g := b.geo
	last := map[uint32]bool{} // last cluster of each run
	for _, n := range append(slices.Clone(p.dirs), p.files...) {
		if n.nclus > 0 && n.cluster != 0 {
			last[n.cluster+n.nclus-1] = true
		}
	}
	const chunkEntries = 64 << 10
	chunk := make([]byte, chunkEntries*4)
	entries := uint64(g.fatSectors) * sectorSize / 4
	le := binary.LittleEndian
	for start := uint64(0); start < entries; start += chunkEntries {
		n := min(chunkEntries, entries-start)
		buf := chunk[:n*4]
		clear(buf)
		// Entries past the last allocated cluster stay zero (free).
		for i := uint64(0); i < n && start+i < uint64(p.used)+2; i++ {
			c := uint32(start + i)
			var v uint32
			switch {
			case c == 0:
				v = fatMedia
			case c == 1:
				v = fatEOC // clean-unmount and no-I/O-error bits set
			case last[c]:
				v = fatEOC
			default:
				v = c + 1
			}
			le.PutUint32(buf[i*4:], v)
		}
		for f := uint64(0); f < numFATs; f++ {
			off := offset + int64(reservedSectors+f*uint64(g.fatSectors))*sectorSize + int64(start*4)
			if _, err := w.WriteAt(buf, off); err != nil {
				return fmt.Errorf("fatfs: writing FAT %d: %w", f+1, err)
			}
		}
	}
	return nil
}
