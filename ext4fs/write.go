package ext4fs

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// plan is a complete layout: every inode numbered, every block allocated.
// Inodes and blocks are both handed out linearly, so "used" is always a
// prefix of each group's inodes and of the data area.
type plan struct {
	opts    Options
	g       *geometry
	byIno   []*node // index = inode number; nil for unused reserved inodes
	lastIno uint32
	journal *node
	parents []*node // index = inode number; parent of each directory
	states  []groupState
	free    uint64
}

// allocator hands out data blocks in ascending order, skipping each
// group's metadata, so files are contiguous except across group
// boundaries.
type allocator struct {
	g     *geometry
	group uint32
	next  uint32
}

func (a *allocator) alloc(n uint32) ([]run, bool) {
	var runs []run
	for n > 0 {
		if a.group >= a.g.groups {
			return nil, false
		}
		a.next = max(a.next, a.g.dataStart(a.group))
		end := a.g.groupEnd(a.group)
		if a.next >= end {
			a.group++
			continue
		}
		k := min(n, end-a.next)
		runs = append(runs, run{a.next, k})
		a.next += k
		n -= k
	}
	return runs, true
}

// allocNode gives n its data blocks and, if needed, extent tree leaves.
func (a *allocator) allocNode(n *node, blocks uint64) error {
	if blocks > 1<<32-1 {
		return fmt.Errorf("ext4fs: %s: %w (%d blocks)", n.path, ErrNoSpace, blocks)
	}
	runs, ok := a.alloc(uint32(blocks))
	if !ok {
		return fmt.Errorf("ext4fs: %s does not fit: %w", n.path, ErrNoSpace)
	}
	n.data = runs
	nl := leafCount(len(n.extents()), a.g.bs)
	if nl > inodeExtents {
		return fmt.Errorf("ext4fs: %s: %d extents need a deeper extent tree than supported", n.path, len(n.extents()))
	}
	for range nl {
		r, ok := a.alloc(1)
		if !ok {
			return fmt.Errorf("ext4fs: %s does not fit: %w", n.path, ErrNoSpace)
		}
		n.leaves = append(n.leaves, r[0].start)
	}
	return nil
}

// allocXblock gives n an attribute block: the block of an earlier inode with
// the same attributes if it has references left, else a new one after n's
// data.
func (a *allocator) allocXblock(n *node, shared map[string]*xblock) error {
	data := encodeXblock(n.xblock, a.g.bs)
	key := string(data)
	if xb := shared[key]; xb != nil && xb.refs < xattrRefMax {
		xb.refs++
		n.xb = xb
		return nil
	}
	r, ok := a.alloc(1)
	if !ok {
		return fmt.Errorf("ext4fs: %s: attribute block does not fit: %w", n.path, ErrNoSpace)
	}
	n.xb = &xblock{blk: r[0].start, data: data, refs: 1, owner: n}
	shared[key] = n.xb
	return nil
}

