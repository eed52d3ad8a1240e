package ext4fs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// capV2 is a security.capability value (vfs_cap_data, revision 2) granting
// the given capabilities as permitted, with the effective flag: what
// setcap cap_net_raw+ep writes.
func capV2(caps ...uint) []byte {
	var perm uint64
	for _, c := range caps {
		perm |= 1 << c
	}
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|0x1) // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
	binary.LittleEndian.PutUint32(b[4:], uint32(perm))   // data[0].permitted
	binary.LittleEndian.PutUint32(b[12:], uint32(perm>>32))
	return b
}

const capNetRaw, capNetBindService = 13, 10

// acl builds a setxattr-format ACL (version 2) from tag, perm, id triples.
func acl(entries ...[3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

var (
	// u::rw- u:1000:r-- g::r-- m::r-- o::---
	testACL = acl([3]uint32{aclUserObj, 6, 0xFFFFFFFF}, [3]uint32{aclUser, 4, 1000},
		[3]uint32{aclGroupObj, 4, 0xFFFFFFFF}, [3]uint32{aclMask, 4, 0xFFFFFFFF}, [3]uint32{aclOther, 0, 0xFFFFFFFF})
	minimalACL = acl([3]uint32{aclUserObj, 7, 0xFFFFFFFF}, [3]uint32{aclGroupObj, 5, 0xFFFFFFFF}, [3]uint32{aclOther, 5, 0xFFFFFFFF})
)

// xattrSet is the attributes each path should have.
type xattrSet map[string]map[string][]byte

func setAll(t testing.TB, f *FS, want xattrSet) {
	t.Helper()
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		names := make([]string, 0, len(want[p]))
		for n := range want[p] {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			if err := f.SetXattr(p, n, want[p][n]); err != nil {
				t.Fatalf("SetXattr(%s, %s): %v", p, n, err)
			}
		}
	}
}

var reEaName = regexp.MustCompile(`(?m)^  (\S+) \((\d+)\)`)

// verifyXattrs reads every attribute of want back with debugfs (ea_list
// for the names, ea_get -f for the exact bytes; debugfs turns ACLs back
// into the setxattr format) and checks that paths have no others.
func verifyXattrs(t testing.TB, img string, want xattrSet) {
	t.Helper()
	dir := t.TempDir()
	var cmds []string
	type get struct{ path, name, file string }
	var gets []get
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		cmds = append(cmds, fmt.Sprintf("ea_list %q", p))
	}
	for _, p := range paths {
		for n := range want[p] {
			g := get{p, n, filepath.Join(dir, strconv.Itoa(len(gets)))}
			gets = append(gets, g)
			cmds = append(cmds, fmt.Sprintf("ea_get -f %s %q %s", g.file, p, n))
		}
	}
	outs := debugfs(t, img, cmds)
	for i, p := range paths {
		got := map[string]int{}
		for _, m := range reEaName.FindAllStringSubmatch(outs[i], -1) {
			got[m[1]], _ = strconv.Atoi(m[2])
		}
		w := map[string]int{}
		for n, v := range want[p] {
			w[n] = len(v)
			if isACL(n) {
				// ea_list shows the stored (ext4) form.
				d, err := aclToDisk(v)
				if err != nil {
					t.Fatal(err)
				}
				w[n] = len(d)
			}
		}
		if !mapsEqual(got, w) {
			t.Errorf("%s: debugfs ea_list shows %v, want %v\n%s", p, got, w, outs[i])
		}
	}
	for _, g := range gets {
		b, err := os.ReadFile(g.file)
		if err != nil {
			t.Errorf("%s %s: ea_get wrote nothing: %v", g.path, g.name, err)
			continue
		}
		w := want[g.path][g.name]
		if isACL(g.name) {
			b, w = aclCanon(b), aclCanon(w)
		}
		if !bytes.Equal(b, w) {
			t.Errorf("%s %s: read back %x, wrote %x", g.path, g.name, b, want[g.path][g.name])
		}
	}
}

func isACL(name string) bool { return strings.HasPrefix(name, "system.posix_acl_") }

