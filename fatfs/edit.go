package fatfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"
)

// Editing an existing filesystem in place (the updater changes an
// unmounted ESP). Each operation writes file data first, then the FAT, then
// the folder entries, then frees what it replaced: a crash in between
// leaves at worst lost clusters, never an entry pointing at unwritten data.
// The FSInfo free count and next-free hint are kept up to date, so
// fsck.vfat stays quiet. New entries always get a long name when the name
// is not exactly its own upper-case short name, as the Builder does.

func (f *FS) writable(op, name string) error {
	if f.w == nil {
		return &fs.PathError{Op: op, Path: name, Err: errNotWritable}
	}
	return nil
}

// writeFAT sets FAT entry c to v in every FAT in use, keeping the top
// four reserved bits as they are.
func (f *FS) writeFAT(c, v uint32) error {
	old, err := f.readFATRaw(c)
	if err != nil {
		return err
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], old&^fatMask|v&fatMask)
	for n := range int(f.nfats) {
		if f.activeFAT >= 0 && n != f.activeFAT {
			continue
		}
		if _, err := f.w.WriteAt(b[:], f.fatOff(n, c)); err != nil {
			return fmt.Errorf("fatfs: writing FAT %d entry %d: %w", n+1, c, err)
		}
	}
	f.cacheOff = -1
	return nil
}

// readFATRaw returns FAT entry c with its reserved bits.
func (f *FS) readFATRaw(c uint32) (uint32, error) {
	var b [4]byte
	if _, err := f.r.ReadAt(b[:], f.fatOff(max(f.activeFAT, 0), c)); err != nil {
		return 0, fmt.Errorf("fatfs: reading FAT entry %d: %w", c, err)
	}
	return binary.LittleEndian.Uint32(b[:]), nil
}

// fsInfo reads the FSInfo sector; ok is false when there is none or its
// signatures are wrong (then it is left alone).
func (f *FS) readInfo() (s []byte, ok bool) {
	if f.infoSector == 0 {
		return nil, false
	}
	s = make([]byte, f.bps)
	if _, err := f.r.ReadAt(s, f.off+int64(f.infoSector)*f.bps); err != nil {
		return nil, false
	}
	le := binary.LittleEndian
	if le.Uint32(s[0:]) != 0x41615252 || le.Uint32(s[484:]) != 0x61417272 || le.Uint32(s[508:]) != 0xaa550000 {
		return nil, false
	}
	return s, true
}

// updateInfo adds delta to the FSInfo free count (unless it is unknown)
// and sets the next-free hint.
func (f *FS) updateInfo(delta int64, next uint32) error {
	s, ok := f.readInfo()
	if !ok {
		return nil
	}
	le := binary.LittleEndian
	if free := le.Uint32(s[488:]); free != 0xffffffff {
		n := int64(free) + delta
		if n < 0 || n > int64(f.clusters) {
			n = 0xffffffff // it was wrong: say unknown rather than lie
		}
		le.PutUint32(s[488:], uint32(n))
	}
	if next >= 2 && next <= f.clusters+1 {
		le.PutUint32(s[492:], next)
	}
	if _, err := f.w.WriteAt(s, f.off+int64(f.infoSector)*f.bps); err != nil {
		return fmt.Errorf("fatfs: writing FSInfo: %w", err)
	}
	return nil
}

