package configs

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
)

// MaxCABundle bounds a CA bundle: Debian's is about 220 KiB.
const MaxCABundle = 16 << 20

// CheckCABundle reads a PEM file of CA certificates and says what is wrong
// with it: every PEM block must be a certificate that parses, there must be
// at least one, and nothing but whitespace may sit between the blocks (a
// truncated or mixed-up file would otherwise lose certificates silently).
func CheckCABundle(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxCABundle+1))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > MaxCABundle {
		return fmt.Errorf("%s is larger than %d bytes; a CA bundle is a PEM file of certificates", path, MaxCABundle)
	}
	return ParseCABundle(path, data)
}

// ParseCABundle checks the bytes of a CA bundle (see CheckCABundle); name
// is used in errors. Text between the blocks (comments, as curl's
// cacert.pem has) is allowed.
func ParseCABundle(name string, data []byte) error {
	rest := data
	n := 0
	for {
		begin := bytes.Index(rest, []byte("-----BEGIN"))
		if begin < 0 {
			break
		}
		line := 1 + bytes.Count(data[:len(data)-len(rest)+begin], []byte("\n"))
		n++
		// Decode this block alone: pem.Decode skips a damaged block and
		// returns the next one, which would lose a certificate silently.
		seg := len(rest)
		if end := bytes.Index(rest[begin:], []byte("-----END")); end >= 0 {
			seg = begin + end
			if nl := bytes.IndexByte(rest[seg:], '\n'); nl >= 0 {
				seg += nl + 1
			} else {
				seg = len(rest)
			}
		}
		block, _ := pem.Decode(rest[begin:seg])
		next := rest[seg:]
		switch {
		case block == nil:
			return fmt.Errorf("%s:%d: PEM block %d is damaged or truncated (no matching -----END line, or bad base64)", name, line, n)
		case block.Type != "CERTIFICATE":
			return fmt.Errorf("%s:%d: PEM block %d is a %q, not a CERTIFICATE", name, line, n, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("%s:%d: PEM block %d is not a certificate: %w", name, line, n, err)
		}
		rest = next
	}
	if n == 0 {
		return fmt.Errorf("%s is not a PEM file of certificates: no -----BEGIN CERTIFICATE----- block", name)
	}
	return nil
}
