package payload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

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
func Fetch(ctx context.Context, client *http.Client, url string, offset int64) (io.ReadCloser, error) {
	f, err := fetch(ctx, client, url, offset)
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
}

func fetch(ctx context.Context, client *http.Client, url string, offset int64) (*fetched, error) {
	if offset < 0 {
		return nil, fmt.Errorf("fetch %s: negative offset %d", url, offset)
	}
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	req.Header.Set("Accept-Encoding", "identity")
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
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
			if err == io.EOF && definite {
				// The whole file is shorter than offset: nothing is left.
				resp.Body.Close()
				return &fetched{body: http.NoBody, definite: true}, nil
			}
			if err != nil {
				return fail(fmt.Errorf("fetch %s: server ignored Range; skipping to offset %d: got %d bytes: %w", url, offset, n, err))
			}
		}
		return &fetched{body: resp.Body, definite: definite}, nil
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
// read fails mid-stream it asks again from the current offset (see Fetch), so
// a flaky network costs a reconnect, not the whole download. It gives up after
// MaxRetries consecutive failures without a byte of progress (the count
// resets whenever data arrives, so a long download over a link that drops
// every few megabytes still completes), on a non-temporary HTTP status, and
// when its context is done.
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

	body     *fetched
	offset   int64
	failures int
	requests int
	err      error
}

// NewResumingReader returns a reader for url with 8 retries and backoff from
// 250 ms to 30 s. client nil means http.DefaultClient.
func NewResumingReader(ctx context.Context, client *http.Client, url string) *ResumingReader {
	return &ResumingReader{
		ctx:        ctx,
		client:     client,
		url:        url,
		MaxRetries: 8,
		Backoff:    250 * time.Millisecond,
		MaxBackoff: 30 * time.Second,
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
		if r.body == nil {
			r.requests++
			body, err := fetch(r.ctx, r.client, r.url, r.offset)
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
			r.body = body
		}
		n, err := r.body.body.Read(p)
		r.offset += int64(n)
		if n > 0 {
			r.failures = 0
		}
		switch {
		case err == nil:
			return n, nil
		case err == io.EOF && (r.body.definite || r.Size <= 0 || r.offset >= r.Size):
			r.closeBody()
			r.err = io.EOF
			return n, io.EOF
		}
		// Dropped: io.ErrUnexpectedEOF, a reset, or an early clean EOF.
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		r.closeBody()
		if r.ctx.Err() != nil {
			return n, r.stop(fmt.Errorf("fetch %s: %w", r.url, r.ctx.Err()))
		}
		if n > 0 {
			// Hand over what arrived; the next Read reconnects.
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
		return r.stop(fmt.Errorf("fetch %s: %w (while retrying after: %v)", r.url, r.ctx.Err(), cause))
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
