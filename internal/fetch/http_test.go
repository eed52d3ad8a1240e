package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cutWriter passes at most left bytes to the client, then kills the
// connection mid-body, as a flaky network or a crashing proxy does.
type cutWriter struct {
	http.ResponseWriter
	left int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.left {
		n, _ := c.ResponseWriter.Write(p[:c.left])
		c.left -= int64(n)
		http.NewResponseController(c.ResponseWriter).Flush()
		panic(http.ErrAbortHandler)
	}
	n, err := c.ResponseWriter.Write(p)
	c.left -= int64(n)
	return n, err
}

const cutEvery = 5 << 20

// randomBytes is n bytes that do not compress, the same for a seed.
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	x := seed*0x9e3779b97f4a7c15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// flakyServer serves data and drops every connection after cutEvery bytes
// of body. With ignoreRange it also answers every request with 200 and the
// whole file; the k-th request is then cut at k*cutEvery bytes from the
// start, so each attempt gets further.
func flakyServer(t *testing.T, data []byte, ignoreRange bool) (*httptest.Server, *atomic.Int64) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := requests.Add(1)
		limit := int64(cutEvery)
		if ignoreRange {
			r.Header.Del("Range")
			limit = k * cutEvery
		}
		http.ServeContent(&cutWriter{ResponseWriter: w, left: limit}, r, "f", time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(srv.Close)
	return srv, &requests
}

func TestResumingReader(t *testing.T) {
	data := randomBytes(3*cutEvery+12345, 1)
	for _, ignoreRange := range []bool{false, true} {
		t.Run(fmt.Sprintf("ignoreRange=%v", ignoreRange), func(t *testing.T) {
			srv, requests := flakyServer(t, data, ignoreRange)
			rr := NewResumingReader(context.Background(), srv.Client(), srv.URL+"/f")
			rr.Backoff, rr.MaxBackoff = time.Millisecond, 5*time.Millisecond
			defer rr.Close()
			got, err := io.ReadAll(rr)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%d of %d bytes, err %v", len(got), len(data), err)
			}
			if _, err := rr.Read(make([]byte, 1)); err != io.EOF { //nolint:errorlint // io.Reader must return io.EOF itself, unwrapped: that is what is tested
				t.Fatalf("end: %v", err)
			}
			want := len(data)/cutEvery + 1
			t.Logf("%d bytes in %d requests", len(data), rr.Requests())
			if rr.Requests() != want || requests.Load() != int64(want) {
				t.Errorf("%d requests (server saw %d), want %d", rr.Requests(), requests.Load(), want)
			}
		})
	}
}

func TestResumingReaderFailures(t *testing.T) {
	abort := func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) }
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		cancel    time.Duration // cancel the context after this long
		backoff   time.Duration
		wantReqs  int64
		wantErr   string
		wantHTTP  int
		wantCause error
	}{
		{name: "connection always dies", handler: abort, backoff: time.Millisecond, wantReqs: 4, wantErr: "giving up at byte 0 after 4 failed attempts"},
		{name: "503 is retried", handler: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "busy", http.StatusServiceUnavailable) },
			backoff: time.Millisecond, wantReqs: 4, wantErr: "503 Service Unavailable", wantHTTP: 503},
		{name: "404 is not retried", handler: http.NotFound, backoff: time.Millisecond, wantReqs: 1, wantErr: "404 Not Found", wantHTTP: 404},
		{name: "cancelled during backoff", handler: abort, backoff: time.Minute, cancel: 100 * time.Millisecond, wantReqs: 1,
			wantErr: "context canceled", wantCause: context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var reqs atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reqs.Add(1)
				tc.handler(w, r)
			}))
			defer srv.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel > 0 {
				time.AfterFunc(tc.cancel, cancel)
			}
			rr := NewResumingReader(ctx, srv.Client(), srv.URL+"/f")
			rr.MaxRetries, rr.Backoff, rr.MaxBackoff = 3, tc.backoff, tc.backoff
			start := time.Now()
			_, err := io.Copy(io.Discard, rr)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			if got := reqs.Load(); got != tc.wantReqs || int64(rr.Requests()) != tc.wantReqs {
				t.Errorf("%d requests (reader counted %d), want %d", got, rr.Requests(), tc.wantReqs)
			}
			var he *HTTPError
			if tc.wantHTTP != 0 && (!errors.As(err, &he) || he.StatusCode != tc.wantHTTP) {
				t.Errorf("err %v is not an HTTPError %d", err, tc.wantHTTP)
			}
			if tc.wantCause != nil && !errors.Is(err, tc.wantCause) {
				t.Errorf("err %v does not wrap %v", err, tc.wantCause)
			}
			if _, err2 := rr.Read(make([]byte, 1)); err2 == nil {
				t.Error("read after failure succeeded")
			}
		})
	}
}

