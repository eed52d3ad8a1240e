package payload

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slateos/slate/internal/fetch"
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

// flakyServer serves dir and drops every connection after cutEvery bytes of
// body. With ignoreRange it also answers every request with 200 and the whole
// file; the k-th request is then cut at k*cutEvery bytes from the start, so
// each attempt gets further.
func flakyServer(t *testing.T, dir string, ignoreRange bool) (*httptest.Server, *atomic.Int64) {
	var requests atomic.Int64
	files := Serve(dir)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := requests.Add(1)
		limit := int64(cutEvery)
		if ignoreRange {
			r.Header.Del("Range")
			limit = k * cutEvery
		}
		files.ServeHTTP(&cutWriter{ResponseWriter: w, left: limit}, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &requests
}

// TestVerifyOverFlakyServer: a Verifier on top of a resuming download from
// a channel served by Serve sees the file whole and checked, however often
// the connection drops, with Range honoured or not.
func TestVerifyOverFlakyServer(t *testing.T) {
	f := fixture(t)
	root, _ := f.manifests["1.1.0"].File(RoleRoot)
	if root.CompressedSize < 3*cutEvery {
		t.Fatalf("test root compresses to %d bytes; need several cuts", root.CompressedSize)
	}
	for _, ignoreRange := range []bool{false, true} {
		t.Run(fmt.Sprintf("ignoreRange=%v", ignoreRange), func(t *testing.T) {
			srv, requests := flakyServer(t, f.channel, ignoreRange)
			rr := fetch.NewResumingReader(context.Background(), srv.Client(), srv.URL+"/"+root.Path)
			rr.Backoff, rr.MaxBackoff = time.Millisecond, 5*time.Millisecond
			defer rr.Close()
			v, err := OpenFile(root, rr)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			sameStream(t, f.expected("1.1.0", RoleRoot), v)
			if _, err := v.Read(make([]byte, 1)); err != io.EOF { //nolint:errorlint // io.Reader must return io.EOF itself, unwrapped: that is what is tested
				t.Fatalf("end: %v", err)
			}
			want := int(root.CompressedSize/cutEvery) + 1
			if rr.Requests() != want || requests.Load() != int64(want) {
				t.Errorf("%d requests (server saw %d), want %d", rr.Requests(), requests.Load(), want)
			}
		})
	}
}
