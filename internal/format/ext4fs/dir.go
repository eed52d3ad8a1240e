package ext4fs

import "encoding/binary"

// Directories are linear (no htree): entries "." and ".." then the
// children sorted by name, packed into blocks in order. An entry never
// crosses a block; the last entry of a block takes up its rest.

// recLen is the size of a directory entry with a name of n bytes.
func recLen(n int) int { return (8 + n + 3) &^ 3 }

// dirEntries lists the names of directory n in output order, with the
// node each names ("." and ".." included).
func (n *node) dirEntries(parent *node) ([]string, []*node) {
	names := make([]string, 0, len(n.names)+2)
	nodes := make([]*node, 0, len(n.names)+2)
	names = append(names, ".", "..")
	nodes = append(nodes, n, parent)
	for _, name := range n.names {
		names = append(names, name)
		nodes = append(nodes, n.children[name])
	}
	return names, nodes
}

// dirBlockCount is the number of blocks the entries with these names take.
func dirBlockCount(names []string, bs int) uint32 {
	blocks, pos := uint32(1), 0
	for _, name := range names {
		l := recLen(len(name))
		if pos+l > bs {
			blocks++
			pos = 0
		}
		pos += l
	}
	return blocks
}

// buildDir encodes the directory blocks: the packed entries, then empty
// blocks (a single unused entry spanning the block) up to nblocks.
func buildDir(names []string, nodes []*node, bs int, nblocks uint32) []byte {
	b := make([]byte, int(nblocks)*bs)
	le := binary.LittleEndian
	pos, last := 0, -1 // write position, offset of the previous entry
	for i, name := range names {
		l := recLen(len(name))
		if pos%bs+l > bs {
			// Stretch the previous entry to the end of its block.
			le.PutUint16(b[last+4:], uint16(bs-last%bs))
			pos += bs - pos%bs
		}
		e := b[pos:]
		_, ft := modeType(nodes[i].kind)
		le.PutUint32(e[0:], nodes[i].ino)
		le.PutUint16(e[4:], uint16(l))
		e[6] = byte(len(name))
		e[7] = ft
		copy(e[8:], name)
		last = pos
		pos += l
	}
	le.PutUint16(b[last+4:], uint16(bs-last%bs))
	for off := (last/bs + 1) * bs; off < len(b); off += bs {
		le.PutUint16(b[off+4:], uint16(bs))
	}
	return b
}
