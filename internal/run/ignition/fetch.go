package ignition

import (
	"context"
	"io"
	"net/http"
	"net/url"

	"github.com/slateos/slate/internal/fetch"
)

// Fetcher gets the bytes of a remote resource. Apply decodes data: URLs
// itself and hands every other URL to its Fetcher.
type Fetcher interface {
	Fetch(ctx context.Context, u *url.URL, headers http.Header) (io.ReadCloser, error)
}

// DefaultFetcher is slate's one client (package fetch): data:, http:,
// https: and tftp: URLs, with Ignition's rules (headers stay with their
// origin, Accept-Encoding: identity, the bytes as stored). Apply sets its
// header and total timeouts from ignition.timeouts. The zero value is
// ready to use.
type DefaultFetcher = fetch.Fetcher

// decodeDataURL decodes an RFC 2397 URL, base64 or percent-encoded, with
// the same library Ignition uses.
func decodeDataURL(s string) ([]byte, error) { return fetch.DecodeDataURL(s) }