// aclCanon zeroes the ids of the ACL entries that have none: the kernel
// reads them back as ACL_UNDEFINED_ID, e2fsprogs as 0.
func aclCanon(v []byte) []byte {
	v = bytes.Clone(v)
	for i := 4; i+8 <= len(v); i += 8 {
		if tag := binary.LittleEndian.Uint16(v[i:]); tag != aclUser && tag != aclGroup {
			binary.LittleEndian.PutUint32(v[i+4:], 0)
		}
	}
	return v
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

var reFileACL = regexp.MustCompile(`File ACL: (\d+)`)

// xattrBlocks returns each path's attribute block number (0 for none).
func xattrBlocks(t testing.TB, img string, paths []string) []int {
	t.Helper()
	cmds := make([]string, len(paths))
	for i, p := range paths {
		cmds[i] = fmt.Sprintf("stat %q", p)
	}
	var res []int
	for i, out := range debugfs(t, img, cmds) {
		m := reFileACL.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("stat %s: no File ACL line:\n%s", paths[i], out)
		}
		n, _ := strconv.Atoi(m[1])
		res = append(res, n)
	}
	return res
}

func xattrTree(t testing.TB, opts Options) *FS {
	t.Helper()
	f, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []error{
		f.Mkdir("/bin", 0o755, 0, 0),
		f.Mkdir("/data", 0o755, 0, 0),
		f.AddFile("/bin/ping", 0o755, 0, 0, 3000, patternOpen(1, 3000)),
		f.AddFile("/bin/server", 0o755, 0, 0, 0, nil),
		f.AddFile("/data/labelled", 0o644, 0, 0, 10, patternOpen(2, 10)),
		f.AddFile("/data/big", 0o644, 0, 0, 0, nil),
		f.AddFile("/data/acl", 0o640, 0, 0, 0, nil),
		f.Symlink("/data/link", "labelled", 0, 0),
		f.Mknod("/data/null", fs.ModeDevice|fs.ModeCharDevice|0o666, 1, 3, 0, 0),
		f.Link("/bin/ping6", "/bin/ping"),
	} {
		if e != nil {
			t.Fatal(e)
		}
	}
	for i := range 20 {
		if err := f.AddFile(fmt.Sprintf("/data/same-%02d", i), 0o644, 0, 0, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// TestXattrs writes attributes of several sizes (in the inode, in a block,
// both, shared blocks) and reads them back with e2fsprogs.
func TestXattrs(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 50) // 800 bytes
	want := xattrSet{
		"/":              {"trusted.overlay.opaque": []byte("y")},
		"/bin/ping":      {"security.capability": capV2(capNetRaw)},
		"/bin/server":    {"security.capability": capV2(capNetBindService), "user.empty": nil},
		"/data/labelled": {"security.selinux": []byte("system_u:object_r:bin_t:s0\x00"), "user.mime_type": []byte("text")},
		"/data/big":      {"user.big": big, "user.small": []byte("1"), "trusted.md5": bytes.Repeat([]byte{0xAB}, 16)},
		"/data/acl":      {"system.posix_acl_access": testACL},
		"/data":          {"system.posix_acl_default": minimalACL, "system.posix_acl_access": minimalACL},
		"/data/link":     {"security.selinux": []byte("system_u:object_r:lnk_t:s0\x00")},
		"/data/null":     {"trusted.dev": []byte("null")},
		"/lost+found":    {"security.selinux": []byte("system_u:object_r:lost_found_t:s0\x00")},
		"/data/same-00":  {"user.shared": big[:500]},
		"/data/same-19":  {"user.other": big[:100]},
	}
	for i := 1; i < 19; i++ {
		want[fmt.Sprintf("/data/same-%02d", i)] = map[string][]byte{"user.shared": big[:500]}
	}
	for _, bs := range []int{1024, 4096} {
		t.Run(strconv.Itoa(bs), func(t *testing.T) {
			opts := Options{Size: 16 * mib, BlockSize: bs, Time: testTime, UUID: [16]byte{7}}
			f := xattrTree(t, opts)
			setAll(t, f, want)
			img := writeImage(t, f, opts.Size)
			fsck(t, img)
			verifyXattrs(t, img, want)
			st, err := f.Stats()
			if err != nil {
				t.Fatal(err)
			}
			checkDumpe2fs(t, img, st)

			// The hard link is the same inode.
			verifyXattrs(t, img, xattrSet{"/bin/ping6": want["/bin/ping"]})

			// Small sets stay in the inode; what does not fit goes to a
			// block; identical block sets share one.
			paths := []string{"/bin/ping", "/bin/server", "/data/labelled", "/data/big", "/data/same-00", "/data/same-07", "/data/same-18", "/data/same-19"}
			blk := xattrBlocks(t, img, paths)
			if blk[0] != 0 || blk[1] != 0 || blk[2] != 0 {
				t.Errorf("small sets got blocks %v, want them in the inode", blk[:3])
			}
			if blk[3] == 0 || blk[4] == 0 || blk[7] == 0 {
				t.Errorf("large sets got no block: %v", blk)
			}
			if blk[5] != blk[4] || blk[6] != blk[4] || blk[7] == blk[4] || blk[3] == blk[4] {
				t.Errorf("blocks %v: want same-00..18 sharing one block, same-19 and big their own", blk)
			}
			// The user-visible block count includes the attribute blocks.
			f2 := xattrTree(t, opts)
			st2, err := f2.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if d := st2.FreeBlocks - st.FreeBlocks; d != 3 {
				t.Errorf("attributes took %d blocks, want 3 (big, shared, same-19)", d)
			}

			// Same attributes set in another order: same bytes.
			f3 := xattrTree(t, opts)
			paths = slices.Sorted(mapsKeys(want))
			slices.Reverse(paths)
			for _, p := range paths {
				names := slices.Sorted(mapsKeys(want[p]))
				slices.Reverse(names)
				// An overwritten value must not leave traces either.
				for _, n := range names {
					if err := f3.SetXattr(p, n, []byte("first")); err != nil && !strings.Contains(err.Error(), "capability") && !strings.Contains(err.Error(), "ACL") {
						t.Fatal(err)
					}
					if err := f3.SetXattr(p, n, want[p][n]); err != nil {
						t.Fatal(err)
					}
				}
			}
			if a, b := imageSum(t, img), imageSum(t, writeImage(t, f3, opts.Size)); a != b {
				t.Errorf("same attributes in another order give another image")
			}
			got, err := f.ListXattrs("/data/acl")
			if err != nil || len(got) != 1 || !bytes.Equal(got["system.posix_acl_access"], testACL) {
				t.Errorf("ListXattrs(/data/acl) = %x, %v", got, err)
			}
		})
	}
}

// TestXattrRefcountLimit checks that more inodes than the kernel's
// reference limit with the same block set get a second block.
func TestXattrRefcountLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 1100 inodes with attribute blocks")
	}
	opts := Options{Size: 32 * mib, Time: testTime}
	f, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	val := bytes.Repeat([]byte{'v'}, 200)
	for i := range xattrRefMax + 76 {
		p := fmt.Sprintf("/f%04d", i)
		if err := f.AddFile(p, 0o644, 0, 0, 0, nil); err != nil {
			t.Fatal(err)
		}
		if err := f.SetXattr(p, "user.v", val); err != nil {
			t.Fatal(err)
		}
	}
	img := writeImage(t, f, opts.Size)
	fsck(t, img)
	blk := xattrBlocks(t, img, []string{"/f0000", fmt.Sprintf("/f%04d", xattrRefMax-1), fmt.Sprintf("/f%04d", xattrRefMax), fmt.Sprintf("/f%04d", xattrRefMax+75)})
	if blk[0] != blk[1] || blk[2] != blk[3] || blk[0] == blk[2] {
		t.Errorf("blocks %v: want the first %d inodes on one block, the rest on another", blk, xattrRefMax)
	}
}

