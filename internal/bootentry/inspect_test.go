package bootentry

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/internal/format/fatfs"
	"github.com/slateos/slate/partitions"
)

// inspectImage writes a small slate-like disk: a GPT and an ESP with slot
// a's entry, and returns its path.
func inspectImage(t *testing.T) string {
	t.Helper()
	const size = 48 << 20
	l := partitions.Layout{Size: size, GUID: "5A92BAF2-4FF3-4F69-98D8-137964E3D4E3", Parts: []partitions.Part{
		{Num: partitions.NumESP, Label: partitions.LabelESP, Type: partitions.TypeESP, GUID: "11111111-2222-3333-4444-555555555555", Start: partitions.Align, Size: 40 << 20},
		{Num: partitions.NumRootA, Label: partitions.LabelRootA, Type: partitions.TypeRoot, GUID: "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE", Start: 41 << 20, Size: 6 << 20},
	}}
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := partitions.WriteGPT(f, l); err != nil {
		t.Fatal(err)
	}
	esp, err := fatfs.New(fatfs.Options{Size: l.Parts[0].Size, Label: "ESP", VolumeID: 1, Time: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	ent := Config{Title: "slate t 1.0.0 (slot a)", Version: "1.0.0", Slot: "a", Linux: "/slate/a/vmlinuz", Initrd: "/slate/a/initrd.img", Options: "root=PARTUUID=x ro slate.slot=a"}.Render()
	if err := esp.AddFile(EntriesDir+"/"+(Entry{Version: "1.0.0", Slot: "a"}).Name(), int64(len(ent)), func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(ent)), nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := esp.WriteTo(f, l.Parts[0].Start); err != nil {
		t.Fatal(err)
	}
	return p
}

// inspect used to call a damaged or truncated GPT fine.
func TestInspectReportsGPTDamage(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, p string)
		want   []string
		backup bool
	}{
		{name: "good", damage: func(*testing.T, string) {}},
		{name: "primary header", backup: true, want: []string{"GPT: the primary GPT is damaged (header CRC"}, damage: func(t *testing.T, p string) {
			patch(t, p, partitions.SectorSize+60)
		}},
		{name: "backup header", want: []string{"GPT: the backup GPT is damaged"}, damage: func(t *testing.T, p string) {
			patch(t, p, (48<<20)-partitions.SectorSize+60)
		}},
		{name: "grown", want: []string{"the disk is larger than its table says"}, damage: func(t *testing.T, p string) {
			if err := os.Truncate(p, 64<<20); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "truncated", want: []string{"the disk is smaller than its table says", "partition 2 (ROOT-A) runs past the end of the disk"}, damage: func(t *testing.T, p string) {
			if err := os.Truncate(p, 44<<20); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := inspectImage(t)
			c.damage(t, p)
			r, err := Inspect(p)
			if err != nil {
				t.Fatal(err)
			}
			var gptProblems []string
			for _, pr := range r.Problems {
				if strings.HasPrefix(pr, "GPT: ") {
					gptProblems = append(gptProblems, pr)
				}
			}
			all := strings.Join(gptProblems, "\n")
			if len(c.want) == 0 && len(gptProblems) != 0 {
				t.Errorf("problems %q on a good disk", gptProblems)
			}
			for _, w := range c.want {
				if !strings.Contains(all, w) {
					t.Errorf("problems %q lack %q", gptProblems, w)
				}
			}
			if r.UsedBackupGPT != c.backup {
				t.Errorf("used backup %v, want %v", r.UsedBackupGPT, c.backup)
			}
			var out bytes.Buffer
			r.WriteText(&out)
			for _, w := range c.want {
				if !strings.Contains(out.String(), "problem: GPT: ") || !strings.Contains(out.String(), w) {
					t.Errorf("text report lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// patch flips one byte of the file at off.
func patch(t *testing.T, p string, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	f.ReadAt(b, off)
	b[0]++
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
