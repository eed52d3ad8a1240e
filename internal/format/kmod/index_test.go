package kmod

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

func TestOpenRealTree(t *testing.T) {
	ix := realIndex(t)
	dir := kernelTree(t)
	if got, want := ix.KernelVersion(), filepath.Base(dir); got != want {
		t.Errorf("KernelVersion() = %q, want %q", got, want)
	}
	n := 0
	filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && isModuleFile(d.Name()) {
			n++
		}
		return nil
	})
	if got := len(ix.Modules()); got != n {
		t.Errorf("index has %d modules, tree has %d module files", got, n)
	}
	ext4 := ix.byName["ext4"]
	if ext4 == nil {
		t.Fatal("no ext4 in index")
	}
	if ext4.Path != "kernel/fs/ext4/ext4.ko" {
		t.Errorf("ext4 path %q", ext4.Path)
	}
	if !slices.Contains(ext4.Aliases, "fs-ext4") {
		t.Errorf("ext4 aliases %v lack fs-ext4", ext4.Aliases)
	}
	if !slices.Contains(ext4.SoftDeps, "pre: crypto-crc32c") {
		t.Errorf("ext4 softdeps %v", ext4.SoftDeps)
	}
	if !ix.builtin["af_packet"] {
		t.Error("af_packet should be built in (modules.builtin)")
	}
}

func names(mods []*Module) []string {
	var out []string
	for _, m := range mods {
		out = append(out, m.Name)
	}
	return out
}

// checkOrder fails when a module comes before one of its hard dependencies.
func checkOrder(t *testing.T, ix *Index, mods []*Module) {
	t.Helper()
	pos := map[string]int{}
	for i, m := range mods {
		if _, dup := pos[m.Name]; dup {
			t.Errorf("%s listed twice", m.Name)
		}
		pos[m.Name] = i
	}
	for i, m := range mods {
		for _, d := range m.Depends {
			j, ok := pos[d]
			if !ok {
				if !ix.builtin[d] {
					t.Errorf("%s needs %s, which is missing", m.Name, d)
				}
				continue
			}
			if j > i {
				t.Errorf("%s (at %d) comes before its dependency %s (at %d)", m.Name, i, d, j)
			}
		}
	}
}

func TestResolveClosure(t *testing.T) {
	ix := realIndex(t)
	tests := []struct {
		spec string
		want []string // must be in the closure
	}{
		{"virtio_blk", []string{"virtio_blk", "virtio", "virtio_ring"}},
		{"virtio-blk", []string{"virtio_blk", "virtio", "virtio_ring"}},
		{"ext4", []string{"ext4", "jbd2", "mbcache", "crc16", "crc32c_generic", "crc32c_intel"}},
		{"overlay", []string{"overlay"}},
		{"nvme", []string{"nvme", "nvme_core"}},
		{"e1000e", []string{"e1000e"}},
		{"fs-ext4", []string{"ext4", "jbd2"}},                // an alias
		{"kernel/fs/ext4/ext4.ko", []string{"ext4", "jbd2"}}, // a path
		{"kernel/drivers/net/ethernet/intel", []string{"e1000e", "igb", "ixgbe", "i40e", "ice", "e1000"}},
		{"r8169", []string{"r8169", "realtek"}}, // softdep pre: realtek
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			mods, err := ix.Resolve([]string{tt.spec})
			if err != nil {
				t.Fatal(err)
			}
			got := names(mods)
			for _, w := range tt.want {
				if !slices.Contains(got, w) {
					t.Errorf("closure of %s = %v, lacks %s", tt.spec, got, w)
				}
			}
			checkOrder(t, ix, mods)
			again, _ := ix.Resolve([]string{tt.spec})
			if !slices.Equal(names(again), got) {
				t.Errorf("order not stable: %v then %v", got, names(again))
			}
		})
	}
	// softdep pre: comes before its user
	mods, _ := ix.Resolve([]string{"ext4"})
	got := names(mods)
	if slices.Index(got, "crc32c_generic") > slices.Index(got, "ext4") {
		t.Errorf("soft dependency crc32c_generic after ext4: %v", got)
	}
}