func TestXattrErrors(t *testing.T) {
	f := xattrTree(t, Options{Size: 16 * mib, Time: testTime})
	if err := f.SetXattr("/data/big", "user.keep", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, name string
		value      []byte
		want       string
	}{
		{"/nothing", "user.a", nil, "does not exist"},
		{"/data/../etc", "user.a", nil, `".." not allowed`},
		{"/data/big", "user.", nil, "empty name"},
		{"/data/big", "foo.bar", nil, "namespace not supported"},
		{"/data/big", "system.data", nil, "namespace not supported"},
		{"/data/big", "user.a\x00b", nil, "NUL"},
		{"/data/big", "user." + strings.Repeat("n", 251), nil, "at most 255"},
		{"/data/big", "user.huge", make([]byte, 70000), "at most 65536"},
		{"/data/big", "user.toolarge", make([]byte, 4080), `"user.toolarge" on /data/big: 4104 bytes of name and value do not fit`},
		{"/data/link", "user.a", nil, "only allowed on regular files and directories"},
		{"/data/null", "user.a", nil, "only allowed on regular files and directories"},
		{"/data/link", "system.posix_acl_access", minimalACL, "not allowed on symbolic links"},
		{"/data/big", "system.posix_acl_default", minimalACL, "only allowed on a directory"},
		{"/data/big", "system.posix_acl_access", minimalACL[:10], "8-byte entries"},
		{"/data/big", "system.posix_acl_access", append([]byte{1, 0, 0, 0}, minimalACL[4:]...), "version 1, want 2"},
		{"/data/big", "system.posix_acl_access", acl([3]uint32{aclUserObj, 7, 0}, [3]uint32{aclOther, 5, 0}), "lacks a user, group or other"},
		{"/data/big", "system.posix_acl_access", acl([3]uint32{aclUserObj, 7, 0}, [3]uint32{aclUser, 7, 5}, [3]uint32{aclGroupObj, 5, 0}, [3]uint32{aclOther, 5, 0}), "lacks a mask"},
		{"/data/big", "system.posix_acl_access", acl([3]uint32{aclGroupObj, 5, 0}, [3]uint32{aclUserObj, 7, 0}, [3]uint32{aclOther, 5, 0}), "out of order"},
		{"/data/big", "system.posix_acl_access", acl([3]uint32{aclUserObj, 7, 0}, [3]uint32{aclUser, 7, 5}, [3]uint32{aclUser, 7, 5}, [3]uint32{aclGroupObj, 5, 0}, [3]uint32{aclMask, 5, 0}, [3]uint32{aclOther, 5, 0}), "ascending"},
		{"/data/big", "system.posix_acl_access", acl([3]uint32{aclUserObj, 7, 0}, [3]uint32{aclUserObj, 7, 0}, [3]uint32{aclGroupObj, 5, 0}, [3]uint32{aclOther, 5, 0}), "twice"},
		{"/data/big", "system.posix_acl_access", acl([3]uint32{aclUserObj, 8, 0}, [3]uint32{aclGroupObj, 5, 0}, [3]uint32{aclOther, 5, 0}), "beyond rwx"},
		{"/data/big", "system.posix_acl_access", acl([3]uint32{aclUserObj, 7, 0}, [3]uint32{0x40, 5, 0}, [3]uint32{aclOther, 5, 0}), "unknown tag"},
		{"/bin/ping", "security.capability", []byte{1, 2}, "too short"},
		{"/bin/ping", "security.capability", capV2(capNetRaw)[:12], "needs 20 bytes"},
		{"/bin/ping", "security.capability", append([]byte{0, 0, 0, 9}, make([]byte, 16)...), "revision 0x9 unknown"},
	}
	for _, tt := range tests {
		err := f.SetXattr(tt.path, tt.name, tt.value)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("SetXattr(%s, %q) = %v, want an error with %q", tt.path, tt.name, err, tt.want)
		}
	}
	if _, err := f.ListXattrs("/nothing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ListXattrs(/nothing) = %v, want fs.ErrNotExist", err)
	}

	// Filling the block: the attribute that no longer fits is refused
	// and named, and the earlier ones stay.
	for i := 0; ; i++ {
		err := f.SetXattr("/data/big", fmt.Sprintf("user.fill%02d", i), make([]byte, 1000))
		if err == nil {
			continue
		}
		want := fmt.Sprintf(`ext4fs: setxattr "user.fill%02d" on /data/big: `, i)
		if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "left there by the file's other attributes") {
			t.Errorf("error %q, want it to start with %q and say what is left", err, want)
		}
		if i != 3 {
			t.Errorf("refused the %dth 1000-byte attribute, want the 4th", i+1)
		}
		break
	}
	got, err := f.ListXattrs("/data/big")
	if err != nil || len(got) != 4 || string(got["user.keep"]) != "kept" {
		t.Errorf("after the refusals /data/big has %d attributes (%v), want user.keep and 3 fills", len(got), err)
	}
	img := writeImage(t, f, 16*mib)
	fsck(t, img)
}