// alloc finds n free clusters, one contiguous run if there is one, else
// the first free ones from the next-free hint on. It does not mark them.
func (f *FS) alloc(n uint32) ([]extent, error) {
	if n == 0 {
		return nil, nil
	}
	start := uint32(2)
	if s, ok := f.readInfo(); ok {
		if h := binary.LittleEndian.Uint32(s[492:]); h >= 2 && h <= f.clusters+1 {
			start = h
		}
	}
	var (
		frags []extent // free runs in scan order, for the fragmented case
		got   uint32
	)
	run := extent{}
	for i := range f.clusters {
		c := 2 + (start-2+i)%f.clusters
		if c == 2 && i > 0 {
			run = extent{} // wrapped around: runs do not continue across
		}
		v, err := f.readFAT(c)
		if err != nil {
			return nil, err
		}
		if v != 0 {
			run = extent{}
			continue
		}
		if run.n == 0 {
			run.first = c
		}
		run.n++
		if run.n == n {
			return []extent{run}, nil
		}
		if got < n {
			if len(frags) > 0 && frags[len(frags)-1].first+frags[len(frags)-1].n == c {
				frags[len(frags)-1].n++
			} else {
				frags = append(frags, extent{c, 1})
			}
			got++
		}
	}
	if got < n {
		return nil, fmt.Errorf("fatfs: %d clusters of %d bytes needed, %d free: %w", n, f.cs, got, errNoSpace)
	}
	return frags, nil
}

var (
	errNoSpace     = errors.New("no space left on the filesystem")
	errNotWritable = errors.New("fatfs: filesystem was not opened over an io.WriterAt")
)

// link writes the FAT chain through ext, ending it.
func (f *FS) link(ext []extent) error {
	for i, e := range ext {
		for k := range e.n {
			c := e.first + k
			next := uint32(fatEOC)
			switch {
			case k+1 < e.n:
				next = c + 1
			case i+1 < len(ext):
				next = ext[i+1].first
			}
			if err := f.writeFAT(c, next); err != nil {
				return err
			}
		}
	}
	return nil
}

// free releases the chain of n clusters from start (n == 0: to its end).
func (f *FS) free(start, n uint32, what string) (uint32, error) {
	if start == 0 {
		return 0, nil
	}
	var ext []extent
	var err error
	if n > 0 {
		ext, err = f.chain(start, n, 0, what)
	} else {
		ext, err = f.chain(start, 0, f.clusters, what)
	}
	if err != nil {
		return 0, err
	}
	var count uint32
	for _, e := range ext {
		for k := range e.n {
			if err := f.writeFAT(e.first+k, 0); err != nil {
				return count, err
			}
			count++
		}
	}
	return count, nil
}

func extentClusters(ext []extent) uint32 {
	var n uint32
	for _, e := range ext {
		n += e.n
	}
	return n
}

// writeExtents writes p at byte off of the data in ext.
func (f *FS) writeExtents(ext []extent, p []byte, off int64) error {
	left, err := f.spanExtents(ext, p, off, func(b []byte, at int64) error {
		_, err := f.w.WriteAt(b, at)
		return err
	})
	if err != nil {
		return err
	}
	if left > 0 {
		return errors.New("write past the end of the chain")
	}
	return nil
}

// putData writes data into fresh clusters, zero-padded to whole clusters,
// and links them.
func (f *FS) putData(data []byte, what string) ([]extent, error) {
	n := uint32((int64(len(data)) + f.cs - 1) / f.cs)
	ext, err := f.alloc(n)
	if err != nil {
		return nil, fmt.Errorf("fatfs: %s: %w", what, err)
	}
	if n == 0 {
		return nil, nil
	}
	buf := data
	if pad := int64(n)*f.cs - int64(len(data)); pad > 0 {
		buf = make([]byte, int64(n)*f.cs)
		copy(buf, data)
	}
	if err := f.writeExtents(ext, buf, 0); err != nil {
		return nil, fmt.Errorf("fatfs: %s: %w", what, err)
	}
	if err := f.link(ext); err != nil {
		return nil, err
	}
	return ext, nil
}

// nextHint is the next-free hint after allocating ext.
func nextHint(ext []extent) uint32 {
	if len(ext) == 0 {
		return 0
	}
	l := ext[len(ext)-1]
	return l.first + l.n
}

// parentDir resolves the folder that holds name and the last element.
func (f *FS) parentDir(op, name string) (*dir, string, error) {
	if !fs.ValidPath(name) || name == "." {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	parent, base := path.Split(name)
	parent = strings.TrimSuffix(parent, "/")
	if parent == "" {
		parent = "."
	}
	if err := validName(base); err != nil {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: err}
	}
	d, e, err := f.lookup(op, parent)
	if err != nil {
		return nil, "", err
	}
	if e != nil {
		if !e.isDir() {
			return nil, "", &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("%s is not a folder", parent)}
		}
		if d, err = f.subdir(e, "/"+parent); err != nil {
			return nil, "", &fs.PathError{Op: op, Path: name, Err: err}
		}
	}
	return d, base, nil
}

