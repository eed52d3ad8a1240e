package payload

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
)

func FuzzParseManifest(f *testing.F) {
	base, _ := json.Marshal(baseManifest())
	f.Add(base)
	m, _ := ParseManifest(base)
	f.Add(m.Marshal())
	f.Add(topWithRollout().Marshal())
	f.Add([]byte(dupFileKey()))
	f.Add([]byte(`{"format":2}`))
	f.Add([]byte(`{"format":1,"name":"a","version":"1.0.0-rc.1","kernel_version":"6","created":"2026-01-01T00:00:00.123+05:30","files":[]}`))
	f.Add([]byte(`[1,2,3]`))
	f.Add([]byte(`{"files":[{"path":"../x"}]}`))
	f.Add([]byte("{\"name\":\"\xff\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error without a JSON path: %v", err)
			}
			return
		}
		out := m.Marshal()
		m2, err := ParseManifest(out)
		if err != nil {
			t.Fatalf("accepted manifest does not re-parse after Marshal: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-parsed manifest differs:\n%+v\n%+v", m, m2)
		}
		if !bytes.Equal(m2.Marshal(), out) {
			t.Fatal("Marshal is not stable")
		}
		// Invariants the updater relies on.
		for _, r := range roles {
			if _, ok := m.File(r); !ok {
				t.Fatalf("accepted manifest has no %s file", r)
			}
		}
		for _, fl := range m.Files {
			if validatePath(fl.Path) != nil || fl.Size <= 0 || fl.Size > MaxFileSize {
				t.Fatalf("accepted bad file %+v", fl)
			}
		}
	})
}

// FuzzEnvelope feeds random envelope files to ParseEnvelope and
// OpenEnvelope: nothing may panic, every refusal names a JSON path or a
// signature error, and nothing verifies unless its signed bytes are the
// real manifest's (the fuzzer cannot forge ed25519).
func FuzzEnvelope(f *testing.F) {
	seed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))
	pub := seed.Public().(ed25519.PublicKey)
	base, _ := json.Marshal(baseManifest())
	good := SignEnvelope(base, seed)
	f.Add(good)
	f.Add(SignEnvelope(base, other, seed))
	f.Add(SignEnvelope(base, other))
	f.Add(SignEnvelope([]byte(`{"format":2}`), seed))
	f.Add(bytes.Replace(good, []byte(`"signed": {`), []byte(`"signed": {"x":1,`), 1))
	f.Add([]byte(`{"format":2,"signatures":[],"signed":{}}`))
	f.Add([]byte(`{"format":2,"signatures":[{"key_id":"0011223344556677","sig":""}],"signed":{},"signed":{}}`))
	f.Add(base)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := ParseEnvelope(data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error without a JSON path: %v", err)
			}
			if _, err := OpenEnvelope([]ed25519.PublicKey{pub}, data); err == nil {
				t.Fatal("OpenEnvelope accepted what ParseEnvelope refused")
			}
			return
		}
		if len(env.Signatures) == 0 || len(env.Signatures) > MaxSignatures {
			t.Fatalf("accepted %d signatures", len(env.Signatures))
		}
		_, err = env.Verify([]ed25519.PublicKey{pub})
		if err == nil {
			if !bytes.Equal(env.Signed, bytes.TrimSpace(base)) && string(env.Signed) != `{"format":2}` {
				t.Fatalf("forged envelope verified:\n%q", data)
			}
			return
		}
		if !errors.Is(err, ErrSignatureMismatch) && !errors.Is(err, ErrUntrusted) {
			t.Fatalf("unexpected error class: %v", err)
		}
		if _, err := OpenEnvelope([]ed25519.PublicKey{pub}, data); err == nil {
			t.Fatal("OpenEnvelope accepted what Verify refused")
		}
	})
}

// FuzzOpenFile feeds arbitrary stored bytes to a Verifier for a real manifest
// entry: it must never panic, never emit more than size bytes, never read more
// than compressed_size+1 bytes, and end in io.EOF only for the real file.
func FuzzOpenFile(f *testing.F) {
	var stored bytes.Buffer
	img := newSparseImage(256<<10, 2, 9)
	entry, err := Compress(&stored, img, 256<<10)
	if err != nil {
		f.Fatal(err)
	}
	entry.Role, entry.Path = RoleRoot, "1.0.0/root.img.zst"
	real := stored.Bytes()
	f.Add(real)
	f.Add(real[:len(real)/2])
	f.Add(append(append([]byte{}, real...), 0))
	flipped := append([]byte{}, real...)
	flipped[len(flipped)/3] ^= 0x10
	f.Add(flipped)
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd})
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countReader{r: bytes.NewReader(data)}
		v, err := OpenFile(entry, cr)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		n, err := io.Copy(io.Discard, v)
		if n > entry.Size {
			t.Fatalf("emitted %d bytes", n)
		}
		if cr.n.Load() > entry.CompressedSize+1 {
			t.Fatalf("read %d bytes", cr.n.Load())
		}
		if err == nil && !bytes.Equal(data, real) {
			t.Fatal("accepted bytes that are not the file")
		}
		if err != nil && bytes.Equal(data, real) {
			t.Fatalf("refused the real file: %v", err)
		}
	})
}
