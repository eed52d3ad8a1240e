package payload

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// memChannel is a channel held in memory and served over HTTP, so tests can
// damage any part of it.
type memChannel map[string][]byte

func loadChannel(t testing.TB, f *fixtureT, version string) memChannel {
	t.Helper()
	c := memChannel{}
	for _, name := range []string{ManifestFile, RootFile, KernelFile, InitrdFile} {
		data, err := os.ReadFile(filepath.Join(f.channel, version, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == ManifestFile {
			c[name] = data
		} else {
			c[version+"/"+name] = data
		}
	}
	return c
}

// resign replaces the manifest with edit applied, signed by key: a manifest
// that lies but carries a valid signature, as a compromised or buggy build
// host could produce.
func (c memChannel) resign(t testing.TB, key ed25519.PrivateKey, edit func(*Manifest)) {
	t.Helper()
	m := c.manifest(t)
	edit(m)
	c[ManifestFile] = SignEnvelope(m.Marshal(), key)
}

// manifest parses the (unverified) manifest inside the envelope.
func (c memChannel) manifest(t testing.TB) *Manifest {
	t.Helper()
	env, err := ParseEnvelope(c[ManifestFile])
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(env.Signed)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// setSig replaces the first signature's base64 text.
func (c memChannel) setSig(t testing.TB, edit func(string) string) {
	t.Helper()
	env, err := ParseEnvelope(c[ManifestFile])
	if err != nil {
		t.Fatal(err)
	}
	old := b64(env.Signatures[0].Sig)
	c[ManifestFile] = bytes.Replace(c[ManifestFile], []byte(`"sig": "`+old+`"`), []byte(`"sig": "`+edit(old)+`"`), 1)
}

func (c memChannel) handler(override map[string]http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		if h, ok := override[name]; ok {
			h(w, r)
			return
		}
		data, ok := c[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
	})
}

func rootOf(t testing.TB, c memChannel) File {
	f, _ := c.manifest(t).File(RoleRoot)
	return f
}

func TestTampering(t *testing.T) {
	f := fixture(t)
	const v = "1.0.0"
	rootPath := v + "/" + RootFile
	_, otherKey := testKeys(t)

	tests := []struct {
		name     string
		damage   func(t *testing.T, c memChannel) map[string]http.HandlerFunc
		is       error  // the error must wrap this
		contains string // and contain this
	}{
		{
			name: "flipped byte in root.img.zst",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c[rootPath][len(c[rootPath])/2] ^= 0x40
				return nil
			},
			is:       ErrCorrupt,
			contains: "root.img.zst: ",
		},
		{
			name: "flipped last byte in root.img.zst",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c[rootPath][len(c[rootPath])-1] ^= 1
				return nil
			},
			is:       ErrCorrupt,
			contains: "root.img.zst: ",
		},
		{
			name: "flipped byte in vmlinuz",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c[v+"/"+KernelFile][12345] ^= 1
				return nil
			},
			is:       ErrCorrupt,
			contains: "vmlinuz: sha256 mismatch: got ",
		},
		{
			name: "flipped byte in the manifest",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				i := bytes.Index(c[ManifestFile], []byte(`"signed"`)) + 40
				c[ManifestFile][i] ^= 1
				return nil
			},
			is:       ErrSignatureMismatch,
			contains: "signature does not match (wrong key or tampered manifest)",
		},
		{
			name: "manifest with a different version, same signature",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c[ManifestFile] = bytes.Replace(c[ManifestFile], []byte(`"version": "1.0.0"`), []byte(`"version": "9.0.0"`), 1)
				return nil
			},
			is: ErrSignatureMismatch,
		},
		{
			name: "changed character in the signature",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c.setSig(t, func(s string) string {
					if s[10] == 'A' {
						return s[:10] + "B" + s[11:]
					}
					return s[:10] + "A" + s[11:]
				})
				return nil
			},
			is: ErrSignatureMismatch,
		},
		{
			name: "signature by another key",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c.resign(t, otherKey, func(*Manifest) {})
				return nil
			},
			is:       ErrUntrusted,
			contains: "no signature by a trusted key",
		},
		{
			name: "truncated signature",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c.setSig(t, func(s string) string { return s[:50] })
				return nil
			},
			is:       ErrMalformedSignature,
			contains: "malformed signature: 50 characters, want 88",
		},
		{
			name: "signature not base64",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c.setSig(t, func(s string) string { return s[:3] + "*" + s[4:] })
				return nil
			},
			is:       ErrMalformedSignature,
			contains: "not base64",
		},
		{
			name: "empty signature",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c.setSig(t, func(string) string { return "" })
				return nil
			},
			is:       ErrMalformedSignature,
			contains: "malformed signature: empty",
		},
		{
			name: "truncated root.img.zst",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c[rootPath] = c[rootPath][:len(c[rootPath])-100]
				return nil
			},
			is:       ErrCorrupt,
			contains: "root.img.zst: truncated: got ",
		},
		{
			name: "root.img.zst replaced by a valid but different zstd file",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c[rootPath] = loadChannel(t, f, "1.2.0-rc.1")["1.2.0-rc.1/"+RootFile]
				return nil
			},
			is:       ErrCorrupt,
			contains: "root.img.zst: ",
		},
		{
			name: "manifest says size is smaller",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c.resign(t, f.priv, func(m *Manifest) { m.Files[0].Size-- })
				return nil
			},
			is:       ErrCorrupt,
			contains: "root.img.zst: decompressed data is longer than size",
		},
		{
			name: "manifest says size is larger",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c.resign(t, f.priv, func(m *Manifest) { m.Files[0].Size += 4096 })
				return nil
			},
			is:       ErrCorrupt,
			contains: "root.img.zst: decompressed data truncated: got 4194304 of 4198400 bytes",
		},
		{
			name: "manifest says compressed_size is smaller",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c.resign(t, f.priv, func(m *Manifest) { m.Files[0].CompressedSize -= 10 })
				return nil
			},
			is:       ErrCorrupt,
			contains: "root.img.zst: source has more than compressed_size",
		},
		{
			name: "manifest says compressed_size is larger",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c.resign(t, f.priv, func(m *Manifest) { m.Files[0].CompressedSize += 10 })
				return nil
			},
			is:       ErrCorrupt,
			contains: "root.img.zst: truncated: got ",
		},
		{
			name: "manifest has another sha256",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c.resign(t, f.priv, func(m *Manifest) { m.Files[0].SHA256 = hashA })
				return nil
			},
			is:       ErrCorrupt,
			contains: "root.img.zst: sha256 mismatch: got ",
		},
		{
			name: "manifest has another compressed_sha256",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c.resign(t, f.priv, func(m *Manifest) { m.Files[0].CompressedSHA256 = hashA })
				return nil
			},
			is:       ErrCorrupt,
			contains: "root.img.zst: compressed_sha256 mismatch: got ",
		},
		{
			name: "signed manifest with an unknown field",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				m := bytes.Replace(c.manifest(t).Marshal(), []byte(`"format": 2,`), []byte(`"format": 2, "delta": true,`), 1)
				c[ManifestFile] = SignEnvelope(m, f.priv)
				return nil
			},
			contains: "error at $.delta: unknown field",
		},
		{
			name: "signed manifest of format 2",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c.resign(t, f.priv, func(m *Manifest) { m.Format = 3 })
				return nil
			},
			is:       ErrNewerFormat,
			contains: "manifest format 3 is newer than this slate understands",
		},
		{
			name: "signed manifest with a duplicate role",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c.resign(t, f.priv, func(m *Manifest) { m.Files[2].Role = RoleKernel })
				return nil
			},
			contains: "error at $.files[2].role: duplicate role \"kernel\"",
		},
		{
			name: "signed manifest with path ../x",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				c.resign(t, f.priv, func(m *Manifest) { m.Files[1].Path = "../x" })
				return nil
			},
			contains: "error at $.files[1].path: path \"../x\" must not contain ..",
		},
		{
			name: "server sends extra bytes",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				data := c[rootPath]
				return map[string]http.HandlerFunc{rootPath: func(w http.ResponseWriter, r *http.Request) {
					w.Write(data)
					w.Write([]byte("and some more"))
				}}
			},
			is:       ErrCorrupt,
			contains: "root.img.zst: source has more than compressed_size",
		},
		{
			name: "server sends a valid second zstd frame",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				data := c[rootPath]
				return map[string]http.HandlerFunc{rootPath: func(w http.ResponseWriter, r *http.Request) {
					w.Write(data)
					w.Write(data)
				}}
			},
			is:       ErrCorrupt,
			contains: "more than compressed_size",
		},
		{
			name: "server never stops sending",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				data := c[rootPath]
				return map[string]http.HandlerFunc{rootPath: func(w http.ResponseWriter, r *http.Request) {
					w.Write(data)
					buf := make([]byte, 64<<10)
					for r.Context().Err() == nil {
						if _, err := w.Write(buf); err != nil {
							return
						}
					}
				}}
			},
			is:       ErrCorrupt,
			contains: "root.img.zst: source has more than compressed_size",
		},
		{
			name: "server answers 404",
			damage: func(t *testing.T, c memChannel) map[string]http.HandlerFunc {
				delete(c, v+"/"+InitrdFile)
				return nil
			},
			contains: "initrd.img: 404 Not Found",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := loadChannel(t, f, v)
			override := tc.damage(t, c)
			srv := httptest.NewServer(c.handler(override))
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, _, err := download(ctx, t, srv.Client(), srv.URL, f.pub, nil)
			if err == nil {
				t.Fatal("damaged channel downloaded without an error")
			}
			t.Logf("error: %v", err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error does not wrap %v", tc.is)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error does not contain %q", tc.contains)
			}
			if ctx.Err() != nil {
				t.Error("download ran into the test timeout")
			}
		})
	}

	t.Run("undamaged", func(t *testing.T) {
		c := loadChannel(t, f, v)
		srv := httptest.NewServer(c.handler(nil))
		defer srv.Close()
		if _, _, err := download(context.Background(), t, srv.Client(), srv.URL, f.pub, nil); err != nil {
			t.Fatal(err)
		}
	})
}