// TestXattrNoSpace checks that an attribute block that does not fit is
// reported like any other allocation.
func TestXattrNoSpace(t *testing.T) {
	opts := Options{Size: 1 * mib, BlockSize: 1024, InodeRatio: 4096}
	f, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for i := range int(st.FreeBlocks) + 1 {
		p := fmt.Sprintf("/f%03d", i)
		if err := f.AddFile(p, 0o644, 0, 0, 0, nil); err != nil {
			t.Fatal(err)
		}
		// Distinct values: no sharing.
		if err := f.SetXattr(p, "user.v", []byte(fmt.Sprintf("%0200d", i))); err != nil {
			t.Fatal(err)
		}
	}
	_, err = f.Stats()
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "attribute block") {
		t.Errorf("Stats = %v, want ErrNoSpace for an attribute block", err)
	}
}

// TestXattrHash checks the entry and block hashes and the block encoding
// against the kernel's definitions (e2fsck checks the entry hashes of every
// image in the other tests, but not the block hash, which only the
// kernel's block sharing cache uses).
func TestXattrHash(t *testing.T) {
	h := xattrHash("ab", []byte{1, 0, 0, 0, 2})
	name := uint32('a')<<5 ^ uint32('b')
	want := name<<16 ^ name>>16 ^ 1
	want = want<<16 ^ want>>16 ^ 2
	if h != want {
		t.Errorf("xattrHash = %#x, want %#x", h, want)
	}
	if xattrHash("\xff", nil) != 0xff {
		t.Errorf("name bytes must hash unsigned")
	}

	// The block hash (ext4_xattr_rehash) folds the entry hashes in entry
	// order; entries are sorted by index, name length, name.
	xs := []*xattr{
		{index: xattrSecurity, name: "capability", value: capV2(capNetRaw)},
		{index: xattrUser, name: "bb", value: []byte("2")},
		{index: xattrUser, name: "a", value: nil},
		{index: xattrUser, name: "c", value: []byte("3")},
	}
	slices.SortFunc(xs, xattrCmp)
	var order []string
	for _, x := range xs {
		order = append(order, x.name)
	}
	if w := []string{"a", "c", "bb", "capability"}; !slices.Equal(order, w) {
		t.Errorf("sorted %v, want %v", order, w)
	}
	b := encodeXblock(xs, 1024)
	le := binary.LittleEndian
	var bh uint32
	off := xattrBlockHdr
	for _, x := range xs {
		e := b[off:]
		size, voff := int(le.Uint32(e[8:])), int(le.Uint16(e[2:]))
		if e[0] != byte(len(x.name)) || e[1] != x.index || string(e[16:16+len(x.name)]) != x.name ||
			!bytes.Equal(b[voff:voff+size], x.value) || voff%4 != 0 {
			t.Errorf("entry %s: encoded as %x", x.name, e[:16+len(x.name)])
		}
		eh := le.Uint32(e[12:])
		if eh != xattrHash(x.name, x.value) {
			t.Errorf("entry %s: hash %#x, want %#x", x.name, eh, xattrHash(x.name, x.value))
		}
		bh = bh<<16 ^ bh>>16 ^ eh
		off += xattrEntryLen(len(x.name))
	}
	if le.Uint32(b[off:]) != 0 {
		t.Errorf("no end marker after the entries")
	}
	if le.Uint32(b[0:]) != xattrMagic || le.Uint32(b[8:]) != 1 || le.Uint32(b[12:]) != bh {
		t.Errorf("block header %x, want magic, h_blocks 1, h_hash %#x", b[:16], bh)
	}
}

