package partitions

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// smallLayout is a disk of 128 sectors with two partitions: small enough
// for a fuzz seed.
func smallLayout() Layout {
	return Layout{Size: 128 * SectorSize, GUID: "5A92BAF2-4FF3-4F69-98D8-137964E3D4E3", Parts: []Part{
		{Num: 1, Label: LabelESP, Type: TypeESP, GUID: "11111111-2222-3333-4444-555555555555", Start: 40 * SectorSize, Size: 20 * SectorSize},
		{Num: 2, Label: "ROOT-Ä", Type: TypeRoot, GUID: "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE", Start: 60 * SectorSize, Size: 30 * SectorSize},
	}}
}

// image writes l with slate's (go-diskfs') GPT writer and returns its bytes.
func image(t testing.TB, l Layout) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(l.Size); err != nil {
		t.Fatal(err)
	}
	if err := WriteGPT(f, l); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// patchHeader edits the header at lba and fixes its CRC, as a crafted
// disk would.
func patchHeader(img []byte, lba int, edit func(h []byte)) {
	h := img[lba*SectorSize : lba*SectorSize+SectorSize]
	edit(h)
	hs := min(binary.LittleEndian.Uint32(h[12:16]), SectorSize)
	copy(h[16:20], []byte{0, 0, 0, 0})
	binary.LittleEndian.PutUint32(h[16:20], crc32.ChecksumIEEE(h[:hs]))
}

func TestParseGPTGood(t *testing.T) {
	l := smallLayout()
	img := image(t, l)
	got, c, err := ParseGPT(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, l) || c.UsedBackup || len(c.Warnings) != 0 {
		t.Errorf("got %+v %+v, want %+v and no warnings", got, c, l)
	}
}

func TestParseGPTCrafted(t *testing.T) {
	last := 127
	cases := []struct {
		name   string
		edit   func(img []byte) []byte
		err    string   // ParseGPT fails with this
		backup bool     // the backup was read
		warn   []string // warnings that must be there
		grown  bool
	}{
		{name: "0xFFFFFFFF entries", err: "exceed", edit: func(img []byte) []byte {
			for _, lba := range []int{1, last} {
				patchHeader(img, lba, func(h []byte) { binary.LittleEndian.PutUint32(h[80:84], 0xFFFFFFFF) })
			}
			return img
		}},
		{name: "huge entries", err: "exceed", edit: func(img []byte) []byte {
			for _, lba := range []int{1, last} {
				patchHeader(img, lba, func(h []byte) { binary.LittleEndian.PutUint32(h[84:88], 0xFFFFFF80) })
			}
			return img
		}},
		{name: "entry size not a multiple of 128", err: "not a multiple of 128", edit: func(img []byte) []byte {
			for _, lba := range []int{1, last} {
				patchHeader(img, lba, func(h []byte) { binary.LittleEndian.PutUint32(h[84:88], 100) })
			}
			return img
		}},
		{name: "entries past the end of the disk", err: "do not lie within the disk", edit: func(img []byte) []byte {
			for _, lba := range []int{1, last} {
				patchHeader(img, lba, func(h []byte) { binary.LittleEndian.PutUint64(h[72:80], 120) })
			}
			return img
		}},
		{name: "header size too big", err: "header size", edit: func(img []byte) []byte {
			for _, lba := range []int{1, last} {
				patchHeader(img, lba, func(h []byte) {
					binary.LittleEndian.PutUint32(h[12:16], 92)
					binary.LittleEndian.PutUint32(h[12:16], 4096)
				})
			}
			return img
		}},
		{name: "both tables damaged", err: "backup GPT", edit: func(img []byte) []byte {
			img[SectorSize+20]++
			img[last*SectorSize+20]++
			return img
		}},
		{name: "primary header CRC", backup: true, warn: []string{"primary GPT is damaged (header CRC"}, edit: func(img []byte) []byte {
			img[SectorSize+60]++ // the disk GUID, without fixing the CRC
			return img
		}},
		{name: "primary entries CRC", backup: true, warn: []string{"primary GPT is damaged (partition entries CRC"}, edit: func(img []byte) []byte {
			img[2*SectorSize+100]++
			return img
		}},
		{name: "primary claims 0xFFFFFFFF entries", backup: true, warn: []string{"exceed"}, edit: func(img []byte) []byte {
			patchHeader(img, 1, func(h []byte) { binary.LittleEndian.PutUint32(h[80:84], 0xFFFFFFFF) })
			return img
		}},
		{name: "backup damaged", warn: []string{"backup GPT is damaged"}, edit: func(img []byte) []byte {
			img[last*SectorSize+30]++
			return img
		}},
		{name: "backup entries differ", warn: []string{"backup GPT is damaged: partition entries CRC"}, edit: func(img []byte) []byte {
			img[(last-32)*SectorSize+1]++
			return img
		}},
		{name: "truncated", warn: []string{"past the end of the disk", "partition 2 (ROOT-Ä) runs past the end of the disk"}, edit: func(img []byte) []byte {
			return img[:80*SectorSize]
		}},
		{name: "grown", grown: true, edit: func(img []byte) []byte {
			return append(img, make([]byte, 64*SectorSize)...)
		}},
		{name: "no GPT", err: "no GPT", edit: func(img []byte) []byte {
			return make([]byte, len(img))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := c.edit(image(t, smallLayout()))
			l, chk, err := ParseGPT(bytes.NewReader(img), int64(len(img)))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want one with %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if chk.Grown != c.grown || c.grown && len(chk.Warnings) != 0 {
				t.Errorf("grown %v with warnings %q, want grown %v", chk.Grown, chk.Warnings, c.grown)
			}
			if chk.UsedBackup != c.backup {
				t.Errorf("used backup %v, want %v", chk.UsedBackup, c.backup)
			}
			for _, w := range c.warn {
				if !strings.Contains(strings.Join(chk.Warnings, "\n"), w) {
					t.Errorf("warnings %q lack %q", chk.Warnings, w)
				}
			}
			if len(l.Parts) != 2 || l.Parts[1].Label != "ROOT-Ä" {
				t.Errorf("partitions %+v", l.Parts)
			}
		})
	}
}

