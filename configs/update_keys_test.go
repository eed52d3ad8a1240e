package configs

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpdateKeyFiles: the update section's key files must be ed25519
// public keys; a private key (which would be copied into every public
// root image), a file that is no key and a key of another kind are
// refused at the field that names them.
func TestUpdateKeyFiles(t *testing.T) {
	dir := t.TempDir()
	pub1, priv1, _ := ed25519.GenerateKey(rand.Reader)
	pub2, _, _ := ed25519.GenerateKey(rand.Reader)
	write := func(name string, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d1, _ := x509.MarshalPKIXPublicKey(pub1)
	d2, _ := x509.MarshalPKIXPublicKey(pub2)
	dp, _ := x509.MarshalPKCS8PrivateKey(priv1)
	write("k1.pub", "PUBLIC KEY", d1)
	write("k2.pub", "PUBLIC KEY", d2)
	write("update.key", "PRIVATE KEY", dp)
	write("cert.pem", "CERTIFICATE", []byte{1, 2, 3})
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a key\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "openssh"), []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"), 0o600)
	os.Mkdir(filepath.Join(dir, "folder"), 0o755)
	both, _ := os.ReadFile(filepath.Join(dir, "k1.pub"))
	more, _ := os.ReadFile(filepath.Join(dir, "k2.pub"))
	os.WriteFile(filepath.Join(dir, "both.pub"), append(both, more...), 0o644)

	base := "name: u\nversion: 1.0.0\nupdate:\n  channel: http://10.0.2.2:8080/stable\n"
	tests := []struct {
		name  string
		keys  string
		n     int    // keys trusted
		field string // the error names it
		msg   string
	}{
		{name: "public_key", keys: "  public_key: k1.pub\n", n: 1},
		{name: "public_keys", keys: "  public_keys: [k1.pub, k2.pub]\n", n: 2},
		{name: "a file with two keys", keys: "  public_key: both.pub\n", n: 2},
		{name: "private key", keys: "  public_key: update.key\n", field: "$.update.public_key", msg: "is a private key"},
		{name: "openssh private key", keys: "  public_key: openssh\n", field: "$.update.public_key", msg: "is a private key"},
		{name: "private key in the list", keys: "  public_keys: [k1.pub, update.key]\n", field: "$.update.public_keys[1]", msg: "is a private key"},
		{name: "not a key", keys: "  public_key: notes.txt\n", field: "$.update.public_key", msg: "is not a PEM public key"},
		{name: "certificate", keys: "  public_key: cert.pem\n", field: "$.update.public_key", msg: `is "CERTIFICATE"`},
		{name: "missing", keys: "  public_keys: [k1.pub, gone.pub]\n", field: "$.update.public_keys[1]", msg: "does not exist"},
		{name: "folder", keys: "  public_key: folder\n", field: "$.update.public_key", msg: "not a regular file"},
		{name: "same key twice", keys: "  public_keys: [k1.pub, both.pub]\n", field: "$.update.public_keys[1]", msg: "the same key as $.update.public_keys[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse([]byte(base+tc.keys), filepath.Join(dir, "spec.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			s.Dir = dir
			err = s.CheckFiles()
			keys, kerr := s.ParsePublicKeys()
			if tc.field == "" {
				if err != nil || kerr != nil || len(keys) != tc.n {
					t.Fatalf("CheckFiles: %v; ParsePublicKeys: %d keys, %v", err, len(keys), kerr)
				}
				return
			}
			for _, e := range []error{err, kerr} {
				if e == nil || !strings.Contains(e.Error(), tc.field+": ") || !strings.Contains(e.Error(), tc.msg) {
					t.Errorf("err = %v, want %s: ...%s", e, tc.field, tc.msg)
				}
			}
		})
	}
}

func TestUpdateKeyFields(t *testing.T) {
	base := "name: u\nversion: 1.0.0\nupdate:\n  channel: http://10.0.2.2:8080/stable\n"
	tests := []struct{ body, path, msg string }{
		{"  public_key: a.pub\n  public_keys: [b.pub]\n", "$.update.public_keys", "not both"},
		{"  public_keys: []\n", "$.update.public_key", "required"},
		{"  public_keys: ['']\n", "$.update.public_keys[0]", "empty path"},
	}
	for _, tc := range tests {
		_, err := Parse([]byte(base+tc.body), "u.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: err = %v, want %s %q", tc.body, err, tc.path, tc.msg)
		}
	}
}