// TestDependsMatchModinfo checks what Open read against kmod's modinfo run
// on the same files.
func TestDependsMatchModinfo(t *testing.T) {
	ix := realIndex(t)
	modinfo := hostTool(t, "modinfo")
	mods, err := ix.Resolve([]string{"virtio_blk", "ext4", "overlay", "nvme", "e1000e", "mlx5_core", "r8169"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		for _, field := range []string{"depends", "alias", "softdep"} {
			out, err := exec.Command(modinfo, "-F", field, filepath.Join(ix.dir, m.Path)).Output()
			if err != nil {
				t.Fatalf("modinfo %s: %v", m.Path, err)
			}
			var want []string
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if l == "" {
					continue
				}
				if field == "depends" {
					for _, d := range strings.Split(l, ",") {
						want = append(want, canonical(d))
					}
				} else {
					want = append(want, l)
				}
			}
			var got []string
			switch field {
			case "depends":
				got = m.Depends
			case "alias":
				got = m.Aliases
			case "softdep":
				got = m.SoftDeps
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s %s = %q, modinfo says %q", m.Name, field, got, want)
			}
		}
	}
}

// TestModulesDepMatchesDepmod writes the whole tree's index files and
// compares them with what depmod computes for the same tree.
func TestModulesDepMatchesDepmod(t *testing.T) {
	ix := realIndex(t)
	dir := kernelTree(t)
	want := depmodSections(t, filepath.Join(dir, "..", "..", ".."), ix.KernelVersion())
	w := newMemWriter()
	if err := ix.WriteTree(w, ix.Modules()); err != nil {
		t.Fatal(err)
	}
	root := "lib/modules/" + ix.KernelVersion() + "/"
	compareDepmod(t, want, w.files, root)
}

func compareDepmod(t *testing.T, want map[string]string, files map[string][]byte, root string) {
	t.Helper()
	gotOrder, gotDeps := depLines(t, string(files[root+"modules.dep"]))
	wantOrder, wantDeps := depLines(t, want["modules.dep"])
	if len(gotOrder) != len(wantOrder) {
		t.Errorf("modules.dep has %d lines, depmod's %d", len(gotOrder), len(wantOrder))
	}
	sameOrder := 0
	for p, wd := range wantDeps {
		gd, ok := gotDeps[p]
		if !ok {
			t.Errorf("modules.dep lacks %s", p)
			continue
		}
		if slices.Equal(gd, wd) {
			sameOrder++
		}
		gs, ws := slices.Clone(gd), slices.Clone(wd)
		sort.Strings(gs)
		sort.Strings(ws)
		if !slices.Equal(gs, ws) {
			t.Errorf("modules.dep %s:\n got  %v\n want %v", p, gd, wd)
		}
	}
	if slices.Equal(gotOrder, wantOrder) {
		t.Logf("modules.dep: %d lines, same line order as depmod, %d lines with the same dependency order", len(gotOrder), sameOrder)
	} else {
		t.Logf("modules.dep: %d lines; line order differs from depmod; %d lines with the same dependency order", len(gotOrder), sameOrder)
	}
	for _, name := range []string{"modules.alias", "modules.softdep", "modules.devname"} {
		if got := string(files[root+name]); got != want[name] {
			t.Errorf("%s differs from depmod's:\n%s", name, firstDiff(got, want[name]))
		}
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + ":\n got  " + gl + "\n want " + wl
		}
	}
	return "(same lines)"
}