// A server without Content-Length that ends a response early and cleanly:
// with Size set the reader resumes, without it the short stream is all there
// is (and a Verifier would call it truncated).
func TestResumingReaderCleanEarlyEOF(t *testing.T) {
	data := randomBytes(100000, 7)
	var reqs atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if reqs.Add(1) == 1 {
			w.Write(data[:30000]) // chunked: no Content-Length
			return
		}
		http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()

	rr := NewResumingReader(context.Background(), srv.Client(), srv.URL)
	rr.Size = int64(len(data))
	rr.Backoff = time.Millisecond
	got, err := io.ReadAll(rr)
	if err != nil || !bytes.Equal(got, data) || rr.Requests() != 2 {
		t.Errorf("with Size: %d bytes, %d requests, err %v", len(got), rr.Requests(), err)
	}

	reqs.Store(0)
	rr = NewResumingReader(context.Background(), srv.Client(), srv.URL)
	got, err = io.ReadAll(rr)
	if err != nil || len(got) != 30000 || rr.Requests() != 1 {
		t.Errorf("without Size: %d bytes, %d requests, err %v", len(got), rr.Requests(), err)
	}
}

func TestOpen(t *testing.T) {
	data := randomBytes(10000, 3)
	serve := func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(data))
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		offset  int64
		want    []byte
		wantErr string
	}{
		{name: "whole file", handler: serve, want: data},
		{name: "range", handler: serve, offset: 1234, want: data[1234:]},
		{name: "last byte", handler: serve, offset: 9999, want: data[9999:]},
		{name: "at the end", handler: serve, offset: 10000, want: []byte{}},
		{name: "past the end", handler: serve, offset: 20000, want: []byte{}},
		{name: "range ignored", handler: func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("Range")
			serve(w, r)
		}, offset: 4321, want: data[4321:]},
		{name: "range ignored, file shorter than offset", handler: func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("Range")
			serve(w, r)
		}, offset: 20000, want: []byte{}},
		{name: "wrong range start", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 0-9999/10000")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data)
		}, offset: 5, wantErr: "asked for bytes from 5, server sent them from 0"},
		{name: "malformed Content-Range", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes five-/x")
			w.WriteHeader(http.StatusPartialContent)
		}, offset: 5, wantErr: "malformed Content-Range"},
		{name: "206 without asking", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 0-9/10")
			w.WriteHeader(http.StatusPartialContent)
		}, wantErr: "206 Partial Content"},
		{name: "content encoding", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write([]byte("x"))
		}, wantErr: `Content-Encoding "gzip"`},
		{name: "not found", handler: http.NotFound, wantErr: "404 Not Found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			body, err := Open(context.Background(), srv.Client(), srv.URL+"/f", tc.offset, DefaultTimeouts.Idle)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer body.Close()
			got, err := io.ReadAll(body)
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Errorf("got %d bytes (err %v), want %d", len(got), err, len(tc.want))
			}
		})
	}
	if _, err := Open(context.Background(), nil, "http://127.0.0.1:1/x", -1, 0); err == nil {
		t.Error("negative offset accepted")
	}
}

// silentServer accepts connections and reads requests but never answers:
// a hung web server or a black-holing proxy.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(io.Discard, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "http://" + l.Addr().String() + "/f"
}

