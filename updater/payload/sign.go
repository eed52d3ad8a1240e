package payload

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ManifestFile is the name of the signed envelope in a channel folder and in
// each version folder.
const ManifestFile = "manifest.json"

// LegacySignatureFile is the detached signature of format 1 channels. It is
// no longer written or read; the publisher removes a stale one.
const LegacySignatureFile = "manifest.json.sig"

// MaxSignatures bounds the signatures of one envelope: enough for a key
// rotation (old and new) with room to spare, never a reason to loop long.
const MaxSignatures = 8

// signContext is prefixed to the manifest bytes before signing, so a
// signature made for a slate manifest can never be passed off as one over
// other data (or a format 1 detached signature as a format 2 one).
const signContext = "slate-manifest-v2\x00"

var (
	// ErrSignatureMismatch means a signature by a trusted key is well formed
	// but was not made over these exact manifest bytes.
	ErrSignatureMismatch = errors.New("signature does not match (wrong key or tampered manifest)")
	// ErrUntrusted means no signature of the envelope is by a key this
	// machine trusts (a revoked key, or another channel's).
	ErrUntrusted = errors.New("no signature by a trusted key")
	// ErrMalformedSignature means a signature is not the base64 of a
	// 64-byte ed25519 signature.
	ErrMalformedSignature = errors.New("malformed signature")
)

// KeyID names a public key in envelopes and messages: the first 8 bytes of
// the SHA-256 of the raw key, in hex. It is a hint for choosing the key to
// try and for people, never a substitute for verifying.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Envelope is a manifest with its signatures, in one file:
//
//	{
//	  "format": 2,
//	  "signatures": [{"key_id": "…", "sig": "…base64…"}],
//	  "signed": { …the manifest, byte for byte as signed… }
//	}
//
// One file, replaced by one rename, means no reader can ever pair a
// manifest with another manifest's signature. Each signature covers
// signContext followed by the exact bytes of the "signed" value, which is
// why the reader keeps those bytes raw and parses them only once a
// signature by a trusted key has checked out.
type Envelope struct {
	Signed     []byte // the manifest bytes as they appear in the file
	Signatures []Signature
}

// Signature is one signature of an envelope.
type Signature struct {
	KeyID string
	Sig   []byte // 64 bytes
}

// SignEnvelope returns the envelope file of manifest signed by every key
// (a key rotation signs with the old and the new key). manifest must be
// Manifest.Marshal output (one JSON object). keys must be ed25519 private
// keys of the right length: a wrong one is a programming error and panics,
// as crypto/ed25519 does.
func SignEnvelope(manifest []byte, keys ...ed25519.PrivateKey) []byte {
	signed := bytes.TrimSpace(manifest)
	msg := append([]byte(signContext), signed...)
	var b bytes.Buffer
	b.WriteString("{\n  \"format\": ")
	fmt.Fprint(&b, FormatVersion)
	b.WriteString(",\n  \"signatures\": [")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(",")
		}
		sig := ed25519.Sign(k, msg)
		fmt.Fprintf(&b, "\n    {\"key_id\": %q, \"sig\": %q}", KeyID(k.Public().(ed25519.PublicKey)), base64.StdEncoding.EncodeToString(sig))
	}
	b.WriteString("\n  ],\n  \"signed\": ")
	b.Write(signed)
	b.WriteString("\n}\n")
	return b.Bytes()
}

