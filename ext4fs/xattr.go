package ext4fs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// Extended attributes (Documentation/filesystems/ext4/attributes.rst).
//
// Each inode's attributes go first into the space after i_extra_isize
// (inodeSize-128-extraIsize bytes: a 4-byte header, then entries growing up
// and values growing down), and what does not fit there into one attribute
// block the inode's i_file_acl points to. Inodes with the same block
// attributes share one block (with a reference count), as the kernel's
// mbcache does, so a thousand files with the same capability or label cost
// one block. There is no ea_inode: a set of attributes must fit in one
// block. The ext_attr feature is set on every filesystem (it always was, so
// that a writable mount can add attributes), so images without attributes
// are unchanged by this code.

const (
	xattrMagic     = 0xEA020000
	xattrEntrySize = 16 // struct ext4_xattr_entry without the name
	xattrBlockHdr  = 32 // struct ext4_xattr_header
	xattrIbodyOff  = 128 + extraIsize
	// xattrIbodySpace is the in-inode room for entries, the 4-byte end
	// marker and values: 92 bytes with 256-byte inodes.
	xattrIbodySpace = inodeSize - xattrIbodyOff - 4
	xattrRefMax     = 1024    // EXT4_XATTR_REFCOUNT_MAX
	xattrNameMax    = 255     // XATTR_NAME_MAX, of the full name
	xattrSizeMax    = 1 << 16 // XATTR_SIZE_MAX

	// Name indexes (EXT4_XATTR_INDEX_*).
	xattrUser       = 1
	xattrACLAccess  = 2
	xattrACLDefault = 3
	xattrTrusted    = 4
	xattrSecurity   = 6
)

// xattr is one attribute in its on-disk form.
type xattr struct {
	full  string // the name as given, for errors and ListXattrs
	index byte
	name  string // after the prefix the index stands for
	value []byte // as stored (ACLs in ext4's own format)
	given []byte // as given
}

func xattrEntryLen(nameLen int) int { return (nameLen + xattrEntrySize + 3) &^ 3 }
func xattrValueLen(size int) int    { return (size + 3) &^ 3 }

// room is the space x takes in an inode or block: entry and padded value.
func (x *xattr) room() int { return xattrEntryLen(len(x.name)) + xattrValueLen(len(x.value)) }

// xattrCmp orders attributes as the kernel keeps them in a block (by index,
// name length, name), which its lookup relies on.
func xattrCmp(a, b *xattr) int {
	if a.index != b.index {
		return int(a.index) - int(b.index)
	}
	if len(a.name) != len(b.name) {
		return len(a.name) - len(b.name)
	}
	return strings.Compare(a.name, b.name)
}

// splitName maps a full attribute name to its index and suffix, refusing
// the namespaces ext4 does not store (or slate does not write: system.*
// other than the POSIX ACLs, i.e. inline data and richacl).
func splitName(full string) (byte, string, error) {
	switch {
	case len(full) > xattrNameMax:
		return 0, "", fmt.Errorf("name of %d bytes, at most %d allowed", len(full), xattrNameMax)
	case strings.IndexByte(full, 0) >= 0:
		return 0, "", fmt.Errorf("NUL byte in name")
	case full == "system.posix_acl_access":
		return xattrACLAccess, "", nil
	case full == "system.posix_acl_default":
		return xattrACLDefault, "", nil
	}
	for _, p := range []struct {
		prefix string
		index  byte
	}{{"user.", xattrUser}, {"trusted.", xattrTrusted}, {"security.", xattrSecurity}} {
		if s, ok := strings.CutPrefix(full, p.prefix); ok {
			if s == "" {
				return 0, "", fmt.Errorf("empty name after %q", p.prefix)
			}
			return p.index, s, nil
		}
	}
	return 0, "", fmt.Errorf("namespace not supported (want user., trusted., security. or system.posix_acl_access/default)")
}

