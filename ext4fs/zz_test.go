package ext4fs
import ("testing";"time")
func TestZZ(t *testing.T) {
	for _, sz := range []int64{16<<40 - 4096} {
	f, _ := New(Options{Size: sz, JournalBlocks: 32768})
	t0 := time.Now()
	cw := &countingWriter{}
	if err := f.WriteTo(cw, 0); err != nil { t.Fatal(err) }
	t.Log("plan+write", time.Since(t0), cw.n>>20, "MiB")
	t0 = time.Now()
	img := writeImage(t, f, sz)
	t.Log("write", time.Since(t0))
	t0 = time.Now()
	fsck(t, img)
	t.Log("fsck", time.Since(t0))
	}
}