// ParseEnvelope splits an envelope file into the signed bytes and the
// signatures. It is strict (unknown or repeated fields, trailing data and
// wrong types are errors naming the JSON path) and does not look inside
// the signed bytes: that is OpenEnvelope's job, after verification.
func ParseEnvelope(data []byte) (*Envelope, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	obj, err := readObject(dec, "$")
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fieldErr("$", "unexpected data after the envelope object")
	}
	if _, ok := obj["files"]; ok {
		// a bare manifest: format 1 had its signature in manifest.json.sig
		return nil, fieldErr("$", "this is a format 1 manifest without its signatures inside; republish the channel with this slate")
	}
	format, err := intField(obj, "$", "format")
	if err != nil {
		return nil, err
	}
	if format > FormatVersion {
		return nil, &FieldError{Path: "$.format", Err: newerFormatError{format}}
	}
	if format != FormatVersion {
		return nil, fieldErr("$.format", "format must be %d, got %d (format 1 channels are republished with this slate)", FormatVersion, format)
	}
	if err := checkKeys(obj, "$", []string{"format", "signatures", "signed"}); err != nil {
		return nil, err
	}
	signed, err := required(obj, "$", "signed")
	if err != nil {
		return nil, err
	}
	if len(signed) == 0 || signed[0] != '{' {
		return nil, fieldErr("$.signed", "must be an object (the manifest)")
	}
	rawSigs, err := required(obj, "$", "signatures")
	if err != nil {
		return nil, err
	}
	sdec := json.NewDecoder(bytes.NewReader(rawSigs))
	if tok, err := sdec.Token(); err != nil || tok != json.Delim('[') {
		return nil, fieldErr("$.signatures", "must be an array")
	}
	env := &Envelope{Signed: signed}
	for i := 0; sdec.More(); i++ {
		p := fmt.Sprintf("$.signatures[%d]", i)
		if i >= MaxSignatures {
			return nil, fieldErr("$.signatures", "more than %d signatures", MaxSignatures)
		}
		sobj, err := readObject(sdec, p)
		if err != nil {
			return nil, err
		}
		if err := checkKeys(sobj, p, []string{"key_id", "sig"}); err != nil {
			return nil, err
		}
		id, err := stringField(sobj, p, "key_id")
		if err != nil {
			return nil, err
		}
		if len(id) != 16 || validateHex(id) != nil {
			return nil, fieldErr(p+".key_id", "must be 16 lowercase hex digits")
		}
		s, err := stringField(sobj, p, "sig")
		if err != nil {
			return nil, err
		}
		sig, err := decodeSignature(s)
		if err != nil {
			return nil, &FieldError{Path: p + ".sig", Err: fmt.Errorf("%w: %w", ErrMalformedSignature, err)}
		}
		env.Signatures = append(env.Signatures, Signature{KeyID: id, Sig: sig})
	}
	if _, err := sdec.Token(); err != nil {
		return nil, fieldErr("$.signatures", "malformed array: %v", err)
	}
	if len(env.Signatures) == 0 {
		return nil, fieldErr("$.signatures", "no signatures")
	}
	return env, nil
}

// Verify checks that at least one signature is by a key in trusted and
// matches the signed bytes, and returns that key's ID. A signature naming
// a trusted key that does not match is tampering and fails the whole
// envelope, whatever the other signatures say. The error wraps
// ErrSignatureMismatch or ErrUntrusted.
func (e *Envelope) Verify(trusted []ed25519.PublicKey) (string, error) {
	msg := append([]byte(signContext), e.Signed...)
	good := ""
	var seen []string
	for _, s := range e.Signatures {
		seen = append(seen, s.KeyID)
		for _, k := range trusted {
			if len(k) != ed25519.PublicKeySize || KeyID(k) != s.KeyID {
				continue
			}
			if !ed25519.Verify(k, msg, s.Sig) {
				return "", fmt.Errorf("verify manifest: key %s: %w", s.KeyID, ErrSignatureMismatch)
			}
			if good == "" {
				good = s.KeyID
			}
		}
	}
	if good == "" {
		ids := make([]string, 0, len(trusted))
		for _, k := range trusted {
			ids = append(ids, KeyID(k))
		}
		return "", fmt.Errorf("verify manifest: %w: signed by %s, this machine trusts %s",
			ErrUntrusted, orNone(seen), orNone(ids))
	}
	return good, nil
}

func orNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

// OpenEnvelope parses an envelope, verifies it with the trusted keys and
// only then parses the manifest inside: the manifest parser never sees
// bytes no trusted key has signed.
func OpenEnvelope(trusted []ed25519.PublicKey, data []byte) (*Manifest, error) {
	env, err := ParseEnvelope(data)
	if err != nil {
		return nil, err
	}
	if _, err := env.Verify(trusted); err != nil {
		return nil, err
	}
	return ParseManifest(env.Signed)
}

func validateHex(s string) error {
	if _, err := hex.DecodeString(s); err != nil || strings.ToLower(s) != s {
		return errors.New("not lowercase hex")
	}
	return nil
}

func decodeSignature(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	want := base64.StdEncoding.EncodedLen(ed25519.SignatureSize)
	if len(s) != want {
		return nil, fmt.Errorf("%d characters, want %d (base64 of %d bytes)", len(s), want, ed25519.SignatureSize)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("decodes to %d bytes, want %d", len(sig), ed25519.SignatureSize)
	}
	return sig, nil
}