func TestOpenHeaderTimeout(t *testing.T) {
	url := silentServer(t)
	client := NewClient(Timeouts{Header: 300 * time.Millisecond})
	start := time.Now()
	_, err := Open(context.Background(), client, url, 0, DefaultTimeouts.Idle)
	if err == nil || !strings.Contains(err.Error(), "timeout awaiting response headers") {
		t.Fatalf("err = %v, want a header timeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v for a 300ms header timeout", d)
	}
	// the resuming reader retries a bounded number of times
	rr := NewResumingReader(context.Background(), client, url)
	rr.MaxRetries, rr.Backoff, rr.MaxBackoff = 2, time.Millisecond, time.Millisecond
	start = time.Now()
	_, err = io.Copy(io.Discard, rr)
	if err == nil || !strings.Contains(err.Error(), "giving up at byte 0 after 3 failed attempts") || rr.Requests() != 3 {
		t.Fatalf("err = %v after %d requests", err, rr.Requests())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestOpenConnectTimeout(t *testing.T) {
	// a connect that never completes needs an unroutable network, which
	// loopback tests do not have: check the client carries the timeouts
	c := NewClient(Timeouts{Connect: 1234 * time.Millisecond})
	tr := c.Transport.(*http.Transport)
	if tr.TLSHandshakeTimeout != 1234*time.Millisecond || tr.ResponseHeaderTimeout != DefaultTimeouts.Header {
		t.Errorf("transport timeouts: tls %v header %v", tr.TLSHandshakeTimeout, tr.ResponseHeaderTimeout)
	}
	if c.Timeout != 0 {
		t.Error("a whole-request timeout would cut off slow, healthy downloads")
	}
}

// stallServer serves data; each request in stallAt (by number, from 1)
// sends the first half of what it was asked for and then stalls (holds the
// connection open, sending nothing) until the test ends.
func stallServer(t *testing.T, data []byte, stall func(n int64) bool) (string, *[]string) {
	t.Helper()
	var reqs atomic.Int64
	var mu sync.Mutex
	var ranges []string
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := reqs.Add(1)
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		mu.Unlock()
		if !stall(n) {
			http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(data))
			return
		}
		var off int64
		if rg := r.Header.Get("Range"); rg != "" {
			fmt.Sscanf(rg, "bytes=%d-", &off)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, len(data)-1, len(data)))
			w.Header().Set("Content-Length", fmt.Sprint(int64(len(data))-off))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		}
		half := off + (int64(len(data))-off)/2
		w.Write(data[off:half])
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv.URL + "/f", &ranges
}

func TestResumingReaderStall(t *testing.T) {
	data := randomBytes(1<<20, 11)
	url, ranges := stallServer(t, data, func(n int64) bool { return n == 1 })
	rr := NewResumingReader(context.Background(), NewClient(Timeouts{}), url)
	rr.Size, rr.Idle, rr.Backoff = int64(len(data)), 300*time.Millisecond, time.Millisecond
	var heard []string
	rr.OnRetry = func(off int64, n int, err error) {
		heard = append(heard, fmt.Sprintf("%d %d %v", off, n, errors.Is(err, ErrStalled)))
	}
	start := time.Now()
	got, err := io.ReadAll(rr)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%d of %d bytes, err %v", len(got), len(data), err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	want := []string{"", fmt.Sprintf("bytes=%d-", len(data)/2)}
	if fmt.Sprint(*ranges) != fmt.Sprint(want) {
		t.Errorf("requests with Range %q, want %q (resume where the stall began)", *ranges, want)
	}
	if w := fmt.Sprintf("%d 1 true", len(data)/2); len(heard) != 1 || heard[0] != w {
		t.Errorf("OnRetry heard %q, want [%s]", heard, w)
	}
}

func TestResumingReaderKeepsStalling(t *testing.T) {
	// every answer sends a little (less than progressReset) and stalls
	data := randomBytes(100<<10, 12)
	url, ranges := stallServer(t, data, func(int64) bool { return true })
	rr := NewResumingReader(context.Background(), NewClient(Timeouts{}), url)
	rr.Size, rr.Idle, rr.Backoff, rr.MaxBackoff, rr.MaxRetries = int64(len(data)), 200*time.Millisecond, time.Millisecond, time.Millisecond, 3
	start := time.Now()
	_, err := io.Copy(io.Discard, rr)
	if err == nil || !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "after 4 failed attempts") || !strings.Contains(err.Error(), "no data for 200ms") {
		t.Fatalf("err = %v, want a bounded stall failure", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if len(*ranges) != 4 {
		t.Errorf("%d requests, want 4", len(*ranges))
	}
}

func TestResumingReaderWrongLength(t *testing.T) {
	data := randomBytes(1000, 13)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	rr := NewResumingReader(context.Background(), srv.Client(), srv.URL)
	rr.Size, rr.CheckLength = 2000, true
	_, err := rr.Read(make([]byte, 10))
	if err == nil || !errors.Is(err, ErrWrongSize) || !strings.Contains(err.Error(), "truncated: the server sends 1000 bytes, the caller says 2000") || rr.Requests() != 1 {
		t.Fatalf("err = %v after %d requests", err, rr.Requests())
	}
}