// A disk with a crafted GPT is left out of ScanDisks (init and the updater
// look for their root with it), and the good disk is still found.
func TestScanDisksSkipsCraftedGPT(t *testing.T) {
	sys, dev := t.TempDir(), t.TempDir()
	good := image(t, smallLayout())
	bad := image(t, smallLayout())
	for _, lba := range []int{1, 127} {
		patchHeader(bad, lba, func(h []byte) { binary.LittleEndian.PutUint32(h[80:84], 0xFFFFFFFF) })
	}
	for name, img := range map[string][]byte{"vda": good, "sdz": bad} {
		if err := os.MkdirAll(filepath.Join(sys, name, name+"1"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(sys, name, "size"), []byte("128\n"), 0o644)
		os.WriteFile(filepath.Join(sys, name, name+"1", "partition"), []byte("1\n"), 0o644)
		os.WriteFile(filepath.Join(dev, name), img, 0o644)
	}
	disks, err := ScanDisks(sys, dev)
	if err != nil {
		t.Fatal(err)
	}
	if len(disks) != 1 || disks[0].Name != "vda" {
		t.Fatalf("disks %+v, want vda only", disks)
	}
}

// countingReader counts the bytes asked for.
type countingReader struct {
	r *bytes.Reader
	n int
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.n += len(p)
	return c.r.ReadAt(p, off)
}

func FuzzReadGPT(f *testing.F) {
	// Seeds are small disks with a table of 4 entries: the fuzzer mutates
	// every byte of them quickly.
	good := tinyGPT(4, 16)
	f.Add(good)
	f.Add(good[:12*SectorSize])
	crafted := bytes.Clone(good)
	patchHeader(crafted, 1, func(h []byte) { binary.LittleEndian.PutUint32(h[80:84], 0xFFFFFFFF) })
	f.Add(crafted)
	damaged := bytes.Clone(good)
	damaged[2*SectorSize]++
	f.Add(damaged)
	// (a full-size table of 128 entries is in TestParseGPTCrafted)
	f.Fuzz(func(t *testing.T, img []byte) {
		cr := &countingReader{r: bytes.NewReader(img)}
		l, _, err := ParseGPT(cr, int64(len(img)))
		// Two headers and two entry arrays at most, whatever is claimed.
		if cr.n > 4*SectorSize+2*MaxGPTEntriesBytes {
			t.Fatalf("read %d bytes", cr.n)
		}
		if err != nil {
			return
		}
		for _, p := range l.Parts {
			if p.Size <= 0 || p.Start < 0 || p.Num < 1 || p.Num > MaxGPTEntriesBytes/minGPTEntrySize {
				t.Fatalf("partition %+v", p)
			}
		}
	})
}

// tinyGPT is a disk of sectors with a GPT of count 128-byte entries (one
// sector of entries each side) and one partition in the middle.
func tinyGPT(count, sectors int) []byte {
	img := make([]byte, sectors*SectorSize)
	last := sectors - 1
	ents := img[2*SectorSize : 2*SectorSize+count*128]
	copy(ents[0:16], []byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}) // ESP
	ents[16] = 1
	binary.LittleEndian.PutUint64(ents[32:40], 4)
	binary.LittleEndian.PutUint64(ents[40:48], uint64(sectors-4))
	copy(ents[56:], []byte{'E', 0, 'S', 0, 'P', 0})
	copy(img[(last-1)*SectorSize:], ents)
	sum := crc32.ChecksumIEEE(ents)
	for _, hdr := range [][2]int{{1, last}, {last, 1}} {
		h := img[hdr[0]*SectorSize:]
		copy(h, "EFI PART")
		binary.LittleEndian.PutUint32(h[8:12], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:16], 92)
		binary.LittleEndian.PutUint64(h[24:32], uint64(hdr[0]))
		binary.LittleEndian.PutUint64(h[32:40], uint64(hdr[1]))
		binary.LittleEndian.PutUint64(h[40:48], 3)
		binary.LittleEndian.PutUint64(h[48:56], uint64(sectors-3))
		entLBA := 2
		if hdr[0] == last {
			entLBA = last - 1
		}
		binary.LittleEndian.PutUint64(h[72:80], uint64(entLBA))
		binary.LittleEndian.PutUint32(h[80:84], uint32(count))
		binary.LittleEndian.PutUint32(h[84:88], 128)
		binary.LittleEndian.PutUint32(h[88:92], sum)
		patchHeader(img, hdr[0], func([]byte) {})
	}
	return img
}

func TestTinyGPT(t *testing.T) {
	img := tinyGPT(4, 16)
	l, c, err := ParseGPT(bytes.NewReader(img), int64(len(img)))
	if err != nil || len(c.Warnings) != 0 || len(l.Parts) != 1 || l.Parts[0].Type != TypeESP || l.Parts[0].Label != "ESP" || l.Parts[0].Size != 9*SectorSize {
		t.Fatalf("%+v %+v %v", l, c, err)
	}
}
