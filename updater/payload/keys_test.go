package payload

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testKeys(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func TestGenerateKey(t *testing.T) {
	dir := t.TempDir()
	if err := GenerateKey(dir); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{PrivateKeyFile: 0o600, PublicKeyFile: 0o644} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, st.Mode().Perm(), mode)
		}
	}
	priv, err := LoadPrivateKey(filepath.Join(dir, PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey(filepath.Join(dir, PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(priv.Public()) {
		t.Error("public key does not belong to the private key")
	}
	msg := []byte("{}")
	env, err := ParseEnvelope(SignEnvelope(msg, priv))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Verify([]ed25519.PublicKey{pub}); err != nil {
		t.Errorf("signature by the generated key: %v", err)
	}

	before, _ := os.ReadFile(filepath.Join(dir, PrivateKeyFile))
	err = GenerateKey(dir)
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second GenerateKey: %v, want a refusal", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, PrivateKeyFile))
	if string(before) != string(after) {
		t.Error("second GenerateKey changed the private key")
	}

	// Only the public half present still refuses (and writes nothing).
	dir2 := t.TempDir()
	os.WriteFile(filepath.Join(dir2, PublicKeyFile), []byte("x"), 0o644)
	if err := GenerateKey(dir2); err == nil {
		t.Error("GenerateKey over an existing update.pub succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir2, PrivateKeyFile)); err == nil {
		t.Error("refused GenerateKey left an update.key behind")
	}
	if err := GenerateKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("GenerateKey into a missing folder succeeded")
	}
}

func TestParseKeys(t *testing.T) {
	edPub, edPriv := testKeys(t)
	pemOf := func(typ string, der []byte) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	}
	must := func(b []byte, err error) []byte {
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPubPEM := pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(edPub)))
	edPrivPEM := pemOf("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(edPriv)))

	pubTests := []struct {
		name string
		in   []byte
		want string // "" = success
	}{
		{"ed25519", edPubPEM, ""},
		{"ed25519 with trailing newlines", append(append([]byte{}, edPubPEM...), "\n\n"...), ""},
		{"private key given", edPrivPEM, "this is the private key"},
		{"rsa", pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey))), "*rsa.PublicKey, not ed25519"},
		{"ecdsa", pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&ecKey.PublicKey))), "*ecdsa.PublicKey, not ed25519"},
		{"certificate", pemOf("CERTIFICATE", []byte{1, 2}), `PEM block is "CERTIFICATE", want "PUBLIC KEY"`},
		{"not pem", []byte("hello"), "no PEM block"},
		{"empty", nil, "no PEM block"},
		{"garbage der", pemOf("PUBLIC KEY", []byte{1, 2, 3}), "not a PKIX public key"},
		{"two blocks", append(append([]byte{}, edPubPEM...), edPubPEM...), "unexpected data after"},
	}
	for _, tc := range pubTests {
		t.Run("public/"+tc.name, func(t *testing.T) {
			k, err := ParsePublicKey(tc.in)
			checkErr(t, err, tc.want)
			if tc.want == "" && !k.Equal(edPub) {
				t.Error("wrong key")
			}
		})
	}

	privTests := []struct {
		name string
		in   []byte
		want string
	}{
		{"ed25519", edPrivPEM, ""},
		{"public key given", edPubPEM, "this is the public key"},
		{"rsa", pemOf("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(rsaKey))), "*rsa.PrivateKey, not ed25519"},
		{"pkcs1 rsa", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), `PEM block is "RSA PRIVATE KEY"`},
		{"garbage der", pemOf("PRIVATE KEY", []byte{1}), "not a PKCS#8 private key"},
	}
	for _, tc := range privTests {
		t.Run("private/"+tc.name, func(t *testing.T) {
			k, err := ParsePrivateKey(tc.in)
			checkErr(t, err, tc.want)
			if tc.want == "" && !k.Equal(edPriv) {
				t.Error("wrong key")
			}
		})
	}

	dir := t.TempDir()
	if _, err := LoadPublicKey(filepath.Join(dir, "nope.pub")); err == nil || !strings.Contains(err.Error(), "nope.pub") {
		t.Errorf("missing file: %v", err)
	}
	p := filepath.Join(dir, "bad.key")
	os.WriteFile(p, edPubPEM, 0o600)
	if _, err := LoadPrivateKey(p); err == nil || !strings.Contains(err.Error(), "bad.key") || !strings.Contains(err.Error(), "public key") {
		t.Errorf("public key as private: %v", err)
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}
