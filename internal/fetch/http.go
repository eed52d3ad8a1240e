package fetch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/slateos/slate/internal/redact"
)

// Timeouts bound every network wait of a fetch, so a server that never
// answers, or stops sending in the middle of a file, cannot hold its
// caller for good.
type Timeouts struct {
	// Connect bounds the TCP connect and the TLS handshake.
	Connect time.Duration
	// Header bounds the wait from a sent request to its response headers.
	Header time.Duration
	// Idle bounds the wait for the next byte of a response body: a
	// download that stalls that long is dropped and resumed (Range).
	Idle time.Duration
}

// DefaultTimeouts are generous for slow links, short enough that a dead
// server is noticed within a minute or two. Ignition's ignition.timeouts
// and the spec's update.timeouts override them per use.
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
// The idle timeout is enforced on each body by Open and ResumingReader: a
// whole-request timeout would cut off a large download on a slow but
// healthy link.
func NewClient(t Timeouts) *http.Client { return newClient(t, false) }

// newClient is NewClient; insecure skips certificate checks, for callers
// that trust what they fetch by a hash they already hold.
func newClient(t Timeouts, insecure bool) *http.Client {
	t = t.OrDefault()
	d := &net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   t.Connect,
		ResponseHeaderTimeout: t.Header,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
		ForceAttemptHTTP2:     true,
	}
	if insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the caller checks a sha256 it trusts
	}
	return &http.Client{Transport: tr}
}

// ErrStalled is wrapped by the error of a body that sent nothing for the
// idle timeout.
var ErrStalled = errors.New("download stalled")

// ErrWrongSize is wrapped by the error of a ResumingReader with CheckLength
// whose first answer is not Size bytes long (unless WrongSize says another
// error).
var ErrWrongSize = errors.New("file is not the expected size")

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

// HTTPError is an unexpected HTTP status. URL is redacted.
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

// redactedError keeps the chain of an error (errors.Is, errors.As) while
// its text has every URL redacted: Go's own errors quote the whole URL,
// query tokens and all.
type redactedError struct{ err error }

func (e redactedError) Error() string { return redact.Message(e.err.Error()) }
func (e redactedError) Unwrap() error { return e.err }

// redactErr wraps err so that its message is redacted.
func redactErr(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	var r redactedError
	if errors.As(err, &r) {
		return err
	}
	return redactedError{err}
}

// Open GETs url starting at byte offset and returns the body positioned at
// that offset. For offset > 0 it sends "Range: bytes=offset-" and accepts a
// 206 whose Content-Range starts exactly at offset. A server that ignores
// Range and answers 200 with the whole file is handled by reading and
// discarding the first offset bytes: that costs the prefix again, but keeps
// the caller's stream (and its running hashes) going, which restarting from
// zero could not. Content-Encoding is refused (Accept-Encoding: identity) so
// offsets always count the file's own bytes.
//
// A body that sends nothing for idle (<= 0: no limit) fails with
// ErrStalled. client nil is http.DefaultClient. Errors name the URL
// redacted.
func Open(ctx context.Context, client *http.Client, url string, offset int64, idle time.Duration) (io.ReadCloser, error) {
	f, err := get(ctx, request{client: client, url: url, offset: offset, idle: idle})
	if err != nil {
		return nil, redactErr(err)
	}
	return f.body, nil
}

// request is one GET.
type request struct {
	client *http.Client
	url    string
	offset int64
	idle   time.Duration
	// headers are added to the request; a redirect to another origin
	// drops them (see withHeaders).
	headers http.Header
	// anyEncoding takes a Content-Encoding the server sends anyway as the
	// bytes as stored (Ignition's rule: a "compression": "gzip" source
	// may be served so), rather than refusing it.
	anyEncoding bool
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

func get(ctx context.Context, q request) (*fetched, error) {
	url := redact.URL(q.url)
	if q.offset < 0 {
		return nil, fmt.Errorf("fetch %s: negative offset %d", url, q.offset)
	}
	client := q.client
	if client == nil {
		client = http.DefaultClient
	}
	rctx, cancel := context.WithCancelCause(ctx)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, q.url, nil)
	if err != nil {
		cancel(nil)
		return nil, fmt.Errorf("fetch: %w", err)
	}
	// Bytes as stored: Go would otherwise ask for gzip and unpack it,
	// and offsets would not count the file's bytes.
	req.Header.Set("Accept-Encoding", "identity")
	for k, vs := range q.headers {
		req.Header.Del(k)
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if q.offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", q.offset))
	}
	resp, err := withHeaders(client, q.headers).Do(req)
	if err != nil {
		cancel(nil)
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if q.idle > 0 {
		resp.Body = newIdleBody(rctx, cancel, resp.Body, q.idle)
	} else {
		body := resp.Body
		resp.Body = closeFunc{body, func() error { err := body.Close(); cancel(nil); return err }}
	}
	fail := func(err error) (*fetched, error) {
		resp.Body.Close()
		return nil, err
	}
	if ce := resp.Header.Get("Content-Encoding"); !q.anyEncoding && ce != "" && !strings.EqualFold(ce, "identity") {
		return fail(fmt.Errorf("fetch %s: server sent Content-Encoding %q; slate needs the file's own bytes", url, ce))
	}
	definite := resp.ContentLength >= 0
	switch {
	case resp.StatusCode == http.StatusOK:
		if q.offset > 0 {
			n, err := io.CopyN(io.Discard, resp.Body, q.offset)
			if errors.Is(err, io.EOF) && definite {
				// The whole file is shorter than offset: nothing is left.
				resp.Body.Close()
				return &fetched{body: http.NoBody, definite: true}, nil
			}
			if err != nil {
				return fail(fmt.Errorf("fetch %s: server ignored Range; skipping to offset %d: got %d bytes: %w", url, q.offset, n, err))
			}
		}
		return &fetched{body: resp.Body, definite: definite, whole: q.offset == 0, length: resp.ContentLength}, nil
	case resp.StatusCode == http.StatusPartialContent && q.offset > 0:
		start, err := contentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil {
			return fail(fmt.Errorf("fetch %s: %w", url, err))
		}
		if start != q.offset {
			return fail(fmt.Errorf("fetch %s: asked for bytes from %d, server sent them from %d", url, q.offset, start))
		}
		return &fetched{body: resp.Body, definite: definite}, nil
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && q.offset > 0:
		// "bytes */N" with N <= offset: the file ends where we are. That is
		// an answer (the caller's size check decides if it is too short),
		// not an error to retry.
		if total, ok := contentRangeTotal(resp.Header.Get("Content-Range")); ok && total <= q.offset {
			resp.Body.Close()
			return &fetched{body: http.NoBody, definite: true}, nil
		}
	}
	return fail(&HTTPError{URL: url, StatusCode: resp.StatusCode, Status: resp.Status})
}

// withHeaders returns client, or a copy of it whose redirects to another
// origin drop the caller's headers (tokens, often), as Ignition does.
func withHeaders(client *http.Client, headers http.Header) *http.Client {
	if len(headers) == 0 {
		return client
	}
	c, prev := *client, client.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if origin(req.URL) != origin(via[0].URL) {
			for k := range headers {
				req.Header.Del(k)
			}
		}
		if prev != nil {
			return prev(req, via)
		}
		return nil
	}
	return &c
}

// origin is the scheme and host (with port) of u, as browsers compare
// them.
func origin(u *url.URL) string { return u.Scheme + "://" + u.Host }

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