// TestVerifierBounds checks that the Verifier never pulls more than one byte
// past compressed_size from its source and never emits more than size bytes,
// whatever the source does.
func TestVerifierBounds(t *testing.T) {
	f := fixture(t)
	c := loadChannel(t, f, "1.0.0")
	root := rootOf(t, c)
	kernel, _ := f.manifests["1.0.0"].File(RoleKernel)
	tests := []struct {
		name string
		file File
		src  io.Reader
	}{
		{"endless zeros as zstd", root, zeros{}},
		{"valid stream then endless zeros", root, io.MultiReader(bytes.NewReader(c["1.0.0/"+RootFile]), zeros{})},
		{"endless zeros uncompressed", kernel, zeros{}},
		{"valid kernel then more", kernel, io.MultiReader(bytes.NewReader(c["1.0.0/"+KernelFile]), zeros{})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cr := &countReader{r: tc.src}
			v, err := OpenFile(tc.file, cr)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			n, err := io.Copy(io.Discard, v)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if n > tc.file.Size {
				t.Errorf("emitted %d bytes, size is %d", n, tc.file.Size)
			}
			if cr.n.Load() > tc.file.CompressedSize+1 {
				t.Errorf("read %d bytes from the source, compressed_size is %d", cr.n.Load(), tc.file.CompressedSize)
			}
			if _, err2 := v.Read(make([]byte, 10)); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("read after failure: %v, want the same error again", err2)
			}
		})
	}
}

