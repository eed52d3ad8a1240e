package fatfs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Names. Every name has an 8.3 short entry; a VFAT long-name (LFN) run
// precedes it whenever the name is not exactly its own upper-case short
// form. Lower-case 8.3 names ("vmlinuz", "initrd.img") therefore get an LFN
// too, as Linux' vfat driver writes them by default, rather than the NT
// case bits: every VFAT reader knows LFNs, not every one knows the case bits
// (the reader here honours both).
//
// The short name follows the Windows/Linux scheme: the basis is the name
// upper-cased, with characters not allowed in short names replaced by '_',
// spaces and dots before the extension dropped, cut to 8+3. If that lost
// nothing but case, the basis is the short name; otherwise a numeric tail
// "~N" is added, the lowest N not taken in the directory
// ("slate-1.0.0-a+3.conf" becomes "SLATE-~1.CON").

const maxNameUnits = 255 // UTF-16 code units in a long name

// lfnChars is the number of UTF-16 units one LFN entry holds.
const lfnChars = 13

// validName reports why name cannot be a FAT long name, or nil.
func validName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case name == "." || name == "..":
		return fmt.Errorf("name %q is reserved", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("name %q is not valid UTF-8", name)
	case strings.HasSuffix(name, ".") || strings.HasSuffix(name, " "):
		// Windows and Linux strip trailing dots and spaces on lookup, so such
		// a name could never be opened again.
		return fmt.Errorf("name %q ends in a dot or space", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(`"*/:<>?\|`, r) {
			return fmt.Errorf("name %q: character %q is not allowed in FAT names", name, r)
		}
	}
	if n := len(utf16.Encode([]rune(name))); n > maxNameUnits {
		return fmt.Errorf("name %q is %d UTF-16 units long, at most %d allowed", name, n, maxNameUnits)
	}
	return nil
}

// foldKey is the key under which names are compared: FAT names are
// case-insensitive.
func foldKey(name string) string { return strings.ToLower(strings.ToUpper(name)) }

// shortChar maps r to the byte it becomes in a short name and whether that
// is exact (up to case).
func shortChar(r rune) (byte, bool) {
	switch {
	case r >= 'a' && r <= 'z':
		return byte(r - 'a' + 'A'), true
	case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return byte(r), true
	case r < 0x80 && strings.ContainsRune("!#$%&'()-@^_`{}~", r):
		return byte(r), true
	}
	return '_', false
}

// basis returns the short-name basis of a long name: base (1..8 bytes) and
// extension (0..3 bytes), and whether the conversion lost anything but case.
func basis(name string) (base, ext []byte, lossy bool) {
	baseRaw, extRaw := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		baseRaw, extRaw = name[:i], name[i+1:]
	}
	conv := func(s string, max int) []byte {
		var out []byte
		for _, r := range s {
			if r == ' ' || r == '.' {
				lossy = true
				continue
			}
			c, ok := shortChar(r)
			if !ok {
				lossy = true
			}
			if len(out) == max {
				lossy = true
				continue
			}
			out = append(out, c)
		}
		return out
	}
	base = conv(baseRaw, 8)
	ext = conv(extRaw, 3)
	if len(base) == 0 {
		base, lossy = []byte{'_'}, true
	}
	return base, ext, lossy
}

// shortEntryName packs base and ext into the 11-byte directory form.
func shortEntryName(base, ext []byte) [11]byte {
	var s [11]byte
	for i := range s {
		s[i] = ' '
	}
	copy(s[:8], base)
	copy(s[8:], ext)
	return s
}

// withTail returns base with "~n" so that the whole fits 8 bytes.
func withTail(base []byte, n int) []byte {
	tail := "~" + strconv.Itoa(n)
	keep := min(len(base), 8-len(tail))
	out := append([]byte{}, base[:keep]...)
	return append(out, tail...)
}

// maxTail bounds the numeric tail: with it a directory can hold a million
// names sharing a basis, far past FAT's 65536 entries per directory.
const maxTail = 999999

// shortName picks the short name of long in a folder whose short names
// are in used, and whether long needs an LFN run. It does not add the
// result to used. next, if not nil, remembers per basis the lowest tail
// that may be free, so that naming a folder of n names sharing a basis
// takes O(n), not O(n²), steps; it is only valid while used grows.
func shortName(long string, used map[[11]byte]bool, next map[[11]byte]int) (s [11]byte, lfn bool, err error) {
	base, ext, lossy := basis(long)
	key := shortEntryName(base, ext)
	if !lossy {
		if !used[key] {
			return key, displayShort(key, 0) != long, nil
		}
	}
	n := max(1, next[key])
	for ; n <= maxTail; n++ {
		s = shortEntryName(withTail(base, n), ext)
		if !used[s] {
			if next != nil {
				next[key] = n + 1
			}
			return s, true, nil
		}
	}
	return s, false, fmt.Errorf("name %q: no free short name", long)
}

// Case bits in the NTRes byte of a short entry (Windows NT and later):
// the base or the extension is to be shown in lower case.
const (
	caseLowerBase = 0x08
	caseLowerExt  = 0x10
)

// displayShort turns an 11-byte short name into its "NAME.EXT" form,
// applying the NT case bits. Bytes above 0x7f (code page characters, which
// slate never writes) are shown as Latin-1.
func displayShort(s [11]byte, ntres byte) string {
	if s[0] == 0x05 { // 0xE5 as a first byte is stored as 0x05
		s[0] = 0xe5
	}
	part := func(b []byte, lower bool) string {
		var sb strings.Builder
		for _, c := range b {
			if lower && c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			sb.WriteRune(rune(c))
		}
		return strings.TrimRight(sb.String(), " ")
	}
	name := part(s[:8], ntres&caseLowerBase != 0)
	if ext := part(s[8:], ntres&caseLowerExt != 0); ext != "" {
		name += "." + ext
	}
	return name
}

// lfnChecksum is the checksum of a short name that every LFN entry of the
// name carries.
func lfnChecksum(s [11]byte) byte {
	var sum byte
	for _, c := range s {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	return sum
}

// lfnOffsets are the byte offsets of the 13 UTF-16 units in an LFN entry.
var lfnOffsets = [lfnChars]int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}

// lfnEntries encodes long as LFN directory entries in on-disk order (last
// part first), for the short name s.
func lfnEntries(long string, s [11]byte) []byte {
	u := utf16.Encode([]rune(long))
	n := (len(u) + lfnChars - 1) / lfnChars
	// The name is terminated by 0x0000 when it does not fill the last
	// entry, and padded with 0xFFFF after that.
	padded := make([]uint16, n*lfnChars)
	copy(padded, u)
	for i := len(u); i < len(padded); i++ {
		padded[i] = 0xffff
	}
	if len(u) < len(padded) {
		padded[len(u)] = 0
	}
	sum := lfnChecksum(s)
	out := make([]byte, n*dirEntrySize)
	for i := 0; i < n; i++ {
		ord := n - i // on-disk order: highest ordinal first
		e := out[i*dirEntrySize : (i+1)*dirEntrySize]
		e[0] = byte(ord)
		if i == 0 {
			e[0] |= 0x40
		}
		e[11] = attrLFN
		e[13] = sum
		for j, off := range lfnOffsets {
			c := padded[(ord-1)*lfnChars+j]
			e[off] = byte(c)
			e[off+1] = byte(c >> 8)
		}
	}
	return out
}

// lfnPart returns the UTF-16 units of one LFN entry up to its terminator.
func lfnPart(e []byte) []uint16 {
	var u []uint16
	for _, off := range lfnOffsets {
		c := uint16(e[off]) | uint16(e[off+1])<<8
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return u
}
