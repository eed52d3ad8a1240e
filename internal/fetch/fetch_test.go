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
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pack.ag/tftp"
)

// tftpServer serves files over TFTP on 127.0.0.1 and counts read requests.
func tftpServer(t *testing.T, files map[string][]byte) (string, *atomic.Int32) {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := tftp.NewServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var reqs atomic.Int32
	srv.ReadHandler(tftp.ReadHandlerFunc(func(r tftp.ReadRequest) {
		reqs.Add(1)
		data, ok := files[r.Name()]
		if !ok {
			r.WriteError(tftp.ErrCodeFileNotFound, "not found")
			return
		}
		r.WriteSize(int64(len(data)))
		r.Write(data)
	}))
	go srv.Serve(conn)
	t.Cleanup(func() { srv.Close() })
	return conn.LocalAddr().String(), &reqs
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// fast retries quickly, so failing cases take milliseconds.
func fast() *Fetcher {
	return &Fetcher{Attempts: 3, Backoff: time.Millisecond, TFTPTimeout: time.Second}
}

func TestFetcherSchemes(t *testing.T) {
	data := randomBytes(200000, 5)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/f" {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	tftpAddr, _ := tftpServer(t, map[string][]byte{"dir/f": data[:70000]})
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, data[:1234], 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		url     string
		want    []byte
		wantErr string
	}{
		{name: "data base64", url: "data:;base64,aGVsbG8=", want: []byte("hello")},
		{name: "data percent", url: "data:,hello%20world", want: []byte("hello world")},
		{name: "data bad", url: "data:;base64,!!!", wantErr: "data URL"},
		{name: "file", url: "file://" + file, want: data[:1234]},
		{name: "file missing", url: "file://" + file + ".no", wantErr: "no such file"},
		{name: "file on another host", url: "file://elsewhere" + file, wantErr: "only local files"},
		{name: "http", url: srv.URL + "/f", want: data},
		{name: "http 404", url: srv.URL + "/missing", wantErr: "404 Not Found"},
		{name: "tftp", url: "tftp://" + tftpAddr + "/dir/f", want: data[:70000]},
		{name: "tftp missing", url: "tftp://" + tftpAddr + "/nope", wantErr: "tftp get"},
		{name: "other scheme", url: "ftp://h/f", wantErr: `URL scheme "ftp" is not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := fast().Fetch(context.Background(), mustURL(t, tc.url), nil)
			var got []byte
			if err == nil {
				got, err = io.ReadAll(body)
				body.Close()
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("%d bytes, err %v; want %d bytes", len(got), err, len(tc.want))
			}
		})
	}
}

// TestFetcherHeaders: Ignition's rules. The caller's headers reach the
// config's origin and a redirect within it, never another origin; every
// request asks for the bytes as stored, and a Content-Encoding the server
// sends anyway is passed through as those bytes.
func TestFetcherHeaders(t *testing.T) {
	var mu sync.Mutex
	saw := map[string]http.Header{}
	record := func(name string, r *http.Request) {
		mu.Lock()
		saw[name] = r.Header.Clone()
		mu.Unlock()
	}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("other", r)
		w.Header().Set("Content-Encoding", "gzip")
		w.Write([]byte("stored bytes"))
	}))
	defer other.Close()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("origin"+r.URL.Path, r)
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, other.URL+"/x", http.StatusFound)
		case "/same":
			http.Redirect(w, r, "/final", http.StatusFound)
		default:
			w.Write([]byte("stored bytes"))
		}
	}))
	defer origin.Close()
	for _, tc := range []struct {
		path, last string
		tokenThere bool
	}{
		{"/moved", "other", false},
		{"/same", "origin/final", true},
	} {
		t.Run(tc.path, func(t *testing.T) {
			body, err := fast().Fetch(context.Background(), mustURL(t, origin.URL+tc.path), http.Header{"X-Token": {"secret"}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(body)
			body.Close()
			if err != nil || string(got) != "stored bytes" {
				t.Fatalf("got %q, err %v", got, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if saw["origin"+tc.path].Get("X-Token") != "secret" {
				t.Error("the origin did not get the header")
			}
			if got := saw[tc.last].Get("X-Token"); (got == "secret") != tc.tokenThere {
				t.Errorf("after the redirect X-Token is %q, want it there: %v", got, tc.tokenThere)
			}
			for name, h := range saw {
				if h.Get("Accept-Encoding") != "identity" {
					t.Errorf("%s: Accept-Encoding %q", name, h.Get("Accept-Encoding"))
				}
			}
		})
	}
}

func TestFetcherMaxSize(t *testing.T) {
	data := randomBytes(100000, 9)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	tftpAddr, _ := tftpServer(t, map[string][]byte{"f": data[:5000]})
	for _, tc := range []struct {
		name    string
		url     string
		max     int64
		wantLen int
	}{
		{"http at the bound", srv.URL + "/f", 100000, 100000},
		{"http past the bound", srv.URL + "/f", 99999, -1},
		{"tftp within", "tftp://" + tftpAddr + "/f", 5001, 5000},
		{"tftp past", "tftp://" + tftpAddr + "/f", 4096, -1},
		{"data past", "data:,0123456789", 9, -1},
		{"data at", "data:,0123456789", 10, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := fast()
			f.MaxSize = tc.max
			body, err := f.Fetch(context.Background(), mustURL(t, tc.url), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer body.Close()
			got, err := io.ReadAll(body)
			if tc.wantLen >= 0 {
				if err != nil || len(got) != tc.wantLen {
					t.Fatalf("%d bytes, err %v; want %d", len(got), err, tc.wantLen)
				}
				return
			}
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprintf("larger than %d bytes", tc.max)) {
				t.Fatalf("err = %v, want ErrTooLarge naming the bound", err)
			}
			if int64(len(got)) > tc.max {
				t.Errorf("handed over %d bytes past a bound of %d", len(got), tc.max)
			}
		})
	}
	if _, err := ReadAll(strings.NewReader("abcd"), "http://h/x?token=s3cret", 3); !errors.Is(err, ErrTooLarge) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("ReadAll past the bound: %v", err)
	}
}

// TestFetcherResumes: an HTTP download through the Fetcher (Ignition's,
// netroot's) that breaks off or stalls goes on from the byte where it
// stopped, and gives up after Attempts tries that each deliver too little.
func TestFetcherResumes(t *testing.T) {
	data := randomBytes(1<<20, 21)
	t.Run("dropped", func(t *testing.T) {
		var ranges []string
		var mu sync.Mutex
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			ranges = append(ranges, r.Header.Get("Range"))
			mu.Unlock()
			http.ServeContent(&cutWriter{ResponseWriter: w, left: 300 << 10}, r, "f", time.Time{}, bytes.NewReader(data))
		}))
		defer srv.Close()
		body, err := fast().Fetch(context.Background(), mustURL(t, srv.URL), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(body)
		body.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d of %d bytes, err %v", len(got), len(data), err)
		}
		want := []string{"", "bytes=307200-", "bytes=614400-", "bytes=921600-"}
		if fmt.Sprint(ranges) != fmt.Sprint(want) {
			t.Errorf("ranges %q, want %q", ranges, want)
		}
	})
	t.Run("stalled", func(t *testing.T) {
		url, ranges := stallServer(t, data, func(n int64) bool { return n == 1 })
		f := fast()
		f.Timeouts.Idle = 200 * time.Millisecond
		body, err := f.Fetch(context.Background(), mustURL(t, url), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(body)
		body.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d of %d bytes, err %v", len(got), len(data), err)
		}
		if len(*ranges) != 2 || (*ranges)[1] != fmt.Sprintf("bytes=%d-", len(data)/2) {
			t.Errorf("ranges %q", *ranges)
		}
	})
	t.Run("keeps breaking", func(t *testing.T) {
		var reqs atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reqs.Add(1)
			http.ServeContent(&cutWriter{ResponseWriter: w, left: 1000}, r, "f", time.Time{}, bytes.NewReader(data))
		}))
		defer srv.Close()
		body, err := fast().Fetch(context.Background(), mustURL(t, srv.URL), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, body)
		body.Close()
		if err == nil || !strings.Contains(err.Error(), "giving up at byte 3000 after 3 failed attempts") || reqs.Load() != 3 {
			t.Fatalf("err = %v after %d requests", err, reqs.Load())
		}
	})
}

// TestFetcherTimeouts: the per-use overrides bound the waits.
func TestFetcherTimeouts(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slowbody" {
			w.Header().Set("Content-Length", "100")
			w.Write([]byte("a"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name, path string
		f          Fetcher
		want       string
	}{
		{"header", "/slowheaders", Fetcher{Attempts: 1, Timeouts: Timeouts{Header: 300 * time.Millisecond}}, "timeout awaiting response headers"},
		{"total", "/slowbody", Fetcher{Attempts: 1, Total: 300 * time.Millisecond}, "deadline exceeded"},
		{"idle", "/slowbody", Fetcher{Attempts: 2, Backoff: time.Millisecond, Timeouts: Timeouts{Idle: 200 * time.Millisecond}}, "download stalled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			body, err := tc.f.Fetch(context.Background(), mustURL(t, srv.URL+tc.path), nil)
			if err == nil {
				_, err = io.Copy(io.Discard, body)
				body.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
	c := newClient(Timeouts{Header: time.Second}, true)
	tr := c.Transport.(*http.Transport)
	if tr.ResponseHeaderTimeout != time.Second || tr.TLSHandshakeTimeout != DefaultTimeouts.Connect || !tr.TLSClientConfig.InsecureSkipVerify {
		t.Errorf("insecure client: header %v, tls %v", tr.ResponseHeaderTimeout, tr.TLSHandshakeTimeout)
	}
	if tr := NewClient(Timeouts{}).Transport.(*http.Transport); tr.TLSClientConfig != nil {
		t.Error("the default client does not check certificates")
	}
}

// TestRedaction: credentials and query tokens never appear in what fetch
// says, whatever went wrong.
func TestRedaction(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/404":
			http.NotFound(w, r)
		case "/503":
			http.Error(w, "busy", http.StatusServiceUnavailable)
		default:
			w.Write(bytes.Repeat([]byte("x"), 100))
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	tftpAddr, _ := tftpServer(t, nil)
	const secret = "s3cret"
	for _, tc := range []struct {
		name, url string
		max       int64
	}{
		{"refused", "http://user:" + secret + "@" + dead + "/x?token=" + secret, 0},
		{"404", "http://user:" + secret + "@" + host + "/404?token=" + secret, 0},
		{"503", "http://" + host + "/503?sig=" + secret + "#" + secret, 0},
		{"too large", "http://" + host + "/big?token=" + secret, 10},
		{"tftp", "tftp://" + tftpAddr + "/x?token=" + secret, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := fast()
			f.MaxSize = tc.max
			var heard []string
			body, err := f.Fetch(context.Background(), mustURL(t, tc.url), nil)
			if err == nil {
				_, err = io.Copy(io.Discard, body)
				body.Close()
			}
			if err == nil {
				t.Fatal("no error")
			}
			rr := NewResumingReader(context.Background(), nil, tc.url)
			rr.MaxRetries, rr.Backoff = 1, time.Millisecond
			rr.OnRetry = func(_ int64, _ int, cause error) { heard = append(heard, cause.Error()) }
			_, err2 := io.Copy(io.Discard, rr)
			_, err3 := Open(context.Background(), nil, tc.url, 0, time.Second)
			for _, e := range append([]string{err.Error(), fmt.Sprint(err2), fmt.Sprint(err3)}, heard...) {
				if strings.Contains(e, secret) {
					t.Errorf("message shows the secret: %s", e)
				}
			}
			if !strings.Contains(err.Error(), "***") {
				t.Errorf("error %q does not name the URL (redacted)", err)
			}
		})
	}
}

// TestTFTPBlockSize: a TFTP fetch asks for 1428-byte blocks, which fill an
// Ethernet frame, rather than TFTP's 512.
func TestTFTPBlockSize(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 1500)
		n, addr, err := conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		got <- buf[:n]
		// ERROR, file not found: the client gives up at once
		conn.WriteToUDP([]byte("\x00\x05\x00\x01nope\x00"), addr)
	}()
	_, err = (&Fetcher{TFTPTimeout: time.Second}).Fetch(context.Background(), mustURL(t, "tftp://"+conn.LocalAddr().String()+"/root.img"), nil)
	if err == nil {
		t.Fatal("fetch of a missing file succeeded")
	}
	select {
	case rrq := <-got:
		if !bytes.Contains(rrq, []byte("blksize\x001428\x00")) || !bytes.HasPrefix(rrq, []byte("\x00\x01root.img\x00octet\x00")) {
			t.Errorf("read request %q does not ask for root.img in 1428-byte blocks", rrq)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no read request")
	}
}