// A zstd bomb: a few bytes that decompress to far more than the manifest says.
func TestVerifierZstdBomb(t *testing.T) {
	var buf bytes.Buffer
	if _, err := Compress(&buf, newSparseImage(512<<20, 0, 1), 512<<20); err != nil {
		t.Fatal(err)
	}
	bomb := buf.Bytes()
	f := File{Role: RoleRoot, Path: "x/root.img.zst", Size: 1 << 20, CompressedSize: int64(len(bomb)),
		SHA256: hashA, CompressedSHA256: sha256hex(bomb), Compression: CompressionZstd}
	v, err := OpenFile(f, bytes.NewReader(bomb))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	n, err := io.Copy(io.Discard, v)
	if err == nil || !strings.Contains(err.Error(), "decompressed data is longer than size 1048576") {
		t.Fatalf("err = %v", err)
	}
	if n != f.Size {
		t.Errorf("emitted %d bytes", n)
	}
}

// A stream that needs a larger window than MaxWindow is refused, not decoded
// into a huge buffer.
func TestVerifierWindowLimit(t *testing.T) {
	// A hand-made frame header: magic, descriptor (single segment off, no
	// checksum, no dict, FCS none), window descriptor for 1 GiB.
	frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x28 << 2}
	frame = append(frame, make([]byte, 64)...)
	f := File{Role: RoleRoot, Path: "root.img.zst", Size: 1 << 20, CompressedSize: int64(len(frame)),
		SHA256: hashA, CompressedSHA256: sha256hex(frame), Compression: CompressionZstd}
	v, err := OpenFile(f, bytes.NewReader(frame))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	_, err = io.Copy(io.Discard, v)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "window") {
		t.Fatalf("err = %v, want a window size error", err)
	}
}

func TestVerifierSourceError(t *testing.T) {
	f := fixture(t)
	c := loadChannel(t, f, "1.0.0")
	root := rootOf(t, c)
	boom := errors.New("disk on fire")
	v, err := OpenFile(root, io.MultiReader(bytes.NewReader(c["1.0.0/"+RootFile][:1000]), errReader{boom}))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	_, err = io.Copy(io.Discard, v)
	if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want the source's error and not ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), "root.img.zst: reading after 1000 of") {
		t.Errorf("err = %v", err)
	}
}

func TestOpenFileBadManifestEntry(t *testing.T) {
	good := File{Role: RoleKernel, Path: "v", Size: 1, CompressedSize: 1, SHA256: hashA, CompressedSHA256: hashA, Compression: CompressionNone}
	tests := []struct {
		name   string
		mutate func(*File)
	}{
		{"zero size", func(f *File) { f.Size = 0 }},
		{"huge compressed size", func(f *File) { f.CompressedSize = MaxFileSize + 1 }},
		{"bad hash", func(f *File) { f.SHA256 = "x" }},
		{"unknown compression", func(f *File) { f.Compression = "xz" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := good
			tc.mutate(&f)
			if _, err := OpenFile(f, strings.NewReader("x")); err == nil {
				t.Error("accepted")
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type countReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
