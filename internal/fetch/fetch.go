// Package fetch is slate's one client for what the machine downloads:
// Ignition's files, a network boot's root image and the updater's
// channel. It speaks http(s), tftp, data: and file URLs, bounds every
// network wait (connect, headers, a stalled body), resumes a broken or
// stalled HTTP download with Range after bounded retries with backoff,
// refuses more than a given number of bytes, and redacts the URL
// (credentials, query tokens) in every message and error it produces.
//
// Two levels: Open and ResumingReader are HTTP only, for the updater,
// which knows each file's size and checks every byte; Fetcher takes any
// URL the machine may be given and applies Ignition's rules (custom
// headers stay with their origin, bytes as stored).
package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/vincent-petithory/dataurl"
	"pack.ag/tftp"

	"github.com/slateos/slate/internal/redact"
)

// ErrTooLarge is wrapped by the error of a fetch that sent more than its
// bound.
var ErrTooLarge = errors.New("larger than allowed")

// tooLarge is the error of a body past its bound; its text says the URL
// and the bound, as "fetch URL: larger than N bytes".
type tooLarge struct {
	url string
	max int64
}

func (e *tooLarge) Error() string        { return fmt.Sprintf("fetch %s: larger than %d bytes", e.url, e.max) }
func (e *tooLarge) Is(target error) bool { return target == ErrTooLarge }

// Limit returns r bounded to max bytes: a read past them fails with an
// error wrapping ErrTooLarge that names url (redacted). The caller sees
// every byte up to max, never one more.
func Limit(r io.Reader, url string, max int64) io.Reader {
	return &limited{r: r, left: max, err: &tooLarge{url: redact.URL(url), max: max}}
}

type limited struct {
	r    io.Reader
	left int64
	err  error
}

func (l *limited) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, l.err
	}
	// Ask for one byte past the bound: enough to notice it is crossed.
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	if int64(n) > l.left {
		n, l.left = int(l.left), -1
		return n, l.err
	}
	l.left -= int64(n)
	return n, err
}

// ReadAll reads all of r, refusing more than max bytes with an error
// wrapping ErrTooLarge that names url (redacted).
func ReadAll(r io.Reader, url string, max int64) ([]byte, error) {
	b, err := io.ReadAll(Limit(r, url, max))
	if err != nil {
		var tl *tooLarge
		if errors.As(err, &tl) {
			return nil, err
		}
		return nil, redactErr(fmt.Errorf("fetch %s: %w", redact.URL(url), err))
	}
	return b, nil
}

// Fetcher fetches data:, file:, http:, https: and tftp: URLs. The zero
// value is ready to use: Ignition's and a network boot's defaults.
type Fetcher struct {
	// Client is used for http(s); nil is NewClient(Timeouts), which skips
	// certificate checks with InsecureTLS.
	Client *http.Client
	// Timeouts bound the connect, the response headers and a stalled
	// body; zero fields are DefaultTimeouts. A Client of the caller's
	// keeps its own connect and header timeouts.
	Timeouts Timeouts
	// Total bounds one fetch, retries and body included (Ignition's
	// httpTotal); 0 is no limit.
	Total time.Duration
	// Attempts bounds the tries of an http(s) download that fails on
	// the network, with 408, 429 or 5xx, or stalls; one that delivered
	// at least 64 KiB before it broke does not count, and the next try
	// resumes where it stopped (Range). 0 is 5.
	Attempts int
	// Backoff is the wait before the second try, doubled after each up
	// to MaxBackoff; 0 is 1 s and 30 s.
	Backoff, MaxBackoff time.Duration
	// TFTPTimeout is the per-packet timeout, retried 5 times; 0 is 2 s.
	TFTPTimeout time.Duration
	// MaxSize, if > 0, bounds the bytes of one fetch: a body longer than
	// that fails (ErrTooLarge) once MaxSize bytes are read.
	MaxSize int64
	// InsecureTLS skips certificate checks on the default client: for a
	// caller that trusts what it fetches by a hash it holds (a network
	// boot's root, whose initramfs carries no CA store).
	InsecureTLS bool
}

// Fetch opens u; headers go with http(s) requests to u's origin only.
// The error of a missing or refused resource comes from Fetch itself,
// errors of the transfer from the body's Read. Every error names u
// redacted. Fetch has the signature of ignition.Fetcher.
func (f *Fetcher) Fetch(ctx context.Context, u *url.URL, headers http.Header) (io.ReadCloser, error) {
	body, err := f.open(ctx, u, headers)
	if err != nil {
		return nil, redactErr(err)
	}
	if f.MaxSize > 0 {
		body = readCloser{Limit(body, u.String(), f.MaxSize), body}
	}
	return redactedBody{body}, nil
}

