package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/slateos/slate/internal/redact"
)

// ResumingReader streams one URL and survives dropped connections: when a
// read fails mid-stream, or no data comes for Idle, it asks again from the
// current offset (see Open), so a flaky network costs a reconnect, not the
// whole download. It gives up after MaxRetries consecutive failed attempts
// (an attempt that delivered at least 64 KiB resets the count, so a long
// download over a link that drops every few megabytes still completes, while
// a server that sends a trickle and stalls again and again is given up on),
// on a non-temporary HTTP status, with CheckLength on a first answer whose
// length is not Size, and when its context is done. Its errors name the
// URL redacted.
//
// It does not check content: put a verifier on top of it.
type ResumingReader struct {
	ctx context.Context
	q   request

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
	// at once (wrapping WrongSize), before a byte is handed over, so a
	// caller learns of a wrong file before it gives anything up for it.
	CheckLength bool
	// SizeFrom names who says Size in that error ("the manifest"); empty
	// is "the caller".
	SizeFrom string
	// WrongSize is the error the length error wraps; nil is ErrWrongSize.
	WrongSize error
	// OnRetry, if set, hears of each failed attempt that will be retried:
	// the offset the next attempt asks for and why this one failed
	// (redacted).
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
// http.DefaultClient. Nothing is sent before the first Read.
func NewResumingReader(ctx context.Context, client *http.Client, url string) *ResumingReader {
	return &ResumingReader{
		ctx:        ctx,
		q:          request{client: client, url: url},
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
		if err := r.connect(); err != nil {
			return 0, err
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
			return n, r.stop(fmt.Errorf("fetch %s: %w", r.name(), r.ctx.Err()))
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

// connect makes sure a response body is open at the current offset,
// retrying as the rules say.
func (r *ResumingReader) connect() error {
	if r.err != nil {
		return r.err
	}
	for {
		if err := r.ctx.Err(); err != nil {
			return r.stop(fmt.Errorf("fetch %s: %w", r.name(), err))
		}
		if r.pending != nil {
			cause := r.pending
			r.pending = nil
			if err := r.retry(cause); err != nil {
				return err
			}
		}
		if r.body != nil {
			return nil
		}
		r.requests++
		q := r.q
		q.offset, q.idle = r.offset, r.Idle
		body, err := get(r.ctx, q)
		if err != nil {
			var he *HTTPError
			if errors.As(err, &he) && !he.Temporary() {
				return r.stop(err)
			}
			if err := r.retry(err); err != nil {
				return err
			}
			continue
		}
		if r.CheckLength && body.whole && r.Size > 0 && body.length >= 0 && body.length != r.Size {
			body.body.Close()
			what := "larger than " + r.sizeFrom() + " says"
			if body.length < r.Size {
				what = "truncated"
			}
			wrong := r.WrongSize
			if wrong == nil {
				wrong = ErrWrongSize
			}
			return r.stop(fmt.Errorf("fetch %s: %s: the server sends %d bytes, %s says %d: %w", r.name(), what, body.length, r.sizeFrom(), r.Size, wrong))
		}
		r.body, r.start = body, r.offset
	}
}

func (r *ResumingReader) name() string { return redact.URL(r.q.url) }

func (r *ResumingReader) sizeFrom() string {
	if r.SizeFrom == "" {
		return "the caller"
	}
	return r.SizeFrom
}

// retry counts a failure and waits before the next attempt.
func (r *ResumingReader) retry(cause error) error {
	r.failures++
	if r.failures > r.MaxRetries {
		return r.stop(fmt.Errorf("fetch %s: giving up at byte %d after %d failed attempts: %w", r.name(), r.offset, r.failures, cause))
	}
	if r.OnRetry != nil {
		r.OnRetry(r.offset, r.failures, redactErr(cause))
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
		return r.stop(fmt.Errorf("fetch %s: %w (while retrying after: %v)", r.name(), r.ctx.Err(), cause)) //nolint:errorlint // the cancellation is the cause; the last retry's error is context
	case <-t.C:
		return nil
	}
}

func (r *ResumingReader) stop(err error) error {
	r.closeBody()
	r.err = redactErr(err)
	return r.err
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