// randomXattrs makes a random attribute set for each of n files; some
// files copy an earlier file's set so that blocks are shared.
func randomXattrs(r *rand.Rand, files []string) xattrSet {
	want := xattrSet{}
	for i, p := range files {
		if i > 0 && r.IntN(4) == 0 {
			want[p] = want[files[r.IntN(i)]]
			continue
		}
		set := map[string][]byte{}
		for range r.IntN(7) {
			ns := []string{"user.", "trusted.", "security."}[r.IntN(3)]
			nl := 1 + r.IntN(40)
			if r.IntN(8) == 0 {
				nl = 200 + r.IntN(40)
			}
			name := make([]byte, nl)
			for j := range name {
				name[j] = "abcdefghijklmnopqrstuvwxyz0123456789._-"[r.IntN(39)]
			}
			var size int
			switch r.IntN(4) {
			case 0:
				size = r.IntN(9)
			case 1:
				size = 20
			case 2:
				size = r.IntN(200)
			default:
				size = r.IntN(1500)
			}
			v := make([]byte, size)
			for j := range v {
				v[j] = byte(r.Uint32())
			}
			set[ns+string(name)] = v
		}
		want[p] = set
	}
	return want
}

// applyXattrs sets what fits; the rest is refused, which must leave the
// file's set as it was. It returns the sets the filesystem holds.
func applyXattrs(t testing.TB, f *FS, want xattrSet) xattrSet {
	t.Helper()
	got := xattrSet{}
	for _, p := range slices.Sorted(mapsKeys(want)) {
		for _, n := range slices.Sorted(mapsKeys(want[p])) {
			before, err := f.ListXattrs(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.SetXattr(p, n, want[p][n]); err != nil {
				if !strings.Contains(err.Error(), "do not fit") {
					t.Fatalf("SetXattr(%s, %s, %d bytes): %v", p, n, len(want[p][n]), err)
				}
				after, _ := f.ListXattrs(p)
				if len(after) != len(before) {
					t.Fatalf("refused SetXattr(%s, %s) changed the set", p, n)
				}
			}
		}
		set, err := f.ListXattrs(p)
		if err != nil {
			t.Fatal(err)
		}
		got[p] = set
	}
	return got
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestXattrRandom writes random attribute sets and checks each image with
// e2fsck and debugfs.
func TestXattrRandom(t *testing.T) {
	rounds := 25
	if testing.Short() {
		rounds = 5
	}
	for seed := range uint64(rounds) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 0x5eed))
			bs := []int{1024, 2048, 4096}[r.IntN(3)]
			opts := Options{Size: 8 * mib, BlockSize: bs, Time: testTime}
			f, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			files := []string{"/", "/d"}
			if err := f.Mkdir("/d", 0o755, 0, 0); err != nil {
				t.Fatal(err)
			}
			for i := range 2 + r.IntN(10) {
				p := fmt.Sprintf("/d/f%d", i)
				size := int64(r.IntN(3 * bs))
				if err := f.AddFile(p, 0o644, 0, 0, size, patternOpen(byte(i), size)); err != nil {
					t.Fatal(err)
				}
				files = append(files, p)
			}
			got := applyXattrs(t, f, randomXattrs(r, files))
			img := writeImage(t, f, opts.Size)
			fsck(t, img)
			verifyXattrs(t, img, got)
		})
	}
}

