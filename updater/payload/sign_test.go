package payload

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestSignatureFile(t *testing.T) {
	pub, priv := testKeys(t)
	msg := []byte("{\n  \"format\": 1\n}\n")
	sig := Sign(priv, msg)
	if len(sig) != 89 || sig[88] != '\n' || bytes.Count(sig, []byte("\n")) != 1 {
		t.Fatalf("signature file %q is not one line of 88 base64 characters", sig)
	}
	body := bytes.TrimSuffix(sig, []byte("\n"))
	tests := []struct {
		name string
		pub  []byte
		sig  []byte
		want error
		msg  string
	}{
		{name: "as written", sig: sig},
		{name: "no newline", sig: body},
		{name: "CRLF", sig: append(append([]byte{}, body...), "\r\n"...)},
		{name: "two newlines", sig: append(append([]byte{}, sig...), '\n'), want: ErrMalformedSignature, msg: "more than one line"},
		{name: "two lines", sig: append(append([]byte{}, body[:40]...), append([]byte("\n"), body[40:]...)...), want: ErrMalformedSignature},
		{name: "leading space", sig: append([]byte(" "), sig...), want: ErrMalformedSignature},
		{name: "raw bytes instead of base64", sig: bytes.Repeat([]byte{0xff}, 88), want: ErrMalformedSignature, msg: "not base64"},
		{name: "url-safe alphabet", sig: bytes.Map(func(r rune) rune {
			switch r {
			case '+':
				return '-'
			case '/':
				return '_'
			}
			return r
		}, sig), want: nil},
		{name: "signature of other bytes", sig: Sign(priv, []byte("other")), want: ErrSignatureMismatch},
		{name: "short public key", pub: pub[:31], sig: sig, msg: "public key is 31 bytes, want 32"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := pub
			if tc.pub != nil {
				p = tc.pub
			}
			err := Verify(p, msg, tc.sig)
			if tc.name == "url-safe alphabet" {
				// Only a real difference if the signature used + or /.
				if bytes.ContainsAny(body, "+/") && !errors.Is(err, ErrMalformedSignature) {
					t.Errorf("url-safe base64 accepted: %v", err)
				}
				return
			}
			if tc.want == nil && tc.msg == "" {
				if err != nil {
					t.Fatal(err)
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