// plan numbers the inodes and allocates every block. It does not modify
// the tree beyond the plan fields of its nodes, so it can run again after
// more content is added.
func (f *FS) plan() (*plan, error) {
	for _, n := range f.all {
		n.ino, n.names, n.nsub, n.data, n.leaves, n.xb = 0, nil, 0, nil, nil, nil
	}
	p := &plan{opts: f.opts}
	// Number inodes: root and lost+found have fixed numbers; then each
	// directory's children in name order get consecutive numbers before
	// the subdirectories are visited, so a directory's inodes sit
	// together in the inode table.
	p.byIno = make([]*node, firstIno+1, firstIno+1+len(f.all))
	p.parents = make([]*node, firstIno+1, firstIno+1+len(f.all))
	f.root.ino, f.lpf.ino = rootIno, lostFoundIno
	p.byIno[rootIno], p.byIno[lostFoundIno] = f.root, f.lpf
	p.parents[rootIno], p.parents[lostFoundIno] = f.root, f.root
	queue := []*node{f.root}
	for len(queue) > 0 {
		d := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		d.names = make([]string, 0, len(d.children))
		for name := range d.children {
			d.names = append(d.names, name)
		}
		slices.Sort(d.names)
		var subdirs []*node
		for _, name := range d.names {
			c := d.children[name]
			if c.ino == 0 {
				c.ino = uint32(len(p.byIno))
				p.byIno = append(p.byIno, c)
				p.parents = append(p.parents, d)
			}
			if c.kind == kindDir {
				d.nsub++
				subdirs = append(subdirs, c)
			}
		}
		// Depth first, in name order: push in reverse.
		for i := len(subdirs) - 1; i >= 0; i-- {
			queue = append(queue, subdirs[i])
		}
	}
	if uint64(len(p.byIno)-1) > 1<<32-1 {
		return nil, fmt.Errorf("ext4fs: too many inodes")
	}
	p.lastIno = uint32(len(p.byIno) - 1)

	want := max(uint64(f.opts.Size/int64(f.opts.InodeRatio)), uint64(f.opts.MinInodes), uint64(p.lastIno))
	g, err := newGeometry(f.opts.Size, f.bs, want)
	if err != nil {
		return nil, err
	}
	p.g = g

	a := &allocator{g: g}
	if f.opts.JournalBlocks > 0 {
		j := &node{kind: kindFile, perm: 0o600, nlink: 1, path: "journal",
			size: int64(f.opts.JournalBlocks) * int64(f.bs), ino: journalIno}
		if err := a.allocNode(j, uint64(f.opts.JournalBlocks)); err != nil {
			return nil, err
		}
		p.journal = j
		p.byIno[journalIno] = j
	}
	// Attribute blocks by content: inodes with the same block attributes
	// share one, up to the kernel's reference limit.
	shared := map[string]*xblock{}
	for ino := uint32(rootIno); ino <= p.lastIno; ino++ {
		n := p.byIno[ino]
		if n == nil || ino == journalIno {
			continue
		}
		var blocks uint64
		switch n.kind {
		case kindDir:
			names, _ := n.dirEntries(p.parents[ino])
			blocks = uint64(max(dirBlockCount(names, f.bs), n.minBlocks))
		case kindFile:
			blocks = uint64((n.size + int64(f.bs) - 1) / int64(f.bs))
		case kindSymlink:
			if len(n.target) > fastSymlinkMax {
				blocks = 1
			}
		}
		if blocks > 0 {
			if err := a.allocNode(n, blocks); err != nil {
				return nil, err
			}
		}
		if len(n.xblock) > 0 {
			if err := a.allocXblock(n, shared); err != nil {
				return nil, err
			}
		}
	}

	// Group descriptors follow from the linear allocation.
	p.states = make([]groupState, g.groups)
	for i := range g.groups {
		s := &p.states[i]
		dataUsed := uint32(0)
		switch {
		case i < a.group:
			dataUsed = g.groupEnd(i) - g.dataStart(i)
		case i == a.group && a.next > g.dataStart(i):
			dataUsed = a.next - g.dataStart(i)
		}
		s.freeBlocks = g.groupBlocks(i) - g.overhead(i) - dataUsed
		p.free += uint64(s.freeBlocks)
		first := uint64(i)*uint64(g.ipg) + 1
		used := uint32(0)
		if uint64(p.lastIno) >= first {
			used = uint32(min(uint64(g.ipg), uint64(p.lastIno)-first+1))
		}
		s.freeInodes = g.ipg - used
		s.itUnused = g.ipg - used
		for ino := first; ino < first+uint64(used); ino++ {
			if n := p.byIno[ino]; n != nil && n.kind == kindDir {
				s.usedDirs++
			}
		}
		if used == 0 {
			// Neither the inode bitmap nor the inode table is read; the
			// kernel zeroes the table lazily after a writable mount.
			s.flags |= bgInodeUninit
		} else {
			s.flags |= bgInodeZeroed
		}
		// e2fsck insists that the last group's block bitmap is
		// initialised.
		if dataUsed == 0 && i != g.groups-1 {
			s.flags |= bgBlockUninit
		}
	}
	return p, nil
}

func (p *plan) stats() Stats {
	s := Stats{
		BlockSize:     p.g.bs,
		Blocks:        uint64(p.g.blocks),
		FreeBlocks:    p.free,
		Inodes:        uint64(p.g.ipg) * uint64(p.g.groups),
		FreeInodes:    uint64(p.g.ipg)*uint64(p.g.groups) - uint64(p.lastIno),
		Groups:        int(p.g.groups),
		JournalBlocks: p.opts.JournalBlocks,
	}
	for _, n := range p.byIno {
		if n != nil && n.kind == kindFile && n != p.journal {
			s.DataBytes += n.size
		}
	}
	return s
}