// writeSlots writes slots [from, to) of d back to disk.
func (f *FS) writeSlots(d *dir, from, to int) error {
	if err := f.writeExtents(d.ext, d.data[from*dirEntrySize:to*dirEntrySize], int64(from)*dirEntrySize); err != nil {
		return fmt.Errorf("fatfs: writing folder %s: %w", d.path, err)
	}
	return nil
}

// usedShorts returns the short names present in d (label included).
func (d *dir) usedShorts() map[[11]byte]bool {
	used := map[[11]byte]bool{}
	for i := 0; i < d.end; i++ {
		e := d.data[i*dirEntrySize:]
		if e[0] == 0xe5 || e[11]&0x3f == attrLFN {
			continue
		}
		var s [11]byte
		copy(s[:], e[:11])
		used[s] = true
	}
	return used
}

// addEntry adds name to d with the short-entry fields of tmpl (attributes,
// times, cluster, size; bytes 11..31), growing the folder if needed.
func (f *FS) addEntry(d *dir, name string, tmpl []byte) error {
	short, lfn, err := shortName(name, d.usedShorts(), nil)
	if err != nil {
		return fmt.Errorf("fatfs: %s: %w", d.path, err)
	}
	var ents []byte
	if lfn {
		ents = lfnEntries(name, short)
	}
	se := make([]byte, dirEntrySize)
	copy(se[11:], tmpl[11:dirEntrySize])
	copy(se, short[:])
	se[12] = 0 // no NT case bits: the LFN carries the case
	ents = append(ents, se...)
	need := len(ents) / dirEntrySize

	// A run of deleted slots, else the slots after the last entry.
	at, run := -1, 0
	for i := 0; i < d.end; i++ {
		if d.data[i*dirEntrySize] == 0xe5 {
			if run++; run == need {
				at = i - need + 1
				break
			}
		} else {
			run = 0
		}
	}
	slots := len(d.data) / dirEntrySize
	if at < 0 {
		at = d.end
		// Keep a free slot after the new entries only if the folder
		// has room; the folder's end is a terminator too.
		for at+need > slots {
			if err := f.growDir(d); err != nil {
				return err
			}
			slots = len(d.data) / dirEntrySize
		}
	}
	copy(d.data[at*dirEntrySize:], ents)
	to := at + need
	if at >= d.end {
		// Everything after the last entry must read as free: zero the
		// slots from the new end on, up to the next terminator.
		for i := to; i < slots && d.data[i*dirEntrySize] != 0; i++ {
			clear(d.data[i*dirEntrySize : (i+1)*dirEntrySize])
			to = i + 1
		}
		d.end = at + need
	}
	return f.writeSlots(d, at, to)
}

// growDir adds one zeroed cluster to the folder d.
func (f *FS) growDir(d *dir) error {
	if int64(len(d.data))+f.cs > maxDirEntries*dirEntrySize {
		return fmt.Errorf("fatfs: folder %s is full (%d entries)", d.path, maxDirEntries)
	}
	ext, err := f.alloc(1)
	if err != nil {
		return fmt.Errorf("fatfs: growing folder %s: %w", d.path, err)
	}
	c := ext[0].first
	if _, err := f.w.WriteAt(make([]byte, f.cs), f.clusterOff(c)); err != nil {
		return fmt.Errorf("fatfs: growing folder %s: %w", d.path, err)
	}
	if err := f.writeFAT(c, fatEOC); err != nil {
		return err
	}
	last := d.ext[len(d.ext)-1]
	if err := f.writeFAT(last.first+last.n-1, c); err != nil {
		return err
	}
	if last.first+last.n == c {
		d.ext[len(d.ext)-1].n++
	} else {
		d.ext = append(d.ext, extent{c, 1})
	}
	d.data = append(d.data, make([]byte, f.cs)...)
	return f.updateInfo(-1, c+1)
}

