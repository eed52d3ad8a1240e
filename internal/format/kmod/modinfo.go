package kmod

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Module is one loadable kernel module of a tree.
type Module struct {
	Name     string   // canonical name: file name without .ko*, '-' turned into '_'
	Path     string   // path relative to the modules dir, slash-separated, e.g. kernel/fs/ext4/ext4.ko
	Size     int64    // size of the file as stored (compressed if it is)
	Depends  []string // hard dependencies (modinfo depends=), canonical names
	Aliases  []string // modinfo alias= patterns, in file order
	SoftDeps []string // raw modinfo softdep= values, e.g. "pre: crypto-crc32c"
	Vermagic string   // modinfo vermagic=
}

// moduleName turns a module file path into the name the kernel and modprobe
// use: the base name without the .ko[.xz|.zst|.gz] suffix, with '-' → '_'.
func moduleName(path string) string {
	base := path[strings.LastIndexByte(path, '/')+1:]
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return canonical(base)
}

// canonical makes '-' and '_' equivalent in a module name, as the kernel does.
func canonical(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

// isModuleFile tells whether a file name is a kernel module, compressed or not.
func isModuleFile(name string) bool {
	for _, s := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// readModinfo returns the raw .modinfo section of the module file at path.
func readModinfo(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.ReaderAt = f
	if !strings.HasSuffix(path, ".ko") {
		// Compressed: the ELF reader needs random access, so inflate it.
		dr, closeFn, err := decompressor(path, f)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(dr)
		closeFn()
		if err != nil {
			return nil, fmt.Errorf("decompress %s: %w", path, err)
		}
		r = bytes.NewReader(data)
	}
	data, err := modinfoFromELF(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}

// modinfoFromELF returns the .modinfo section of an ELF object.
func modinfoFromELF(r io.ReaderAt) (data []byte, err error) {
	// debug/elf has panicked on some malformed files in past Go releases;
	// a broken module must be an error, not a crashed build.
	defer func() {
		if p := recover(); p != nil {
			data, err = nil, fmt.Errorf("malformed ELF file: %v", p)
		}
	}()
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("not an ELF module: %w", err)
	}
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section (not a kernel module)")
	}
	if sec.Type == elf.SHT_NOBITS || sec.Size > 1<<24 {
		return nil, fmt.Errorf("bad .modinfo section (type %v, %d bytes)", sec.Type, sec.Size)
	}
	data, err = sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	return data, nil
}

// decompressor returns a reader of the decompressed content of a module file
// named path whose content is r, and a function releasing the decoder.
func decompressor(path string, r io.Reader) (io.Reader, func(), error) {
	switch {
	case strings.HasSuffix(path, ".xz"):
		xr, err := xz.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("xz %s: %w", path, err)
		}
		return xr, func() {}, nil
	case strings.HasSuffix(path, ".zst"):
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd %s: %w", path, err)
		}
		return zr, zr.Close, nil
	case strings.HasSuffix(path, ".gz"):
		gr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip %s: %w", path, err)
		}
		return gr, func() { gr.Close() }, nil
	case strings.HasSuffix(path, ".ko"):
		return r, func() {}, nil
	}
	return nil, nil, fmt.Errorf("%s: unknown module compression", path)
}

// parseModinfo fills m from a .modinfo section: NUL-separated key=value
// strings (with NUL padding between them).
func parseModinfo(m *Module, data []byte) {
	for len(data) > 0 {
		var kv []byte
		if i := bytes.IndexByte(data, 0); i >= 0 {
			kv, data = data[:i], data[i+1:]
		} else {
			kv, data = data, nil
		}
		k, v, ok := bytes.Cut(kv, []byte("="))
		if !ok {
			continue
		}
		switch string(k) {
		case "depends":
			for d := range strings.SplitSeq(string(v), ",") {
				if d = strings.TrimSpace(d); d != "" {
					m.Depends = append(m.Depends, canonical(d))
				}
			}
		case "alias":
			if len(v) > 0 {
				m.Aliases = append(m.Aliases, string(v))
			}
		case "softdep":
			if len(v) > 0 {
				m.SoftDeps = append(m.SoftDeps, string(v))
			}
		case "vermagic":
			m.Vermagic = string(v)
		}
	}
}

// parseSoftdep splits a softdep value ("pre: a b post: c") into its pre and
// post lists. Names before any "pre:"/"post:" are ignored, as modprobe does.
func parseSoftdep(v string) (pre, post []string) {
	var cur *[]string
	for _, f := range strings.Fields(v) {
		switch f {
		case "pre:":
			cur = &pre
		case "post:":
			cur = &post
		default:
			if cur != nil {
				*cur = append(*cur, f)
			}
		}
	}
	return pre, post
}

// parseBuiltinModinfo reads modules.builtin.modinfo (NUL-separated
// "module.key=value" strings) and returns the aliases of built-in modules.
func parseBuiltinModinfo(data []byte) []aliasEntry {
	var out []aliasEntry
	for rec := range bytes.SplitSeq(data, []byte{0}) {
		k, v, ok := bytes.Cut(rec, []byte("="))
		if !ok || len(v) == 0 {
			continue
		}
		mod, key, ok := bytes.Cut(k, []byte("."))
		if !ok || len(mod) == 0 || string(key) != "alias" {
			continue
		}
		out = append(out, aliasEntry{pattern: string(v), module: canonical(string(mod))})
	}
	return out
}
