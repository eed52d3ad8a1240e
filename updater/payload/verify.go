package payload

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"

	"github.com/klauspost/compress/zstd"
)

// MaxWindow bounds the zstd window the Verifier accepts, and with it the
// decoder's memory: a hostile stream cannot ask for gigabytes of history.
// AddToChannel writes 8 MiB windows.
const MaxWindow = 64 << 20

// ErrCorrupt is wrapped by every error that means a file does not match its
// manifest (size, hash or compressed data). Such a file must not be used and
// retrying the same download will not help; errors that do not wrap ErrCorrupt
// come from the underlying reader (network, disk).
var ErrCorrupt = errors.New("file does not match the manifest")

type corruptError struct{ msg string }

func (e *corruptError) Error() string        { return e.msg }
func (e *corruptError) Is(target error) bool { return target == ErrCorrupt }

func corrupt(format string, args ...any) error {
	return &corruptError{msg: fmt.Sprintf(format, args...)}
}

// Verifier reads one file of a manifest from its stored (possibly compressed)
// form and yields the decompressed bytes. It counts and hashes both sides, and
// fails as soon as either side runs past the size the manifest gives, so a
// lying or endless source cannot make it buffer or emit more than that. Only
// the final io.EOF means the whole file matched: a caller that writes the bytes
// somewhere must treat them as untrusted until then, and discard them on any
// other error.
type Verifier struct {
	file File
	name string
	in   *meteredReader
	dec  *zstd.Decoder // nil when the file is stored uncompressed
	out  io.Reader
	sum  hash.Hash
	n    int64 // decompressed bytes delivered
	err  error // sticky: once failed or done, always the same answer
}

// OpenFile returns a Verifier that reads f's stored bytes from r. r is read
// sequentially and never beyond one byte past f.CompressedSize. Close the
// Verifier to release the decoder.
func OpenFile(f File, r io.Reader) (*Verifier, error) {
	v := &Verifier{
		file: f,
		name: path.Base(f.Path),
		sum:  sha256.New(),
	}
	if f.Size <= 0 || f.CompressedSize <= 0 || f.Size > MaxFileSize || f.CompressedSize > MaxFileSize {
		return nil, fmt.Errorf("%s: manifest sizes out of range (size %d, compressed_size %d)", v.name, f.Size, f.CompressedSize)
	}
	if validateHash(f.SHA256) != nil || validateHash(f.CompressedSHA256) != nil {
		return nil, fmt.Errorf("%s: manifest hashes are not 64 lowercase hex digits", v.name)
	}
	switch f.Compression {
	case CompressionNone:
		// One view of the bytes: hashing it once is enough.
		v.in = &meteredReader{r: r, limit: f.CompressedSize}
		v.out = v.in
	case CompressionZstd:
		v.in = &meteredReader{r: r, limit: f.CompressedSize, sum: sha256.New()}
		dec, err := zstd.NewReader(v.in,
			// Synchronous decoding: no read-ahead goroutines, and the
			// meteredReader's state is only touched from Read.
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(MaxWindow),
			zstd.WithDecoderMaxMemory(MaxWindow),
		)
		if err != nil {
			return nil, fmt.Errorf("%s: zstd decoder: %w", v.name, err)
		}
		v.dec = dec
		v.out = dec
	default:
		return nil, fmt.Errorf("%s: unknown compression %q", v.name, f.Compression)
	}
	return v, nil
}

// Read implements io.Reader. See the type's comment for what errors mean.
func (v *Verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Ask for at most one byte past the end: enough to notice a file that is
	// too long, never enough to let it run far.
	if room := v.file.Size + 1 - v.n; int64(len(p)) > room {
		p = p[:room]
	}
	k, err := v.out.Read(p)
	if v.n+int64(k) > v.file.Size {
		k = int(v.file.Size - v.n)
		v.sum.Write(p[:k])
		v.n += int64(k)
		v.err = corrupt("%s: decompressed data is longer than size %d", v.name, v.file.Size)
		return k, v.err
	}
	v.sum.Write(p[:k])
	v.n += int64(k)
	switch {
	case err == io.EOF:
		v.err = v.finish()
		if v.err == nil {
			v.err = io.EOF
		}
		return k, v.err
	case err != nil:
		v.err = v.classify(err)
		return k, v.err
	}
	return k, nil
}