// deleteEntry marks the slots of e as deleted.
func (f *FS) deleteEntry(d *dir, e *entry) error {
	for i := e.first; i < e.first+e.slots; i++ {
		d.data[i*dirEntrySize] = 0xe5
	}
	return f.writeSlots(d, e.first, e.first+e.slots)
}

// shortEntry returns the raw short entry of e in d.
func (d *dir) shortEntry(e *entry) []byte {
	i := e.first + e.slots - 1
	return d.data[i*dirEntrySize : (i+1)*dirEntrySize]
}

// newShort builds the fields of a short entry (everything but the name).
func newShort(attr byte, cluster uint32, size uint32, mtime time.Time) []byte {
	e := make([]byte, dirEntrySize)
	var ts stamp
	ts.date, ts.time, ts.tenth = fatTime(mtime)
	putShort(e, [11]byte{}, attr, cluster, size, ts)
	return e
}

// WriteFile creates the file name, or replaces its content, with data.
// The parent folder must exist. mtime is the new modification time.
func (f *FS) WriteFile(name string, data []byte, mtime time.Time) error {
	if err := f.writable("writefile", name); err != nil {
		return err
	}
	if int64(len(data)) > maxFileSize {
		return &fs.PathError{Op: "writefile", Path: name, Err: errors.New("larger than 4 GiB - 1")}
	}
	d, base, err := f.parentDir("writefile", name)
	if err != nil {
		return err
	}
	old, exists := d.find(base)
	if exists && old.isDir() {
		return &fs.PathError{Op: "writefile", Path: name, Err: errors.New("is a folder")}
	}
	ext, err := f.putData(data, name)
	if err != nil {
		return err
	}
	var cluster uint32
	if len(ext) > 0 {
		cluster = ext[0].first
	}
	n := extentClusters(ext)
	if exists {
		// Point the existing entry at the new data, keeping its name and
		// creation time, then free the old data.
		se := d.shortEntry(old)
		tmpl := newShort(se[11]|attrArchive, cluster, uint32(len(data)), mtime)
		copy(se[11:], tmpl[11:12])
		copy(se[18:], tmpl[18:])
		if err := f.writeSlots(d, old.first+old.slots-1, old.first+old.slots); err != nil {
			return err
		}
		freed, err := f.free(old.cluster, uint32((int64(old.size)+f.cs-1)/f.cs), name)
		if err != nil {
			return err
		}
		return f.updateInfo(int64(freed)-int64(n), nextHint(ext))
	}
	if err := f.addEntry(d, base, newShort(attrArchive, cluster, uint32(len(data)), mtime)); err != nil {
		return err
	}
	return f.updateInfo(-int64(n), nextHint(ext))
}

// Mkdir creates the folder name; its parent must exist.
func (f *FS) Mkdir(name string, mtime time.Time) error {
	if err := f.writable("mkdir", name); err != nil {
		return err
	}
	d, base, err := f.parentDir("mkdir", name)
	if err != nil {
		return err
	}
	if _, exists := d.find(base); exists {
		return &fs.PathError{Op: "mkdir", Path: name, Err: fs.ErrExist}
	}
	ext, err := f.alloc(1)
	if err != nil {
		return fmt.Errorf("fatfs: %s: %w", name, err)
	}
	c := ext[0].first
	buf := make([]byte, f.cs)
	var ts stamp
	ts.date, ts.time, ts.tenth = fatTime(mtime)
	up := d.cluster
	if up == f.root {
		up = 0
	}
	putShort(buf[0:], dotName, attrDir, c, 0, ts)
	putShort(buf[dirEntrySize:], dotDotName, attrDir, up, 0, ts)
	if _, err := f.w.WriteAt(buf, f.clusterOff(c)); err != nil {
		return fmt.Errorf("fatfs: %s: %w", name, err)
	}
	if err := f.writeFAT(c, fatEOC); err != nil {
		return err
	}
	if err := f.addEntry(d, base, newShort(attrDir, c, 0, mtime)); err != nil {
		return err
	}
	return f.updateInfo(-1, c+1)
}