// FuzzXattrs sets attribute sets decoded from the input (name, size and
// value bytes) on a few files and checks the image with e2fsck.
func FuzzXattrs(f *testing.F) {
	f.Add([]byte("\x00\x01a\x05hello\x01\x02bb\x14" + string(capV2(capNetRaw))))
	f.Add(bytes.Repeat([]byte{0x02, 0x10, 'x', 0xff}, 40))
	f.Add([]byte{0x00, 0x03, 'c', 'a', 'p', 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys, err := New(Options{Size: 4 * mib, Time: testTime})
		if err != nil {
			t.Fatal(err)
		}
		files := []string{"/a", "/b", "/c"}
		for _, p := range files {
			if err := fsys.AddFile(p, 0o644, 0, 0, 0, nil); err != nil {
				t.Fatal(err)
			}
		}
		// Each record: file and namespace byte, name length, name, value
		// length (times 16 above 200), value.
		set := 0
		for len(data) >= 3 && set < 40 {
			p := files[int(data[0]&0x3)%len(files)]
			ns := []string{"user.", "trusted.", "security.", "system.posix_acl_access", "bogus."}[int(data[0]>>2)%5]
			nl := int(data[1])
			data = data[2:]
			nl = min(nl, len(data))
			name := ns + string(data[:nl])
			data = data[nl:]
			if len(data) == 0 {
				break
			}
			vl := int(data[0])
			if vl > 200 {
				vl = (vl - 200) * 16 * 10
			}
			data = data[1:]
			vl = min(vl, len(data))
			value := data[:vl]
			data = data[vl:]
			if fsys.SetXattr(p, name, value) == nil {
				set++
			}
		}
		want := xattrSet{}
		for _, p := range files {
			if want[p], err = fsys.ListXattrs(p); err != nil {
				t.Fatal(err)
			}
		}
		img := writeImage(t, fsys, 4*mib)
		fsck(t, img)
		// debugfs commands cannot carry arbitrary names; check the
		// values when the names are plain.
		for _, m := range want {
			for n := range m {
				if strings.ContainsFunc(n, func(r rune) bool {
					return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-", r))
				}) {
					return
				}
			}
		}
		verifyXattrs(t, img, want)
	})
}