// ErrNoSpace is wrapped by the error WriteTo and Stats return when the
// content does not fit in the filesystem.
var ErrNoSpace = errors.New("no space left in filesystem")

// WriteTo writes the filesystem to dst at offset. It writes every block of
// metadata the filesystem uses (superblocks, descriptors, initialised
// bitmaps and inode tables, directories, extent blocks, the journal) and
// all file data, padded to whole blocks; blocks that are free, and the
// bitmaps and inode tables of groups marked uninitialised, are not written,
// so dst may hold stale data there. dst should be at least Options.Size
// bytes past offset (for a file, truncate it first). If the content does
// not fit, nothing is written and the error names the first path that did
// not fit.
func (f *FS) WriteTo(dst io.WriterAt, offset int64) error {
	p, err := f.plan()
	if err != nil {
		return err
	}
	g := p.g
	w := newBlockWriter(dst, offset, g.bs)

	gdt := g.buildGDT(p.states, p.opts.UUID)
	itable := make([]byte, int(g.itBlocks)*g.bs)
	for i := range g.groups {
		st := p.states[i]
		if g.hasSuper(i) {
			sb := p.superblock(i, p.free)
			blk := make([]byte, g.bs)
			if i == 0 && g.bs > 1024 {
				copy(blk[1024:], sb) // the first 1024 bytes are zeroed
			} else {
				copy(blk, sb)
			}
			if i == 0 && g.bs == 1024 {
				w.write(0, make([]byte, 1024)) // boot block
			}
			w.write(g.groupStart(i), blk)
			w.write(g.groupStart(i)+1, gdt)
		}
		if st.flags&bgBlockUninit == 0 {
			w.write(g.blockBitmap(i), p.blockBitmap(i))
		}
		if st.flags&bgInodeUninit == 0 {
			w.write(g.inodeBitmap(i), p.inodeBitmap(i))
			clear(itable)
			first := i*g.ipg + 1
			for j := range g.ipg - st.itUnused {
				if n := p.byIno[first+j]; n != nil {
					n.encodeInode(itable[int(j)*inodeSize:], g.bs, p.opts.Time)
				}
			}
			w.write(g.inodeTable(i), itable)
		}
	}

	if j := p.journal; j != nil {
		first := true
		for _, r := range j.data {
			blk := r.start
			if first {
				w.write(blk, p.journalSuperblock())
				blk++
				first = false
			}
			w.zero(blk, r.start+r.len-blk)
		}
		p.writeLeaves(w, j)
	}

	for ino := uint32(rootIno); ino <= p.lastIno; ino++ {
		n := p.byIno[ino]
		if n == nil || n == p.journal {
			continue
		}
		switch n.kind {
		case kindDir:
			names, nodes := n.dirEntries(p.parents[ino])
			b := buildDir(names, nodes, g.bs, uint32(n.usedBlocks())-uint32(len(n.leaves)))
			for _, r := range n.data {
				w.write(r.start, b[:int(r.len)*g.bs])
				b = b[int(r.len)*g.bs:]
			}
		case kindSymlink:
			if len(n.data) > 0 {
				b := make([]byte, g.bs)
				copy(b, n.target)
				w.write(n.data[0].start, b)
			}
		case kindFile:
			if err := w.copyFile(n); err != nil {
				return err
			}
		}
		p.writeLeaves(w, n)
		if n.xb != nil && n.xb.owner == n {
			w.write(n.xb.blk, n.xb.bytes())
		}
		if w.err != nil {
			return w.err
		}
	}
	return w.flush()
}

func (p *plan) writeLeaves(w *blockWriter, n *node) {
	for i, blk := range n.leaves {
		w.write(blk, n.leafBlock(i, p.g.bs))
	}
}

// blockBitmap encodes group i's block bitmap: metadata, then the used
// prefix of the data area; bits past the end of a short last group are set
// as e2fsck expects.
func (p *plan) blockBitmap(i uint32) []byte {
	g := p.g
	b := make([]byte, g.bs)
	used := g.overhead(i) + (g.groupBlocks(i) - g.overhead(i) - p.states[i].freeBlocks)
	setBits(b, 0, used)
	setBits(b, g.groupBlocks(i), uint32(8*g.bs))
	return b
}