// Counts reports the stored and decompressed bytes read so far, for progress.
func (v *Verifier) Counts() (stored, decompressed int64) {
	return v.in.n, v.n
}

// Close releases the decoder. It does not close the underlying reader.
func (v *Verifier) Close() error {
	if v.dec != nil {
		v.dec.Close()
		v.dec = nil
	}
	if v.err == nil {
		v.err = fmt.Errorf("%s: verifier closed", v.name)
	}
	return nil
}

// classify turns an error from the decoder or the source into the most useful
// one: the source's own error (network, disk) when there was one, otherwise a
// corruption error that says what was wrong with the bytes.
func (v *Verifier) classify(err error) error {
	in := v.in
	switch {
	case in.srcErr != nil:
		return fmt.Errorf("%s: reading after %d of %d bytes: %w", v.name, in.n, v.file.CompressedSize, in.srcErr)
	case in.tooLong:
		return corrupt("%s: source has more than compressed_size %d bytes", v.name, v.file.CompressedSize)
	case in.eof && in.n < v.file.CompressedSize:
		return corrupt("%s: truncated: got %d of %d bytes", v.name, in.n, v.file.CompressedSize)
	}
	return corrupt("%s: decompressing after %d of %d bytes: %v", v.name, in.n, v.file.CompressedSize, err)
}

// finish runs once the decompressed stream has ended and checks everything.
func (v *Verifier) finish() error {
	in := v.in
	if v.dec != nil && !in.eof {
		// zstd reached the end of its frames; whatever follows must be
		// nothing, and the source must say so with EOF.
		var buf [512]byte
		for !in.eof {
			if _, err := in.Read(buf[:]); err != nil && !errors.Is(err, io.EOF) {
				return v.classify(err)
			}
		}
	}
	f := v.file
	if in.n < f.CompressedSize {
		return corrupt("%s: truncated: got %d of %d bytes", v.name, in.n, f.CompressedSize)
	}
	if in.sum != nil {
		if got := hex.EncodeToString(in.sum.Sum(nil)); got != f.CompressedSHA256 {
			return corrupt("%s: compressed_sha256 mismatch: got %s want %s", v.name, got, f.CompressedSHA256)
		}
	}
	if v.n < f.Size {
		return corrupt("%s: decompressed data truncated: got %d of %d bytes", v.name, v.n, f.Size)
	}
	if got := hex.EncodeToString(v.sum.Sum(nil)); got != f.SHA256 {
		return corrupt("%s: sha256 mismatch: got %s want %s", v.name, got, f.SHA256)
	}
	return nil
}

// meteredReader counts and optionally hashes what it passes on, never reads
// more than limit+1 bytes from its source, and remembers how the source ended.
type meteredReader struct {
	r       io.Reader
	sum     hash.Hash // nil: count only
	limit   int64
	n       int64
	eof     bool
	tooLong bool
	srcErr  error
}

var errTooLong = errors.New("more bytes than the manifest says")

func (m *meteredReader) Read(p []byte) (int, error) {
	switch {
	case m.tooLong:
		return 0, errTooLong
	case m.eof:
		return 0, io.EOF
	case m.srcErr != nil:
		return 0, m.srcErr
	}
	if room := m.limit + 1 - m.n; int64(len(p)) > room {
		p = p[:room]
	}
	k, err := m.r.Read(p)
	if k < 0 || k > len(p) {
		m.srcErr = fmt.Errorf("source returned an invalid count %d", k)
		return 0, m.srcErr
	}
	if m.n+int64(k) > m.limit {
		// The extra byte is not part of the file: do not pass it on.
		k = int(m.limit - m.n)
		m.tooLong = true
		err = errTooLong
	}
	if m.sum != nil {
		m.sum.Write(p[:k])
	}
	m.n += int64(k)
	switch {
	case err == io.EOF:
		m.eof = true
	case err != nil && !errors.Is(err, errTooLong):
		m.srcErr = err
	}
	return k, err
}
