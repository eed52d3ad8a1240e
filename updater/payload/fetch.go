package payload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Timeouts bound every network wait of an update, so a server that never
// answers, or stops sending in the middle of a file, cannot hold the
// updater for good.
type Timeouts struct {
	// Connect bounds the TCP connect and the TLS handshake.
	Connect time.Duration
	// Header bounds the wait from a sent request to its response headers.
	Header time.Duration
	// Idle bounds the wait for the next byte of a response body: a
	// download that stalls that long is dropped and resumed (Range).
	Idle time.Duration
}

// DefaultTimeouts are the updater's: generous for slow links, short
// enough that a dead server is noticed within a minute or two.
var DefaultTimeouts = Timeouts{Connect: 10 * time.Second, Header: 30 * time.Second, Idle: 60 * time.Second}

// OrDefault fills the zero fields with DefaultTimeouts.
func (t Timeouts) OrDefault() Timeouts {
	if t.Connect <= 0 {
		t.Connect = DefaultTimeouts.Connect
	}
	if t.Header <= 0 {
		t.Header = DefaultTimeouts.Header
	}
	if t.Idle <= 0 {
		t.Idle = DefaultTimeouts.Idle
	}
	return t
}

// NewClient returns an HTTP client with the connect and header timeouts.
// The idle timeout is enforced on each body by Fetch and ResumingReader: a
// whole-request timeout would cut off a large download on a slow but
// healthy link.
func NewClient(t Timeouts) *http.Client {
	t = t.OrDefault()
	d := &net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   t.Connect,
		ResponseHeaderTimeout: t.Header,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
		ForceAttemptHTTP2:     true,
	}}
}

// ErrStalled is wrapped by the error of a body that sent nothing for the
// idle timeout.
var ErrStalled = errors.New("download stalled")

// idleBody cancels its request when a Read waits longer than idle for
// data: a plain read on a stalled connection would block until the
// kernel gives up on it, which may be never.
type idleBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	idle   time.Duration
	timer  *time.Timer
}

func newIdleBody(ctx context.Context, cancel context.CancelCauseFunc, rc io.ReadCloser, idle time.Duration) *idleBody {
	b := &idleBody{rc: rc, ctx: ctx, cancel: cancel, idle: idle}
	b.timer = time.AfterFunc(time.Hour, func() {
		cancel(fmt.Errorf("no data for %s: %w", idle, ErrStalled))
	})
	b.timer.Stop()
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.idle)
	n, err := b.rc.Read(p)
	b.timer.Stop()
	if err != nil && err != io.EOF {
		if cause := context.Cause(b.ctx); cause != nil && errors.Is(cause, ErrStalled) {
			return n, cause
		}
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// HTTPError is an unexpected HTTP status from Fetch.
type HTTPError struct {
	URL        string
	StatusCode int
	Status     string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("GET %s: %s", e.URL, e.Status) }

// Temporary reports whether retrying may help: server errors and rate limits
// may pass, a 404 or 403 will not.
func (e *HTTPError) Temporary() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusRequestTimeout
}

// Fetch GETs url starting at byte offset and returns the body positioned at
// that offset. For offset > 0 it sends "Range: bytes=offset-" and accepts a
// 206 whose Content-Range starts exactly at offset. A server that ignores
// Range and answers 200 with the whole file is handled by reading and
// discarding the first offset bytes: that costs the prefix again, but keeps
// the caller's stream (and its running hashes) going, which restarting from
// zero could not. Content-Encoding is refused (Accept-Encoding: identity) so
// offsets always count the file's own bytes.
//
// A body that sends nothing for DefaultTimeouts.Idle fails with ErrStalled;
// FetchIdle takes another idle timeout.
func Fetch(ctx context.Context, client *http.Client, url string, offset int64) (io.ReadCloser, error) {
	return FetchIdle(ctx, client, url, offset, DefaultTimeouts.Idle)
}

// FetchIdle is Fetch with an idle timeout (<= 0: none).
func FetchIdle(ctx context.Context, client *http.Client, url string, offset int64, idle time.Duration) (io.ReadCloser, error) {
	f, err := fetch(ctx, client, url, offset, idle)
	if err != nil {
		return nil, err
	}
	return f.body, nil
}

// fetched is an open response body and whether its end is the end of the file.
type fetched struct {
	body io.ReadCloser
	// definite is true when the server said how long the answer is
	// (Content-Length, or a 416 saying offset is at or past the end): then a
	// clean EOF is the end of the file and not a dropped connection.
	definite bool
	// whole: a 200 answer from the first byte; length is its
	// Content-Length (-1: not given).
	whole  bool
	length int64
}