// TestDefaultSets resolves the default sets, writes them to disk, and checks
// the written tree with depmod run on it.
func TestDefaultSets(t *testing.T) {
	ix := realIndex(t)
	for _, tt := range []struct {
		name  string
		specs []string
		limit int64
	}{
		{"DefaultInitramfs", DefaultInitramfs, 14 << 20},
		{"DefaultRoot", DefaultRoot, 36 << 20},
		{"DefaultNetboot", DefaultNetboot, 36 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mods, err := ix.Resolve(tt.specs)
			if err != nil {
				t.Fatal(err)
			}
			checkOrder(t, ix, mods)
			var size int64
			for _, m := range mods {
				size += m.Size
			}
			t.Logf("%s: %d modules, %d bytes (%.2f MiB) of .ko files", tt.name, len(mods), size, float64(size)/(1<<20))
			if size > tt.limit {
				t.Errorf("%s is %d bytes, over %d", tt.name, size, tt.limit)
			}
			root := t.TempDir()
			if err := ix.WriteTree(dirWriter{root}, mods); err != nil {
				t.Fatal(err)
			}
			mdir := filepath.Join(root, "lib", "modules", ix.KernelVersion())
			files := map[string][]byte{}
			for _, n := range []string{"modules.dep", "modules.alias", "modules.softdep", "modules.devname"} {
				data, err := os.ReadFile(filepath.Join(mdir, n))
				if err != nil {
					t.Fatal(err)
				}
				files[n] = data
			}
			compareDepmod(t, depmodSections(t, root, ix.KernelVersion()), files, "")
			for _, m := range mods {
				st, err := os.Stat(filepath.Join(mdir, m.Path))
				if err != nil || st.Size() != m.Size {
					t.Errorf("%s not written whole: %v", m.Path, err)
				}
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	ix := realIndex(t)
	tests := []struct {
		specs   []string
		wantErr []string // substrings; nil means no error
		wantN   int      // modules expected when no error
	}{
		{[]string{"no_such_module"}, []string{`"no_such_module"`}, 0},
		{[]string{"kernel/drivers/nope"}, []string{`"kernel/drivers/nope"`}, 0},
		{[]string{"ext4", "bogus1", "bogus2"}, []string{`"bogus1"`, `"bogus2"`}, 0},
		{[]string{""}, []string{"empty"}, 0},
		{[]string{"af_packet"}, nil, 0},                      // built in
		{[]string{"kernel/net/packet/af_packet.ko"}, nil, 0}, // built in, by path
		{[]string{"unix"}, nil, 0},                           // built in
		{nil, nil, 0},
	}
	for _, tt := range tests {
		mods, err := ix.Resolve(tt.specs)
		if tt.wantErr == nil {
			if err != nil || len(mods) != tt.wantN {
				t.Errorf("Resolve(%q) = %v, %v; want %d modules", tt.specs, names(mods), err, tt.wantN)
			}
			continue
		}
		if err == nil {
			t.Errorf("Resolve(%q) succeeded, want error", tt.specs)
			continue
		}
		for _, w := range tt.wantErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Resolve(%q) error %q does not name %s", tt.specs, err, w)
			}
		}
	}
}

func TestWriteTreeRejectsOpenSet(t *testing.T) {
	ix := realIndex(t)
	err := ix.WriteTree(newMemWriter(), []*Module{ix.byName["ext4"]})
	if err == nil || !strings.Contains(err.Error(), "jbd2") {
		t.Errorf("WriteTree(ext4 alone) = %v, want an error naming jbd2", err)
	}
	foreign := &Module{Name: "ext4", Path: "kernel/fs/ext4/ext4.ko"}
	if err := ix.WriteTree(newMemWriter(), []*Module{foreign}); err == nil {
		t.Error("WriteTree accepted a module from elsewhere")
	}
}

func TestWriteTreeLayout(t *testing.T) {
	ix := realIndex(t)
	mods, err := ix.Resolve([]string{"ext4"})
	if err != nil {
		t.Fatal(err)
	}
	w := newMemWriter()
	if err := ix.WriteTree(w, mods); err != nil {
		t.Fatal(err)
	}
	root := "lib/modules/" + ix.KernelVersion()
	if w.dirs[0] != "lib" || w.dirs[1] != "lib/modules" || w.dirs[2] != root {
		t.Errorf("first dirs %v", w.dirs[:3])
	}
	seen := map[string]bool{}
	for _, d := range w.dirs {
		if seen[d] {
			t.Errorf("Mkdir %s twice", d)
		}
		if p := filepath.Dir(d); p != "." && !seen[p] {
			t.Errorf("Mkdir %s before its parent", d)
		}
		seen[d] = true
	}
	for _, m := range mods {
		if w.sizes[root+"/"+m.Path] != m.Size {
			t.Errorf("%s: size %d, want %d", m.Path, w.sizes[root+"/"+m.Path], m.Size)
		}
	}
	builtin, _ := os.ReadFile(filepath.Join(ix.dir, "modules.builtin"))
	if string(w.files[root+"/modules.builtin"]) != string(builtin) {
		t.Error("modules.builtin not copied as is")
	}
	order := strings.Fields(string(w.files[root+"/modules.order"]))
	if len(order) != len(mods) {
		t.Errorf("modules.order has %d lines for %d modules", len(order), len(mods))
	}
}
