// Package netroot brings a root filesystem image into RAM for machines
// that boot from the network or from a live medium: it fetches the image
// by URL (http, https, tftp), decompresses it when it is zstd, and checks
// its size and sha256 against the kernel command line before anyone may
// mount it. Nothing it writes is to be trusted until Fetch returns nil.
package netroot

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/slateos/slate/internal/cmdline"
	"github.com/slateos/slate/internal/fetch"
)

// Kernel command line parameters.
const (
	ArgURL    = cmdline.RootURL
	ArgSHA256 = cmdline.RootSHA256
	ArgSize   = cmdline.RootSize
)

// EmbeddedPath is where an initramfs carries a root image (a network boot
// with the root embedded, or a live ISO).
const EmbeddedPath = "/slate/root.img"

// MaxSize bounds slate.root_size: a root held in RAM is tens to hundreds
// of MiB; 64 GiB is far past any machine that would do that.
const MaxSize = 64 << 30

// Source is a root image as the kernel command line names it.
type Source struct {
	URL    string // http, https or tftp; empty when the initramfs carries the root
	SHA256 string // sha256 of the root filesystem image, 64 lowercase hex digits
	Size   int64  // bytes of the root filesystem image
}

// ErrBadRoot is wrapped by every error that means the root image does not
// match the command line (size, hash, compressed data): fetching it again
// will not help, and it must not be mounted.
var ErrBadRoot = errors.New("root image does not match the kernel command line")

type badRoot struct{ msg string }

func (e *badRoot) Error() string        { return e.msg }
func (e *badRoot) Is(target error) bool { return target == ErrBadRoot }

func bad(format string, args ...any) error { return &badRoot{fmt.Sprintf(format, args...)} }