func fetch(ctx context.Context, client *http.Client, url string, offset int64, idle time.Duration) (*fetched, error) {
	if offset < 0 {
		return nil, fmt.Errorf("fetch %s: negative offset %d", url, offset)
	}
	if client == nil {
		client = http.DefaultClient
	}
	rctx, cancel := context.WithCancelCause(ctx)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
	if err != nil {
		cancel(nil)
		return nil, fmt.Errorf("fetch: %w", err)
	}
	req.Header.Set("Accept-Encoding", "identity")
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel(nil)
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if idle > 0 {
		resp.Body = newIdleBody(rctx, cancel, resp.Body, idle)
	} else {
		body := resp.Body
		resp.Body = closeFunc{body, func() error { err := body.Close(); cancel(nil); return err }}
	}
	fail := func(err error) (*fetched, error) {
		resp.Body.Close()
		return nil, err
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fail(fmt.Errorf("fetch %s: server sent Content-Encoding %q; slate needs the file's own bytes", url, ce))
	}
	definite := resp.ContentLength >= 0
	switch {
	case resp.StatusCode == http.StatusOK:
		if offset > 0 {
			n, err := io.CopyN(io.Discard, resp.Body, offset)
			if errors.Is(err, io.EOF) && definite {
				// The whole file is shorter than offset: nothing is left.
				resp.Body.Close()
				return &fetched{body: http.NoBody, definite: true}, nil
			}
			if err != nil {
				return fail(fmt.Errorf("fetch %s: server ignored Range; skipping to offset %d: got %d bytes: %w", url, offset, n, err))
			}
		}
		return &fetched{body: resp.Body, definite: definite, whole: offset == 0, length: resp.ContentLength}, nil
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		start, err := contentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil {
			return fail(fmt.Errorf("fetch %s: %w", url, err))
		}
		if start != offset {
			return fail(fmt.Errorf("fetch %s: asked for bytes from %d, server sent them from %d", url, offset, start))
		}
		return &fetched{body: resp.Body, definite: definite}, nil
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && offset > 0:
		// "bytes */N" with N <= offset: the file ends where we are. That is
		// an answer (the caller's size check decides if it is too short),
		// not an error to retry.
		if total, ok := contentRangeTotal(resp.Header.Get("Content-Range")); ok && total <= offset {
			resp.Body.Close()
			return &fetched{body: http.NoBody, definite: true}, nil
		}
	}
	return fail(&HTTPError{URL: url, StatusCode: resp.StatusCode, Status: resp.Status})
}

type closeFunc struct {
	io.Reader
	close func() error
}

func (c closeFunc) Close() error { return c.close() }

// contentRangeTotal parses the N of "bytes */N".
func contentRangeTotal(h string) (int64, bool) {
	rest, ok := strings.CutPrefix(h, "bytes */")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	return n, err == nil && n >= 0
}

// contentRangeStart parses "bytes START-END/TOTAL" (TOTAL may be "*").
func contentRangeStart(h string) (int64, error) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, fmt.Errorf("malformed Content-Range %q", h)
	}
	rng, _, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, fmt.Errorf("malformed Content-Range %q", h)
	}
	startS, endS, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, fmt.Errorf("malformed Content-Range %q", h)
	}
	start, err1 := strconv.ParseInt(startS, 10, 64)
	end, err2 := strconv.ParseInt(endS, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, fmt.Errorf("malformed Content-Range %q", h)
	}
	return start, nil
}

// ResumingReader streams one URL and survives dropped connections: when a
// read fails mid-stream, or no data comes for Idle, it asks again from the
// current offset (see Fetch), so a flaky network costs a reconnect, not the
// whole download. It gives up after MaxRetries consecutive failed attempts
// (an attempt that delivered at least 64 KiB resets the count, so a long
// download over a link that drops every few megabytes still completes, while
// a server that sends a trickle and stalls again and again is given up on),
// on a non-temporary HTTP status, with CheckLength on a first answer whose
// length is not Size, and when its context is done.
//
// It does not check content: put a Verifier on top of it.
type ResumingReader struct {
	ctx    context.Context
	client *http.Client
	url    string

	// Size, if > 0, is the expected length. A clean EOF before it, on an
	// answer without Content-Length, is taken as a dropped connection too: a
	// server streaming without a length that dies early looks exactly like
	// that. With a Content-Length, Go reports a short body as
	// io.ErrUnexpectedEOF, so a clean EOF there is the real end.
	Size int64
	// MaxRetries is the number of consecutive failed attempts allowed.
	MaxRetries int
	// Backoff is the first wait before a retry; it doubles up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// Idle is the longest wait for the next byte (<= 0: no limit).
	Idle time.Duration
	// CheckLength: a first answer whose Content-Length is not Size fails
	// at once (wrapping ErrCorrupt), before a byte is handed over, so a
	// caller learns of a wrong file before it gives anything up for it.
	CheckLength bool
	// OnRetry, if set, hears of each failed attempt that will be retried:
	// the offset the next attempt asks for and why this one failed.
	OnRetry func(offset int64, attempt int, cause error)

	body     *fetched
	offset   int64
	start    int64 // offset at which the current attempt began
	failures int
	requests int
	pending  error // a drop whose retry (count and backoff) is due
	err      error
}

