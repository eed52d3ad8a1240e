package payload

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
)

// Signature file names in a channel.
const (
	ManifestFile  = "manifest.json"
	SignatureFile = "manifest.json.sig"
)

var (
	// ErrSignatureMismatch means the signature is well formed but was not made
	// by the trusted key over these exact manifest bytes.
	ErrSignatureMismatch = errors.New("signature does not match (wrong key or tampered manifest)")
	// ErrMalformedSignature means the signature file is not one line of base64
	// holding a 64-byte ed25519 signature.
	ErrMalformedSignature = errors.New("malformed signature file")
)

// Sign returns the contents of a manifest.json.sig file for manifest: the
// base64 of the raw 64-byte ed25519 signature of the exact bytes, and a newline.
// key must come from LoadPrivateKey or ed25519.GenerateKey; like
// crypto/ed25519, Sign panics on a key of the wrong length, which is a
// programming error and not outside input.
func Sign(key ed25519.PrivateKey, manifest []byte) []byte {
	sig := ed25519.Sign(key, manifest)
	out := make([]byte, base64.StdEncoding.EncodedLen(len(sig))+1)
	base64.StdEncoding.Encode(out, sig)
	out[len(out)-1] = '\n'
	return out
}

// Verify checks sigFile (the contents of manifest.json.sig) against the exact
// manifest bytes. The error wraps ErrMalformedSignature or ErrSignatureMismatch.
func Verify(pub ed25519.PublicKey, manifest, sigFile []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("verify manifest: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	sig, err := decodeSignature(sigFile)
	if err != nil {
		return fmt.Errorf("verify manifest: %w: %v", ErrMalformedSignature, err)
	}
	if !ed25519.Verify(pub, manifest, sig) {
		return fmt.Errorf("verify manifest: %w", ErrSignatureMismatch)
	}
	return nil
}

// OpenManifest verifies the signature of data and only then parses it: the
// order is the point, the parser never sees unauthenticated bytes.
func OpenManifest(pub ed25519.PublicKey, data, sigFile []byte) (*Manifest, error) {
	if err := Verify(pub, data, sigFile); err != nil {
		return nil, err
	}
	return ParseManifest(data)
}

func decodeSignature(sigFile []byte) ([]byte, error) {
	// One line: allow one trailing newline (LF or CRLF, as an editor may
	// leave it), nothing else.
	s := bytes.TrimSuffix(sigFile, []byte("\n"))
	s = bytes.TrimSuffix(s, []byte("\r"))
	if len(s) == 0 {
		return nil, errors.New("empty")
	}
	if bytes.ContainsAny(s, "\r\n") {
		return nil, errors.New("more than one line")
	}
	want := base64.StdEncoding.EncodedLen(ed25519.SignatureSize)
	if len(s) != want {
		return nil, fmt.Errorf("%d characters, want %d (base64 of %d bytes)", len(s), want, ed25519.SignatureSize)
	}
	sig := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Strict().Decode(sig, s)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	if n != ed25519.SignatureSize {
		return nil, fmt.Errorf("decodes to %d bytes, want %d", n, ed25519.SignatureSize)
	}
	return sig[:n], nil
}
