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
	// Client is used for http(s); nil is a client that waits at most
	// ResponseHeaderTimeout for response headers (the body may take as
	// long as TotalTimeout and the context allow: files can be large).
	Client *http.Client
	// ResponseHeaderTimeout is Ignition's httpResponseHeaders; 0 is
	// 30 s (the root image of a netbooted machine comes through here too).
	// Used when Client is nil.
	ResponseHeaderTimeout time.Duration
	// TotalTimeout is Ignition's httpTotal: it bounds one fetch, retries
	// and body included; 0 is no limit.
	TotalTimeout time.Duration
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

// origin is the scheme and host (with port) of u, as browsers compare
// them.
func origin(u *url.URL) string { return u.Scheme + "://" + u.Host }

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

func (f *DefaultFetcher) fetchHTTP(ctx context.Context, u *url.URL, headers http.Header) (io.ReadCloser, error) {
	client := f.Client
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = f.ResponseHeaderTimeout
		if tr.ResponseHeaderTimeout <= 0 {
			tr.ResponseHeaderTimeout = 30 * time.Second
		}
		client = &http.Client{Transport: tr}
	}
	// The config's headers (tokens, often) go to the config's origin
	// only, as Ignition does: a redirect elsewhere does not get them.
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
	client = &c
	cancel := context.CancelFunc(func() {})
	if f.TotalTimeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, f.TotalTimeout)
	}
	body, err := f.getHTTP(ctx, client, u, headers)
	if err != nil {
		cancel()
		return nil, err
	}
	return cancelBody{body, cancel}, nil
}

func (f *DefaultFetcher) getHTTP(ctx context.Context, client *http.Client, u *url.URL, headers http.Header) (io.ReadCloser, error) {
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
		// Bytes as stored: Go would otherwise ask for gzip and unpack it,
		// and a "compression": "gzip" source would be unpacked twice.
		req.Header.Set("Accept-Encoding", "identity")
		for k, vs := range headers {
			req.Header.Del(k)
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