// progressReset is how much an attempt must deliver before its failure no
// longer counts against MaxRetries.
const progressReset = 64 << 10

// NewResumingReader returns a reader for url with 8 retries, backoff from
// 250 ms to 30 s and DefaultTimeouts.Idle. client nil means
// http.DefaultClient.
func NewResumingReader(ctx context.Context, client *http.Client, url string) *ResumingReader {
	return &ResumingReader{
		ctx:        ctx,
		client:     client,
		url:        url,
		MaxRetries: 8,
		Backoff:    250 * time.Millisecond,
		MaxBackoff: 30 * time.Second,
		Idle:       DefaultTimeouts.Idle,
	}
}

// Read implements io.Reader.
func (r *ResumingReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if err := r.ctx.Err(); err != nil {
			return 0, r.stop(fmt.Errorf("fetch %s: %w", r.url, err))
		}
		if r.pending != nil {
			cause := r.pending
			r.pending = nil
			if err := r.retry(cause); err != nil {
				return 0, err
			}
		}
		if r.body == nil {
			r.requests++
			body, err := fetch(r.ctx, r.client, r.url, r.offset, r.Idle)
			if err != nil {
				var he *HTTPError
				if errors.As(err, &he) && !he.Temporary() {
					return 0, r.stop(err)
				}
				if err := r.retry(err); err != nil {
					return 0, err
				}
				continue
			}
			if r.CheckLength && body.whole && r.Size > 0 && body.length >= 0 && body.length != r.Size {
				body.body.Close()
				what := "larger than the manifest says"
				if body.length < r.Size {
					what = "truncated"
				}
				return 0, r.stop(fmt.Errorf("fetch %s: %s: the server sends %d bytes, the manifest says %d: %w", r.url, what, body.length, r.Size, ErrCorrupt))
			}
			r.body, r.start = body, r.offset
		}
		n, err := r.body.body.Read(p)
		r.offset += int64(n)
		switch {
		case err == nil:
			return n, nil
		case err == io.EOF && (r.body.definite || r.Size <= 0 || r.offset >= r.Size):
			r.closeBody()
			r.err = io.EOF
			return n, io.EOF
		}
		// Dropped: io.ErrUnexpectedEOF, a reset, a stall, or an early
		// clean EOF.
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if r.offset-r.start >= progressReset {
			r.failures = 0
		}
		r.closeBody()
		if r.ctx.Err() != nil {
			return n, r.stop(fmt.Errorf("fetch %s: %w", r.url, r.ctx.Err()))
		}
		if n > 0 {
			// Hand over what arrived; the next Read counts the
			// failure and reconnects.
			r.pending = err
			return n, nil
		}
		if err := r.retry(err); err != nil {
			return 0, err
		}
	}
}

// retry counts a failure and waits before the next attempt.
func (r *ResumingReader) retry(cause error) error {
	r.failures++
	if r.failures > r.MaxRetries {
		return r.stop(fmt.Errorf("fetch %s: giving up at byte %d after %d failed attempts: %w", r.url, r.offset, r.failures, cause))
	}
	if r.OnRetry != nil {
		r.OnRetry(r.offset, r.failures, cause)
	}
	wait := r.Backoff
	for i := 1; i < r.failures && wait < r.MaxBackoff; i++ {
		wait *= 2
	}
	if r.MaxBackoff > 0 && wait > r.MaxBackoff {
		wait = r.MaxBackoff
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-r.ctx.Done():
		return r.stop(fmt.Errorf("fetch %s: %w (while retrying after: %v)", r.url, r.ctx.Err(), cause)) //nolint:errorlint // the cancellation is the cause; the last retry's error is context
	case <-t.C:
		return nil
	}
}

func (r *ResumingReader) stop(err error) error {
	r.closeBody()
	r.err = err
	return err
}

func (r *ResumingReader) closeBody() {
	if r.body != nil {
		r.body.body.Close()
		r.body = nil
	}
}

// Offset is the number of bytes delivered so far.
func (r *ResumingReader) Offset() int64 { return r.offset }

// Requests is the number of HTTP requests made so far.
func (r *ResumingReader) Requests() int { return r.requests }

// Close closes any open connection; further reads fail.
func (r *ResumingReader) Close() error {
	r.closeBody()
	if r.err == nil {
		r.err = errors.New("resuming reader closed")
	}
	return nil
}