func (f *Fetcher) open(ctx context.Context, u *url.URL, headers http.Header) (io.ReadCloser, error) {
	switch u.Scheme {
	case "data":
		b, err := DecodeDataURL(u.String())
		if err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("file URL %s: host %q: only local files", redact.URL(u.String()), u.Host)
		}
		fl, err := os.Open(u.Path)
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", redact.URL(u.String()), err)
		}
		return fl, nil
	case "http", "https":
		return f.openHTTP(ctx, u, headers)
	case "tftp":
		return f.openTFTP(ctx, u)
	}
	return nil, fmt.Errorf("URL scheme %q is not supported", u.Scheme)
}

// DecodeDataURL decodes an RFC 2397 URL, base64 or percent-encoded, with
// the same library Ignition uses.
func DecodeDataURL(s string) ([]byte, error) {
	d, err := dataurl.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("data URL: %w", err)
	}
	return d.Data, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// redactedBody redacts the URLs in its errors (errors.Is still works).
type redactedBody struct{ io.ReadCloser }

func (b redactedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	return n, redactErr(err)
}

// cancelBody cancels the fetch's context when the body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func (f *Fetcher) client() *http.Client {
	if f.Client != nil {
		return f.Client
	}
	return newClient(f.Timeouts, f.InsecureTLS)
}

func (f *Fetcher) openHTTP(ctx context.Context, u *url.URL, headers http.Header) (io.ReadCloser, error) {
	attempts := f.Attempts
	if attempts <= 0 {
		attempts = 5
	}
	backoff, maxBackoff := f.Backoff, f.MaxBackoff
	if backoff <= 0 {
		backoff = time.Second
	}
	if maxBackoff <= 0 {
		maxBackoff = 30 * time.Second
	}
	stop := context.CancelFunc(func() {})
	if f.Total > 0 {
		ctx, stop = context.WithTimeout(ctx, f.Total)
	}
	client := f.client()
	cancel := stop
	if f.Client == nil {
		// A client of its own per fetch: let its kept-alive connection go
		// with the body rather than linger for the idle timeout.
		cancel = func() { stop(); client.CloseIdleConnections() }
	}
	r := NewResumingReader(ctx, client, u.String())
	r.q.headers, r.q.anyEncoding = headers, true
	r.MaxRetries, r.Backoff, r.MaxBackoff = attempts-1, backoff, maxBackoff
	r.Idle = f.Timeouts.OrDefault().Idle
	// Connect now, so that a 404 or a dead server is the error of Fetch.
	if err := r.connect(); err != nil {
		cancel()
		return nil, err
	}
	return cancelBody{r, cancel}, nil
}

// openTFTP reads a file over TFTP (octet mode). pack.ag/tftp has no
// context support: the transfer is bounded by its per-packet timeout and
// retransmissions, and the context is checked between reads. TFTP cannot
// resume: a caller that retries starts again from the first byte.
func (f *Fetcher) openTFTP(ctx context.Context, u *url.URL) (io.ReadCloser, error) {
	timeout := f.TFTPTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	secs := max(int(timeout/time.Second), 1)
	// 1428-byte blocks fill an Ethernet frame (RFC 2348); a server that
	// does not know the option answers with 512-byte blocks anyway.
	c, err := tftp.NewClient(tftp.ClientMode(tftp.ModeOctet), tftp.ClientTimeout(secs), tftp.ClientRetransmit(5), tftp.ClientBlocksize(TFTPBlockSize))
	if err != nil {
		return nil, fmt.Errorf("tftp client: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// pack.ag/tftp drops the leading "/" of the path from the file name,
	// as Ignition does.
	resp, err := c.Get(u.String())
	if err != nil {
		return nil, fmt.Errorf("tftp get %s: %w", redact.URL(u.String()), err)
	}
	return &tftpBody{ctx: ctx, r: resp, name: redact.URL(u.String())}, nil
}

// TFTPBlockSize is the block size a TFTP fetch asks for.
const TFTPBlockSize = 1428

type tftpBody struct {
	ctx  context.Context
	r    io.Reader
	name string
}

func (b *tftpBody) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("tftp get %s: %w", b.name, err)
	}
	return n, err
}

func (b *tftpBody) Close() error { return nil }
