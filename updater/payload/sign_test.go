package payload

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
)

func TestEnvelope(t *testing.T) {
	pub1, k1 := testKeys(t)
	pub2, k2 := testKeys(t)
	pub3, k3 := testKeys(t)
	msg := []byte("{\n  \"format\": 2\n}\n")
	one := SignEnvelope(msg, k1)
	both := SignEnvelope(msg, k1, k2)
	tests := []struct {
		name    string
		data    []byte
		trusted []ed25519.PublicKey
		want    error  // nil: verifies
		msg     string // in the error
	}{
		{name: "one key", data: one, trusted: []ed25519.PublicKey{pub1}},
		{name: "one of two trusted", data: one, trusted: []ed25519.PublicKey{pub2, pub1}},
		{name: "rotation: old and new, machine trusts old", data: both, trusted: []ed25519.PublicKey{pub1}},
		{name: "rotation: old and new, machine trusts new", data: both, trusted: []ed25519.PublicKey{pub2}},
		{name: "revoked: signed by a key no longer trusted", data: one, trusted: []ed25519.PublicKey{pub2}, want: ErrUntrusted, msg: "signed by " + KeyID(pub1) + ", this machine trusts " + KeyID(pub2)},
		{name: "no trusted keys", data: one, want: ErrUntrusted, msg: "trusts none"},
		{name: "signature of other bytes", data: bytes.Replace(one, []byte(`"format": 2
}`), []byte(`"format": 3
}`), 1), trusted: []ed25519.PublicKey{pub1}, want: ErrSignatureMismatch},
		{name: "a bad signature by a trusted key spoils a good one", data: spliceSig(t, SignEnvelope(msg, k3), both), trusted: []ed25519.PublicKey{pub1, pub2, pub3}, want: ErrSignatureMismatch},
		{name: "key_id of a trusted key on another key's signature", data: bytes.Replace(SignEnvelope(msg, k3), []byte(KeyID(pub3)), []byte(KeyID(pub1)), 1), trusted: []ed25519.PublicKey{pub1}, want: ErrSignatureMismatch},
		{name: "format 1 manifest", data: []byte(`{"format":1,"files":[]}`), msg: "format 1 manifest without its signatures"},
		{name: "newer format", data: []byte(`{"format":3}`), want: ErrNewerFormat},
		{name: "no signatures", data: []byte(`{"format":2,"signatures":[],"signed":{}}`), msg: "$.signatures: no signatures"},
		{name: "unknown field", data: []byte(`{"format":2,"signatures":[],"signed":{},"extra":1}`), msg: "$.extra: unknown field"},
		{name: "signed twice", data: bytes.Replace(one, []byte(`"signed":`), []byte(`"signed": {}, "signed":`), 1), msg: "$.signed: field appears more than once"},
		{name: "signed not an object", data: []byte(`{"format":2,"signatures":[],"signed":"e30="}`), msg: "$.signed: must be an object"},
		{name: "short key id", data: bytes.Replace(one, []byte(KeyID(pub1)), []byte("abcd"), 1), msg: "$.signatures[0].key_id: must be 16"},
		{name: "short signature", data: []byte(`{"format":2,"signatures":[{"key_id":"0011223344556677","sig":"AAAA"}],"signed":{}}`), want: ErrMalformedSignature, msg: "$.signatures[0].sig"},
		{name: "trailing data", data: append(append([]byte{}, one...), "{}"...), msg: "unexpected data after the envelope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, err := ParseEnvelope(tc.data)
			if err == nil {
				_, err = env.Verify(tc.trusted)
			}
			if tc.want == nil && tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(env.Signed, bytes.TrimSpace(msg)) {
					t.Errorf("signed bytes %q, want %q", env.Signed, msg)
				}
				return
			}
			if err == nil {
				t.Fatal("verified")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err %v does not wrap %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err %v does not contain %q", err, tc.msg)
			}
		})
	}
}

// spliceSig puts the first signature of from, with its key_id changed to
// that of a key which did not make it, in front of the signatures of to.
func spliceSig(t *testing.T, from, to []byte) []byte {
	t.Helper()
	src, err := ParseEnvelope(from)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := ParseEnvelope(to)
	if err != nil {
		t.Fatal(err)
	}
	// the signature of from's bytes under to's first key id: wrong bytes
	s := src.Signatures[0]
	s.KeyID = dst.Signatures[0].KeyID
	s.Sig = append([]byte{}, s.Sig...)
	s.Sig[0] ^= 1
	out := string(to)
	i := strings.Index(out, `"signatures": [`) + len(`"signatures": [`)
	return []byte(out[:i] + "\n    {\"key_id\": \"" + s.KeyID + "\", \"sig\": \"" + b64(s.Sig) + "\"}," + out[i:])
}