// Remove removes the file or empty folder name.
func (f *FS) Remove(name string) error {
	if err := f.writable("remove", name); err != nil {
		return err
	}
	d, base, err := f.parentDir("remove", name)
	if err != nil {
		return err
	}
	e, ok := d.find(base)
	if !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	want := uint32((int64(e.size) + f.cs - 1) / f.cs)
	if e.isDir() {
		sub, err := f.subdir(e, "/"+name)
		if err != nil {
			return err
		}
		if len(sub.entries) > 0 {
			return &fs.PathError{Op: "remove", Path: name, Err: errors.New("folder not empty")}
		}
		want = 0
	}
	if err := f.deleteEntry(d, e); err != nil {
		return err
	}
	freed, err := f.free(e.cluster, want, name)
	if err != nil {
		return err
	}
	return f.updateInfo(int64(freed), 0)
}

// Rename renames (or moves) oldname to newname. An existing file at
// newname is replaced, as with rename(2); an existing folder is an error.
// A folder cannot move into itself.
func (f *FS) Rename(oldname, newname string) error {
	if err := f.writable("rename", oldname); err != nil {
		return err
	}
	od, obase, err := f.parentDir("rename", oldname)
	if err != nil {
		return err
	}
	oe, ok := od.find(obase)
	if !ok {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	nd, nbase, err := f.parentDir("rename", newname)
	if err != nil {
		return err
	}
	if oe.isDir() {
		// The new parent must not be the folder itself or inside it.
		if err := f.insideOf(nd, oe.cluster); err != nil {
			return &fs.PathError{Op: "rename", Path: newname, Err: err}
		}
	}
	same := nd.cluster == od.cluster
	if same {
		nd = od
	}
	if te, exists := nd.find(nbase); exists && !(same && te.first == oe.first) {
		if te.isDir() || oe.isDir() {
			return &fs.PathError{Op: "rename", Path: newname, Err: fs.ErrExist}
		}
		if err := f.Remove(newname); err != nil {
			return err
		}
		// Removal changed the folders on disk: read them again.
		return f.Rename(oldname, newname)
	}
	tmpl := append([]byte{}, od.shortEntry(oe)...)
	// Delete the old entry first so that a rename within one folder can
	// reuse its slots and its short name.
	if err := f.deleteEntry(od, oe); err != nil {
		return err
	}
	if err := f.addEntry(nd, nbase, tmpl); err != nil {
		return err
	}
	if oe.isDir() && !same {
		// Point ".." of the moved folder at its new parent.
		up := nd.cluster
		if up == f.root {
			up = 0
		}
		sub, err := f.readDir(oe.cluster, "/"+newname)
		if err != nil {
			return err
		}
		if sub.data[dirEntrySize] == '.' && sub.data[dirEntrySize+1] == '.' {
			le := binary.LittleEndian
			le.PutUint16(sub.data[dirEntrySize+20:], uint16(up>>16))
			le.PutUint16(sub.data[dirEntrySize+26:], uint16(up))
			if err := f.writeSlots(sub, 1, 2); err != nil {
				return err
			}
		}
	}
	return nil
}

// insideOf fails if folder d is cluster c or below it, following "..".
func (f *FS) insideOf(d *dir, c uint32) error {
	for depth := 0; d.cluster != f.root; depth++ {
		if d.cluster == c {
			return errors.New("cannot move a folder into itself")
		}
		if depth > 1000 || len(d.data) < 2*dirEntrySize {
			return errors.New("folder tree too deep or broken")
		}
		e := d.data[dirEntrySize:]
		up := uint32(binary.LittleEndian.Uint16(e[20:]))<<16 | uint32(binary.LittleEndian.Uint16(e[26:]))
		if up == 0 {
			return nil
		}
		var err error
		if d, err = f.readDir(up, ".."); err != nil {
			return err
		}
	}
	return nil
}
