package ignition

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/vincent-petithory/dataurl"
	"pack.ag/tftp"
)

// Fetcher gets the bytes of a remote resource. Apply decodes data: URLs
// itself and hands every other URL to its Fetcher.
type Fetcher interface {
	Fetch(ctx context.Context, u *url.URL, headers http.Header) (io.ReadCloser, error)
}

// DefaultFetcher fetches data:, http:, https: and tftp: URLs. The zero
// value is ready to use.
type DefaultFetcher struct {
	// Client is used for http(s); nil is a client that waits at most 30 s
	// for response headers (the body may take as long as the context
	// allows: files can be large).
	Client *http.Client
	// Attempts bounds the tries of an http(s) request that fails with a
	// network error, 429 or 5xx; 0 is 5.
	Attempts int
	// Backoff is the wait before the second try, doubled after each;
	// 0 is 1 s.
	Backoff time.Duration
	// TFTPTimeout is the per-packet timeout, retried 5 times; 0 is 2 s.
	TFTPTimeout time.Duration
}

// Fetch implements Fetcher.
func (f *DefaultFetcher) Fetch(ctx context.Context, u *url.URL, headers http.Header) (io.ReadCloser, error) {
	switch u.Scheme {
	case "data":
		b, err := decodeDataURL(u.String())
		if err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	case "http", "https":
		return f.fetchHTTP(ctx, u, headers)
	case "tftp":
		return f.fetchTFTP(ctx, u)
	}
	return nil, fmt.Errorf("URL scheme %q is not supported", u.Scheme)
}

// decodeDataURL decodes an RFC 2397 URL, base64 or percent-encoded, with
// the same library Ignition uses.
func decodeDataURL(s string) ([]byte, error) {
	d, err := dataurl.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("data URL: %w", err)
	}
	return d.Data, nil
}

func (f *DefaultFetcher) fetchHTTP(ctx context.Context, u *url.URL, headers http.Header) (io.ReadCloser, error) {
	client := f.Client
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = 30 * time.Second
		client = &http.Client{Transport: tr}
	}
	attempts := f.Attempts
	if attempts <= 0 {
		attempts = 5
	}
	wait := f.Backoff
	if wait <= 0 {
		wait = time.Second
	}
	var last error
	for try := 1; ; try++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", u.Redacted(), err)
		}
		for k, vs := range headers {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
		resp, err := client.Do(req)
		retry := true
		switch {
		case err != nil:
			last = fmt.Errorf("GET %s: %w", u.Redacted(), err)
		case resp.StatusCode == http.StatusOK:
			return resp.Body, nil
		default:
			resp.Body.Close()
			last = fmt.Errorf("GET %s: %s", u.Redacted(), resp.Status)
			retry = resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
		}
		if !retry || try >= attempts || ctx.Err() != nil {
			if try > 1 {
				return nil, fmt.Errorf("%w (after %d attempts)", last, try)
			}
			return nil, last
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", last, ctx.Err())
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// fetchTFTP reads a file over TFTP (octet mode). pack.ag/tftp has no
// context support: the transfer is bounded by its per-packet timeout and
// retransmissions, and the context is checked between reads.
func (f *DefaultFetcher) fetchTFTP(ctx context.Context, u *url.URL) (io.ReadCloser, error) {
	timeout := f.TFTPTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	secs := int(timeout / time.Second)
	if secs < 1 {
		secs = 1
	}
	// 1428-byte blocks fill an Ethernet frame (RFC 2348); a server that
	// does not know the option answers with 512-byte blocks anyway.
	c, err := tftp.NewClient(tftp.ClientMode(tftp.ModeOctet), tftp.ClientTimeout(secs), tftp.ClientRetransmit(5), tftp.ClientBlocksize(1428))
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
		return nil, fmt.Errorf("tftp get %s: %w", u.Redacted(), err)
	}
	return &tftpBody{ctx: ctx, r: resp, name: u.Redacted()}, nil
}

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