// ParseArgs reads the netroot parameters from the kernel command line's
// key=value pairs. ok is false when none of them is present.
func ParseArgs(args map[string]string) (src Source, ok bool, err error) {
	u, hasURL := args[ArgURL]
	sum, hasSum := args[ArgSHA256]
	size, hasSize := args[ArgSize]
	if !hasURL && !hasSum && !hasSize {
		return Source{}, false, nil
	}
	if hasURL {
		if err := CheckURL(u); err != nil {
			return Source{}, true, fmt.Errorf("kernel command line: %s=%q: %w", ArgURL, u, err)
		}
		src.URL = u
	}
	if !hasSum {
		return Source{}, true, fmt.Errorf("kernel command line has no %s=<64 hex digits>: a root fetched into RAM is always checked", ArgSHA256)
	}
	sum = strings.ToLower(sum)
	if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size {
		return Source{}, true, fmt.Errorf("kernel command line: %s=%q: want 64 hex digits", ArgSHA256, sum)
	}
	src.SHA256 = sum
	if !hasSize {
		return Source{}, true, fmt.Errorf("kernel command line has no %s=<bytes>", ArgSize)
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil || n <= 0 || n > MaxSize {
		return Source{}, true, fmt.Errorf("kernel command line: %s=%q: want bytes, 1 to %d", ArgSize, size, int64(MaxSize))
	}
	src.Size = n
	return src, true, nil
}

// check validates a Source built by hand rather than by ParseArgs.
func (s Source) check() error {
	if s.Size <= 0 || s.Size > MaxSize {
		return fmt.Errorf("root size %d: want 1 to %d bytes", s.Size, int64(MaxSize))
	}
	if b, err := hex.DecodeString(s.SHA256); err != nil || len(b) != sha256.Size || strings.ToLower(s.SHA256) != s.SHA256 {
		return fmt.Errorf("root sha256 %q: want 64 lowercase hex digits", s.SHA256)
	}
	return nil
}

// CheckURL checks a root URL: http, https or tftp, with a host.
func CheckURL(s string) error {
	// The URL travels as one word of the kernel command line, and through
	// iPXE, which expands ${...} before it splits words.
	if i := strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }); i >= 0 {
		return fmt.Errorf("byte %d is a space or control character: the kernel command line would split it", i)
	}
	if strings.Contains(s, "${") {
		return errors.New("it contains ${, which iPXE would expand")
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "http", "https", "tftp":
	default:
		return fmt.Errorf("scheme %q: want http, https or tftp", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	return nil
}

// Options tune Fetch. The zero value is what init uses.
type Options struct {
	// Attempts bounds the tries of a download that fails on the network
	// (a refused connection, a timeout, a 5xx); 0 is 5. An HTTP download
	// that breaks off resumes where it stopped.
	Attempts int
	// Backoff is the first wait before another try, doubled up to 4 s;
	// 0 is 500 ms.
	Backoff time.Duration
	// Progress, if set, is called as the image is written, with the bytes
	// written so far.
	Progress func(written int64)
	// Client is the HTTP client; nil is fetch's, with its default
	// timeouts, that does not check certificates (see Fetch).
	Client *http.Client
}

// Result says how a fetch went.
type Result struct {
	Compressed  bool  // the image came zstd-compressed
	Transferred int64 // bytes that came over the network
}

// Fetch downloads src.URL into dst (which it truncates), decompressing a
// zstd stream, and checks the size and sha256. Any error leaves dst with
// content that must not be used.
func Fetch(ctx context.Context, src Source, dst *os.File, o Options) (Result, error) {
	if src.URL == "" {
		return Result{}, errors.New("no root URL")
	}
	u, err := url.Parse(src.URL)
	if err != nil {
		return Result{}, fmt.Errorf("root URL: %w", err)
	}
	attempts := o.Attempts
	if attempts <= 0 {
		attempts = 5
	}
	backoff := o.Backoff
	if backoff <= 0 {
		backoff = 500 * time.Millisecond
	}
	if err := src.check(); err != nil {
		return Result{}, err
	}
	if _, err := dst.Seek(0, io.SeekStart); err != nil {
		return Result{}, err
	}
	if err := dst.Truncate(0); err != nil {
		return Result{}, err
	}
	// Certificates are not checked: the initramfs carries no CA store, and
	// the image is trusted for its sha256 from the kernel command line,
	// which is checked before the root is mounted whatever the transport.
	// https still keeps the image private on the wire.
	f := &fetch.Fetcher{Client: o.Client, Attempts: attempts, Backoff: backoff, MaxBackoff: 4 * time.Second, InsecureTLS: true}
	if u.Scheme == "http" || u.Scheme == "https" {
		// A download that breaks off resumes where it stopped (Range).
		body, err := f.Fetch(ctx, u, nil)
		if err != nil {
			return Result{}, fmt.Errorf("read root image: %w", err)
		}
		defer body.Close()
		cr := &countingReader{r: body}
		res, err := copyVerified(dst, cr, src, o.Progress, true)
		res.Transferred = cr.n
		return res, err
	}
	// TFTP cannot resume: start again from the first byte.
	var last error
	for try := 1; try <= attempts; try++ {
		if try > 1 {
			select {
			case <-ctx.Done():
				return Result{}, fmt.Errorf("%w (while retrying after: %v)", ctx.Err(), last) //nolint:errorlint // the cancellation is the cause; the last retry's error is context
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 4*time.Second)
		}
		if _, err := dst.Seek(0, io.SeekStart); err != nil {
			return Result{}, err
		}
		if err := dst.Truncate(0); err != nil {
			return Result{}, err
		}
		body, err := f.Fetch(ctx, u, nil)
		if err != nil {
			last = err
			continue
		}
		cr := &countingReader{r: body}
		res, err := copyVerified(dst, cr, src, o.Progress, true)
		body.Close()
		res.Transferred = cr.n
		if err == nil || errors.Is(err, ErrBadRoot) || ctx.Err() != nil {
			return res, err
		}
		last = err
	}
	return Result{}, fmt.Errorf("giving up after %d attempts: %w", attempts, last)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// zstdMagic starts every zstd frame.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// maxWindow bounds the zstd decoder's memory, which counts against the
// machine's RAM next to the root itself.
const maxWindow = 16 << 20

// copyVerified writes the image read from r to w, decompressing zstd when
// unzstd is set, and checks it against src. It never writes more than
// src.Size bytes.
func copyVerified(w io.Writer, r io.Reader, src Source, progress func(int64), unzstd bool) (Result, error) {
	var res Result
	trap := &errTrap{r: r}
	br := bufio.NewReaderSize(trap, 64<<10)
	head, err := br.Peek(len(zstdMagic))
	if err != nil && !errors.Is(err, io.EOF) {
		return res, fmt.Errorf("read root image: %w", err)
	}
	var in io.Reader = br
	if unzstd && bytes.Equal(head, zstdMagic) {
		dec, err := zstd.NewReader(br,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxWindow),
			zstd.WithDecoderMaxMemory(uint64(src.Size)+maxWindow))
		if err != nil {
			return res, fmt.Errorf("zstd decoder: %w", err)
		}
		defer dec.Close()
		in = dec
		res.Compressed = true
	}
	sum := sha256.New()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		// Ask for at most one byte past the size: enough to notice an
		// image that is too long, never enough to fill the machine.
		p := buf[:min(int64(len(buf)), src.Size+1-n)]
		k, rerr := in.Read(p)
		if n+int64(k) > src.Size {
			return res, bad("root image is longer than %s=%d", ArgSize, src.Size)
		}
		if k > 0 {
			sum.Write(p[:k])
			if _, err := w.Write(p[:k]); err != nil {
				return res, fmt.Errorf("write root image to RAM: %w", err)
			}
			n += int64(k)
			if progress != nil {
				progress(n)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if res.Compressed && trap.err == nil {
				if errors.Is(rerr, io.ErrUnexpectedEOF) {
					return res, bad("root image is truncated: got %d of %d bytes (compressed stream ends early)", n, src.Size)
				}
				return res, bad("root image: corrupt zstd data after %d bytes: %v", n, rerr)
			}
			return res, fmt.Errorf("read root image after %d of %d bytes: %w", n, src.Size, rerr)
		}
	}
	if n < src.Size {
		return res, bad("root image is truncated: got %d of %d bytes", n, src.Size)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != src.SHA256 {
		return res, bad("root image sha256 is %s, the kernel command line says %s=%s", got, ArgSHA256, src.SHA256)
	}
	return res, nil
}

// errTrap remembers the last error of the reader under the decoder, so
// that a network failure the decoder passes on is not taken for bad data.
type errTrap struct {
	r   io.Reader
	err error
}

func (t *errTrap) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// Verify checks an image already in place (carried in the initramfs)
// against src, reading it once. The bytes are hashed as they are, never
// decompressed: they are what gets mounted.
func Verify(r io.Reader, src Source) error {
	if err := src.check(); err != nil {
		return err
	}
	_, err := copyVerified(io.Discard, r, src, nil, false)
	return err
}