// SetXattr sets the extended attribute name of p (not following a symlink
// at p, like lsetxattr) to value, replacing an earlier value. Names are the
// full names of setxattr(2): "user.*", "trusted.*", "security.*" and the
// POSIX ACLs "system.posix_acl_access" and "system.posix_acl_default",
// whose values are in the setxattr format (version 2) and are stored in
// ext4's. Values are checked where the kernel would refuse or misread them
// (security.capability's revision and size, ACLs, user.* only on files and
// directories). A set of attributes that does not fit in the inode and one
// attribute block is refused, naming the file and the attribute, and the
// set is left as it was.
func (f *FS) SetXattr(p, name string, value []byte) error {
	n, err := f.find("setxattr "+name+" on", p)
	if err != nil {
		return err
	}
	fail := func(err error) error { return fmt.Errorf("ext4fs: setxattr %q on %s: %w", name, n.path, err) }
	index, suffix, err := splitName(name)
	if err != nil {
		return fail(err)
	}
	if len(value) > xattrSizeMax {
		return fail(fmt.Errorf("value of %d bytes, at most %d allowed", len(value), xattrSizeMax))
	}
	stored := value
	switch {
	case index == xattrUser && n.kind != kindFile && n.kind != kindDir:
		// The kernel allows user.* only on regular files and directories.
		return fail(fmt.Errorf("user.* attributes are only allowed on regular files and directories"))
	case index == xattrACLAccess || index == xattrACLDefault:
		if n.kind == kindSymlink {
			return fail(fmt.Errorf("ACLs are not allowed on symbolic links"))
		}
		if index == xattrACLDefault && n.kind != kindDir {
			return fail(fmt.Errorf("a default ACL is only allowed on a directory"))
		}
		if stored, err = aclToDisk(value); err != nil {
			return fail(err)
		}
	case index == xattrSecurity && suffix == "capability":
		if err := checkCapability(value); err != nil {
			return fail(err)
		}
	}
	x := &xattr{full: name, index: index, name: suffix, value: bytes.Clone(stored), given: bytes.Clone(value)}
	set := make([]*xattr, 0, len(n.xattrs)+1)
	for _, o := range n.xattrs {
		if o.full != name {
			set = append(set, o)
		}
	}
	set = append(set, x)
	slices.SortFunc(set, xattrCmp)
	ibody, block, xerr := splitXattrs(set, f.bs)
	if xerr != nil {
		if xerr.name != name {
			return fmt.Errorf("ext4fs: setxattr %q on %s: with it, attribute %q: %w", name, n.path, xerr.name, xerr.err)
		}
		return fmt.Errorf("ext4fs: setxattr %q on %s: %w", name, n.path, xerr.err)
	}
	n.xattrs, n.ibody, n.xblock = set, ibody, block
	return nil
}

// ListXattrs returns p's extended attributes by full name, with the values
// as they were given.
func (f *FS) ListXattrs(p string) (map[string][]byte, error) {
	n, err := f.find("listxattr", p)
	if err != nil {
		return nil, err
	}
	m := make(map[string][]byte, len(n.xattrs))
	for _, x := range n.xattrs {
		m[x.full] = bytes.Clone(x.given)
	}
	return m, nil
}

type xattrError struct {
	name string
	err  error
}

// splitXattrs places a sorted attribute set: each attribute in the inode if
// it still fits there, else in the block. The result depends only on the
// set, so it is deterministic.
func splitXattrs(set []*xattr, bs int) (ibody, block []*xattr, _ *xattrError) {
	iused, bused := 4, 4 // the end markers
	for _, x := range set {
		switch r := x.room(); {
		case iused+r <= xattrIbodySpace:
			ibody = append(ibody, x)
			iused += r
		case bused+r <= bs-xattrBlockHdr:
			block = append(block, x)
			bused += r
		default:
			return nil, nil, &xattrError{x.full, fmt.Errorf("%d bytes of name and value do not fit in the inode or in the %d-byte attribute block (%d bytes left there by the file's other attributes; no ea_inode support)",
				r, bs, max(0, bs-xattrBlockHdr-bused))}
		}
	}
	return ibody, block, nil
}

// xattrHash is ext4_xattr_hash_entry: over the name bytes (unsigned, as
// kernels since 6.2 and e2fsprogs 1.47 compute it; the old signed variant
// differs only for bytes >= 0x80, which both still accept) and the value's
// 32-bit little-endian words, zero-padded.
func xattrHash(name string, value []byte) uint32 {
	var h uint32
	for i := 0; i < len(name); i++ {
		h = h<<5 ^ h>>27 ^ uint32(name[i])
	}
	var w [4]byte
	for i := 0; i < len(value); i += 4 {
		clear(w[:])
		copy(w[:], value[i:])
		h = h<<16 ^ h>>16 ^ binary.LittleEndian.Uint32(w[:])
	}
	return h
}

// encodeXattrs writes the entries of xs into b from offset off, their
// values from the end of b downwards, value offsets relative to base, and
// returns the block hash (ext4_xattr_rehash) of the entry hashes.
func encodeXattrs(b []byte, off, base int, xs []*xattr) uint32 {
	le := binary.LittleEndian
	end := len(b)
	var hash uint32
	for _, x := range xs {
		e := b[off:]
		e[0] = byte(len(x.name))
		e[1] = x.index
		if len(x.value) > 0 {
			end -= xattrValueLen(len(x.value))
			copy(b[end:], x.value)
			le.PutUint16(e[2:], uint16(end-base))
		}
		le.PutUint32(e[4:], 0) // e_value_inum: no ea_inode
		le.PutUint32(e[8:], uint32(len(x.value)))
		h := xattrHash(x.name, x.value)
		le.PutUint32(e[12:], h)
		copy(e[16:], x.name)
		off += xattrEntryLen(len(x.name))
		hash = hash<<16 ^ hash>>16 ^ h
	}
	// The 4 bytes after the last entry stay zero: the end marker.
	return hash
}