// inodeBitmap encodes group i's inode bitmap, padding set past ipg.
func (p *plan) inodeBitmap(i uint32) []byte {
	g := p.g
	b := make([]byte, g.bs)
	setBits(b, 0, g.ipg-p.states[i].freeInodes)
	setBits(b, g.ipg, uint32(8*g.bs))
	return b
}

func setBits(b []byte, from, to uint32) {
	for ; from < to && from%8 != 0; from++ {
		b[from/8] |= 1 << (from % 8)
	}
	for ; from+8 <= to; from += 8 {
		b[from/8] = 0xFF
	}
	for ; from < to; from++ {
		b[from/8] |= 1 << (from % 8)
	}
}

// blockWriter coalesces writes to consecutive blocks into large WriteAt
// calls: small files and per-group metadata are mostly adjacent.
type blockWriter struct {
	dst   io.WriterAt
	base  int64
	bs    int
	buf   []byte
	start int64 // byte offset in the filesystem of buf[0]
	err   error
}

const writeBuffer = 4 << 20

func newBlockWriter(dst io.WriterAt, base int64, bs int) *blockWriter {
	return &blockWriter{dst: dst, base: base, bs: bs, buf: make([]byte, 0, writeBuffer)}
}

func (w *blockWriter) flush() error {
	if w.err == nil && len(w.buf) > 0 {
		if _, err := w.dst.WriteAt(w.buf, w.base+w.start); err != nil {
			w.err = fmt.Errorf("ext4fs: write at %d: %w", w.base+w.start, err)
		}
	}
	w.buf = w.buf[:0]
	return w.err
}

// space returns n bytes of buffer for filesystem offset off (n at most the
// buffer size), flushing first unless off continues the buffered data.
func (w *blockWriter) space(off int64, n int) []byte {
	if len(w.buf) == 0 || off != w.start+int64(len(w.buf)) || len(w.buf)+n > cap(w.buf) {
		w.flush()
		w.start = off
	}
	l := len(w.buf)
	w.buf = w.buf[:l+n]
	return w.buf[l:]
}

// write writes b at block blk.
func (w *blockWriter) write(blk uint32, b []byte) {
	off := int64(blk) * int64(w.bs)
	for len(b) > 0 {
		k := min(len(b), cap(w.buf))
		copy(w.space(off, k), b[:k])
		off += int64(k)
		b = b[k:]
	}
}

// zero writes n zero blocks at block blk.
func (w *blockWriter) zero(blk, n uint32) {
	off := int64(blk) * int64(w.bs)
	for left := int64(n) * int64(w.bs); left > 0; {
		k := int(min(left, int64(cap(w.buf))))
		clear(w.space(off, k))
		off += int64(k)
		left -= int64(k)
	}
}

// copyFile streams n's content from its source into its blocks, the last
// block padded with zeros.
func (w *blockWriter) copyFile(n *node) error {
	if n.open == nil {
		return nil
	}
	r, err := n.open()
	if err != nil {
		return fmt.Errorf("ext4fs: %s: open: %w", n.path, err)
	}
	if err := w.fill(n, r); err != nil {
		r.Close()
		return err
	}
	if err := r.Close(); err != nil {
		return fmt.Errorf("ext4fs: %s: close: %w", n.path, err)
	}
	return w.err
}

// fill reads n's content from r into n's blocks.
func (w *blockWriter) fill(n *node, r io.Reader) error {
	left := n.size
	for _, run := range n.data {
		off := int64(run.start) * int64(w.bs)
		for runLeft := int64(run.len) * int64(w.bs); runLeft > 0; {
			k := int(min(runLeft, int64(cap(w.buf))))
			b := w.space(off, k)
			d := int(min(int64(k), left))
			got, err := io.ReadFull(r, b[:d])
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
					return fmt.Errorf("ext4fs: %s: source ended after %d of %d bytes", n.path, n.size-left+int64(got), n.size)
				}
				return fmt.Errorf("ext4fs: %s: read: %w", n.path, err)
			}
			clear(b[d:])
			left -= int64(d)
			off += int64(k)
			runLeft -= int64(k)
		}
	}
	var one [1]byte
	switch _, err := io.ReadFull(r, one[:]); err {
	case io.EOF:
		return nil
	case nil:
		return fmt.Errorf("ext4fs: %s: source is longer than the declared %d bytes", n.path, n.size)
	default:
		return fmt.Errorf("ext4fs: %s: read: %w", n.path, err)
	}
}
