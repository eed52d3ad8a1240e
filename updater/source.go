// Package updater moves a slate machine to a new version: it checks a
// channel, verifies the signed manifest, streams the new root into the
// idle slot while verifying it, writes the slot's kernel and initramfs,
// and flips the boot entry; after the reboot it blesses the new slot once
// it is healthy, and notices when the new slot never came up.
package updater

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/internal/fetch"
	"github.com/slateos/slate/updater/payload"
)

// maxManifest bounds what a channel can make us read before the signature
// check.
const maxManifest = 1 << 20

// Source is where a version comes from: a channel over HTTP, or a channel
// or version folder on a local file system (air-gapped machines).
type Source interface {
	// Manifest returns the manifest envelope (manifest.json, which
	// carries its signatures); sig is always nil since format 2.
	Manifest(ctx context.Context) (data, sig []byte, err error)
	// Open opens a file named by the manifest (relative to the channel)
	// whose stored size is size.
	Open(ctx context.Context, rel string, size int64) (io.ReadCloser, error)
	String() string
}

// NewSource makes a Source from a URL (http, https) or a folder path. Its
// downloads give up on a body that sends nothing for
// fetch.DefaultTimeouts.Idle (see NewSourceIdle); client nil is one with
// fetch.DefaultTimeouts.
func NewSource(loc string, client *http.Client) (Source, error) {
	return NewSourceIdle(loc, client, fetch.DefaultTimeouts.Idle)
}

// NewSourceIdle is NewSource with another idle timeout.
func NewSourceIdle(loc string, client *http.Client, idle time.Duration) (Source, error) {
	if strings.HasPrefix(loc, "http://") || strings.HasPrefix(loc, "https://") {
		u, err := url.Parse(loc)
		if err != nil {
			return nil, fmt.Errorf("channel %q: %w", RedactURL(loc), redactErr(err))
		}
		if client == nil {
			client = fetch.NewClient(fetch.DefaultTimeouts)
		}
		return &httpSource{base: u, client: client, idle: idle}, nil
	}
	st, err := os.Stat(loc)
	if err != nil {
		return nil, fmt.Errorf("update source: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("update source %s: want a channel or version folder (with manifest.json) or an http(s) URL", loc)
	}
	return dirSource(loc), nil
}

type httpSource struct {
	base   *url.URL
	client *http.Client
	idle   time.Duration
}

// String is the channel's URL without credentials.
func (s *httpSource) String() string { return RedactURL(s.base.String()) }

func (s *httpSource) url(rel string) string {
	u := *s.base
	u.Path = path.Join(u.Path, rel)
	return u.String()
}

func (s *httpSource) get(ctx context.Context, rel string) ([]byte, error) {
	body, err := fetch.Open(ctx, s.client, s.url(rel), 0, s.idle)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return fetch.ReadAll(body, s.url(rel), maxManifest)
}

func (s *httpSource) Manifest(ctx context.Context) ([]byte, []byte, error) {
	data, err := s.get(ctx, payload.ManifestFile)
	if err != nil {
		return nil, nil, err
	}
	return data, nil, nil
}

func (s *httpSource) Open(ctx context.Context, rel string, size int64) (io.ReadCloser, error) {
	// resumes with HTTP Range after a dropped connection; knowing the
	// size, an early end of a response without a length is a drop too
	// (fetch redacts the URL in its errors)
	r := fetch.NewResumingReader(ctx, s.client, s.url(rel))
	r.Size, r.Idle, r.CheckLength = size, s.idle, true
	r.SizeFrom, r.WrongSize = "the manifest", payload.ErrCorrupt
	r.OnRetry = func(off int64, attempt int, cause error) {
		logrus.WithError(cause).Warnf("updater: download of %s interrupted; resuming at byte %d (attempt %d)", RedactURL(s.url(rel)), off, attempt+1)
	}
	return r, nil
}

type dirSource string

func (d dirSource) String() string { return string(d) }

func (d dirSource) Manifest(context.Context) ([]byte, []byte, error) {
	read := func(name string) ([]byte, error) {
		f, err := os.Open(filepath.Join(string(d), name))
		if err != nil {
			return nil, fmt.Errorf("update source: %w", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxManifest+1))
		if err != nil {
			return nil, fmt.Errorf("update source: read %s: %w", name, err)
		}
		if len(b) > maxManifest {
			return nil, fmt.Errorf("update source: %s is larger than %d bytes", name, maxManifest)
		}
		return b, nil
	}
	data, err := read(payload.ManifestFile)
	if err != nil {
		return nil, nil, err
	}
	return data, nil, nil
}

// Open resolves paths against the channel folder; given a version folder
// (whose manifest names "1.1.0/root.img.zst"), against its parent.
func (d dirSource) Open(_ context.Context, rel string, _ int64) (io.ReadCloser, error) {
	for _, base := range []string{string(d), filepath.Dir(string(d))} {
		f, err := os.Open(filepath.Join(base, filepath.FromSlash(rel)))
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("update source: %w", err)
		}
	}
	return nil, fmt.Errorf("update source %s: %s: %w", d, rel, os.ErrNotExist)
}