// encodeIbody writes n's in-inode attributes into its 256-byte inode.
func (n *node) encodeIbody(b []byte) {
	if len(n.ibody) == 0 {
		return
	}
	binary.LittleEndian.PutUint32(b[xattrIbodyOff:], xattrMagic)
	// In the inode, value offsets count from the first entry.
	encodeXattrs(b[xattrIbodyOff+4:inodeSize], 0, 0, n.ibody)
}

// xblock is one attribute block, shared by the inodes with the same block
// attributes.
type xblock struct {
	blk   uint32
	data  []byte // refcount filled in at write time
	refs  uint32
	owner *node // the lowest-numbered inode using it, which writes it
}

// encodeXblock encodes an attribute block for xs with the reference count
// left 0. Without metadata_csum h_checksum is 0.
func encodeXblock(xs []*xattr, bs int) []byte {
	b := make([]byte, bs)
	le := binary.LittleEndian
	le.PutUint32(b[0:], xattrMagic)
	le.PutUint32(b[8:], 1) // h_blocks
	le.PutUint32(b[12:], encodeXattrs(b, xattrBlockHdr, 0, xs))
	return b
}

func (x *xblock) bytes() []byte {
	binary.LittleEndian.PutUint32(x.data[4:], x.refs)
	return x.data
}

// checkCapability checks a security.capability value (struct vfs_cap_data,
// linux/capability.h) the way get_vfs_caps_from_disk does: a value it
// cannot read makes every exec of the file fail with EINVAL.
func checkCapability(v []byte) error {
	if len(v) < 4 {
		return fmt.Errorf("security.capability value of %d bytes is too short", len(v))
	}
	magic := binary.LittleEndian.Uint32(v)
	rev := magic & 0xFF000000
	want := map[uint32]int{0x01000000: 12, 0x02000000: 20, 0x03000000: 24}[rev]
	if want == 0 {
		return fmt.Errorf("security.capability revision %#x unknown (want 1, 2 or 3)", rev>>24)
	}
	if len(v) != want {
		return fmt.Errorf("security.capability revision %d needs %d bytes, value has %d", rev>>24, want, len(v))
	}
	return nil
}

// POSIX ACL tags (linux/posix_acl.h).
const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

// aclToDisk converts an ACL from the setxattr format (posix_acl_xattr:
// version 2, 8-byte entries) to ext4's (ext4_acl: version 1, 4-byte entries
// for the tags without an id), checking it as posix_acl_valid does so that
// the kernel does not refuse it on first use.
func aclToDisk(v []byte) ([]byte, error) {
	le := binary.LittleEndian
	if len(v) < 4 || (len(v)-4)%8 != 0 {
		return nil, fmt.Errorf("ACL of %d bytes: want a 4-byte header and 8-byte entries", len(v))
	}
	if ver := le.Uint32(v); ver != 2 {
		return nil, fmt.Errorf("ACL version %d, want 2", ver)
	}
	out := make([]byte, 4, len(v))
	le.PutUint32(out, 1)
	seen := map[uint16]bool{}
	lastTag, lastID := uint16(0), int64(-1)
	for i := 4; i < len(v); i += 8 {
		tag, perm, id := le.Uint16(v[i:]), le.Uint16(v[i+2:]), le.Uint32(v[i+4:])
		k := (i - 4) / 8
		if perm&^7 != 0 {
			return nil, fmt.Errorf("ACL entry %d: permissions %#o beyond rwx", k, perm)
		}
		if tag < lastTag {
			return nil, fmt.Errorf("ACL entry %d: tag %#x out of order", k, tag)
		}
		switch tag {
		case aclUserObj, aclGroupObj, aclMask, aclOther:
			if seen[tag] {
				return nil, fmt.Errorf("ACL entry %d: tag %#x twice", k, tag)
			}
			out = le.AppendUint16(out, tag)
			out = le.AppendUint16(out, perm)
		case aclUser, aclGroup:
			if tag == lastTag && int64(id) <= lastID {
				return nil, fmt.Errorf("ACL entry %d: id %d not in ascending order", k, id)
			}
			lastID = int64(id)
			out = le.AppendUint16(out, tag)
			out = le.AppendUint16(out, perm)
			out = le.AppendUint32(out, id)
		default:
			return nil, fmt.Errorf("ACL entry %d: unknown tag %#x", k, tag)
		}
		seen[tag], lastTag = true, tag
	}
	if !seen[aclUserObj] || !seen[aclGroupObj] || !seen[aclOther] {
		return nil, fmt.Errorf("ACL lacks a user, group or other entry")
	}
	if (seen[aclUser] || seen[aclGroup]) && !seen[aclMask] {
		return nil, fmt.Errorf("ACL with named users or groups lacks a mask entry")
	}
	return out, nil
}
