package netroot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/klauspost/compress/zstd"
	"pack.ag/tftp"
)

// testImage is a few MiB of seeded pseudo-random text: words drawn from a
// small random vocabulary, salted with random bytes, so that zstd finds
// both matches and literals to entropy-code and the compressed form still
// spans several MiB for the drop-every-MiB server to break more than once.
// The odd length keeps sizes off buffer boundaries.
var testImage = sync.OnceValue(func() []byte {
	r := rand.New(rand.NewChaCha8([32]byte{'s', 'l', 'a', 't', 'e'}))
	words := make([][]byte, 4096)
	for i := range words {
		words[i] = make([]byte, 2+r.IntN(10))
		for j := range words[i] {
			words[i][j] = 'a' + byte(r.IntN(26))
		}
	}
	const size = 6<<20 + 12345
	b := make([]byte, 0, size+16)
	for len(b) < size {
		if r.IntN(4) == 0 {
			b = append(b, byte(r.Uint32()))
		}
		b = append(b, words[r.IntN(len(words))]...)
		b = append(b, ' ')
	}
	return b[:size]
})

var testImageZstd = sync.OnceValue(func() []byte { return compress(testImage()) })

func compress(b []byte) []byte {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		panic(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func sourceFor(url string, img []byte) Source {
	return Source{URL: url, SHA256: sumOf(img), Size: int64(len(img))}
}

// fast keeps retries cheap so that a test that would retry in vain still
// finishes quickly.
var fast = Options{Attempts: 3, Backoff: time.Millisecond}

func newDst(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "root.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func contents(t *testing.T, f *os.File) []byte {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serveBytes serves b with http.ServeContent (so Range works) and counts
// the requests.
func serveBytes(t *testing.T, b []byte) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestParseArgs(t *testing.T) {
	sum := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		name    string
		args    map[string]string
		want    Source
		ok      bool
		wantErr string // substring; "" means no error
	}{
		{name: "none", args: map[string]string{"root": "PARTUUID=x", "quiet": ""}},
		{name: "nil map", args: nil},
		{
			name: "http",
			args: map[string]string{ArgURL: "http://10.0.2.2:8080/root.img.zst", ArgSHA256: sum, ArgSize: "73400320"},
			want: Source{URL: "http://10.0.2.2:8080/root.img.zst", SHA256: sum, Size: 73400320}, ok: true,
		},
		{
			name: "https",
			args: map[string]string{ArgURL: "https://boot.example/root.img", ArgSHA256: sum, ArgSize: "1"},
			want: Source{URL: "https://boot.example/root.img", SHA256: sum, Size: 1}, ok: true,
		},
		{
			name: "tftp",
			args: map[string]string{ArgURL: "tftp://10.0.2.2/slate/root.img", ArgSHA256: sum, ArgSize: "4096"},
			want: Source{URL: "tftp://10.0.2.2/slate/root.img", SHA256: sum, Size: 4096}, ok: true,
		},
		{
			name: "scheme is case-insensitive",
			args: map[string]string{ArgURL: "HTTP://10.0.2.2/root.img", ArgSHA256: sum, ArgSize: "1"},
			want: Source{URL: "HTTP://10.0.2.2/root.img", SHA256: sum, Size: 1}, ok: true,
		},
		{
			name: "embedded root has no URL",
			args: map[string]string{ArgSHA256: sum, ArgSize: "4096"},
			want: Source{SHA256: sum, Size: 4096}, ok: true,
		},
		{
			name: "uppercase hex is lowered",
			args: map[string]string{ArgSHA256: strings.ToUpper(sum), ArgSize: "10"},
			want: Source{SHA256: sum, Size: 10}, ok: true,
		},
		{
			name: "size at MaxSize",
			args: map[string]string{ArgSHA256: sum, ArgSize: strconv.FormatInt(MaxSize, 10)},
			want: Source{SHA256: sum, Size: MaxSize}, ok: true,
		},
		{name: "file scheme", args: map[string]string{ArgURL: "file:///root.img", ArgSHA256: sum, ArgSize: "1"}, ok: true, wantErr: ArgURL},
		{name: "ftp scheme", args: map[string]string{ArgURL: "ftp://10.0.2.2/root.img", ArgSHA256: sum, ArgSize: "1"}, ok: true, wantErr: ArgURL},
		{name: "no scheme", args: map[string]string{ArgURL: "10.0.2.2/root.img", ArgSHA256: sum, ArgSize: "1"}, ok: true, wantErr: ArgURL},
		{name: "empty URL", args: map[string]string{ArgURL: "", ArgSHA256: sum, ArgSize: "1"}, ok: true, wantErr: ArgURL},
		{name: "no host", args: map[string]string{ArgURL: "http:///root.img", ArgSHA256: sum, ArgSize: "1"}, ok: true, wantErr: "no host"},
		{name: "tftp no host", args: map[string]string{ArgURL: "tftp:/root.img", ArgSHA256: sum, ArgSize: "1"}, ok: true, wantErr: ArgURL},
		{name: "unparsable URL", args: map[string]string{ArgURL: "http://[::1/root.img", ArgSHA256: sum, ArgSize: "1"}, ok: true, wantErr: ArgURL},
		{name: "URL only", args: map[string]string{ArgURL: "http://h/root.img"}, ok: true, wantErr: ArgSHA256},
		{name: "missing sha256", args: map[string]string{ArgURL: "http://h/root.img", ArgSize: "1"}, ok: true, wantErr: ArgSHA256},
		{name: "sha256 too short", args: map[string]string{ArgSHA256: sum[:63], ArgSize: "1"}, ok: true, wantErr: ArgSHA256},
		{name: "sha256 too long", args: map[string]string{ArgSHA256: sum + "0", ArgSize: "1"}, ok: true, wantErr: ArgSHA256},
		{name: "sha256 one byte long", args: map[string]string{ArgSHA256: sum + "00", ArgSize: "1"}, ok: true, wantErr: ArgSHA256},
		{name: "sha256 not hex", args: map[string]string{ArgSHA256: "zz" + sum[2:], ArgSize: "1"}, ok: true, wantErr: ArgSHA256},
		{name: "sha256 empty", args: map[string]string{ArgSHA256: "", ArgSize: "1"}, ok: true, wantErr: ArgSHA256},
		{name: "missing size", args: map[string]string{ArgSHA256: sum}, ok: true, wantErr: ArgSize},
		{name: "size only", args: map[string]string{ArgSize: "1"}, ok: true, wantErr: ArgSHA256},
		{name: "size 0", args: map[string]string{ArgSHA256: sum, ArgSize: "0"}, ok: true, wantErr: ArgSize},
		{name: "size negative", args: map[string]string{ArgSHA256: sum, ArgSize: "-1"}, ok: true, wantErr: ArgSize},
		{name: "size not a number", args: map[string]string{ArgSHA256: sum, ArgSize: "70M"}, ok: true, wantErr: ArgSize},
		{name: "size hex", args: map[string]string{ArgSHA256: sum, ArgSize: "0x10"}, ok: true, wantErr: ArgSize},
		{name: "size empty", args: map[string]string{ArgSHA256: sum, ArgSize: ""}, ok: true, wantErr: ArgSize},
		{name: "size above MaxSize", args: map[string]string{ArgSHA256: sum, ArgSize: strconv.FormatInt(MaxSize+1, 10)}, ok: true, wantErr: ArgSize},
		{name: "size overflows int64", args: map[string]string{ArgSHA256: sum, ArgSize: "99999999999999999999"}, ok: true, wantErr: ArgSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := ParseArgs(tc.args)
			if ok != tc.ok {
				t.Errorf("ok = %v, want %v", ok, tc.ok)
			}
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseArgs = %+v, nil; want an error containing %q", got, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q does not contain %q", err, tc.wantErr)
				}
				if got != (Source{}) {
					t.Errorf("source on error = %+v, want zero", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseArgs: %v", err)
			}
			if got != tc.want {
				t.Errorf("ParseArgs = %+v, want %+v", got, tc.want)
			}
		})
	}
}

var lowerHex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

func FuzzParseArgs(f *testing.F) {
	sum := strings.Repeat("ab", 32)
	f.Add("http://10.0.2.2/root.img", sum, "100", uint8(7))
	f.Add("tftp://h/x", strings.ToUpper(sum), "1", uint8(7))
	f.Add("", sum, "68719476736", uint8(6))
	f.Add("file:///x", "", "-1", uint8(5))
	f.Add("https://[::1]:443/r", sum[:63], "0x10", uint8(3))
	f.Add("http://h/r", sum, "+5", uint8(7))
	f.Add("httP://0", sum, "1", uint8(7))
	f.Fuzz(func(t *testing.T, u, s, size string, present uint8) {
		args := map[string]string{}
		if present&1 != 0 {
			args[ArgURL] = u
		}
		if present&2 != 0 {
			args[ArgSHA256] = s
		}
		if present&4 != 0 {
			args[ArgSize] = size
		}
		src, ok, err := ParseArgs(args)
		if !ok {
			if err != nil || src != (Source{}) || len(args) != 0 {
				t.Fatalf("ok=false with args %q: src %+v, err %v", args, src, err)
			}
			return
		}
		if err != nil {
			if src != (Source{}) {
				t.Fatalf("error %v with source %+v", err, src)
			}
			return
		}
		if !lowerHex64.MatchString(src.SHA256) {
			t.Fatalf("SHA256 %q is not 64 lowercase hex digits", src.SHA256)
		}
		if src.Size <= 0 || src.Size > MaxSize {
			t.Fatalf("Size %d out of (0, %d]", src.Size, int64(MaxSize))
		}
		if _, has := args[ArgURL]; has != (src.URL != "") || src.URL != args[ArgURL] {
			t.Fatalf("URL %q from args %q", src.URL, args)
		}
		if src.URL != "" {
			// Schemes are case-insensitive (RFC 3986 3.1); Fetch parses the
			// URL again and sees the lowered one.
			u, err := url.Parse(src.URL)
			if err != nil {
				t.Fatalf("URL %q accepted: %v", src.URL, err)
			}
			if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "tftp" || u.Host == "" {
				t.Fatalf("URL %q accepted with scheme %q, host %q", src.URL, u.Scheme, u.Host)
			}
		}
	})
}

func TestFetchHTTP(t *testing.T) {
	img := testImage()
	for _, tc := range []struct {
		name       string
		served     []byte
		compressed bool
	}{
		{"raw", img, false},
		{"zstd", testImageZstd(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, reqs := serveBytes(t, tc.served)
			dst := newDst(t)
			var last, calls int64
			o := fast
			o.Progress = func(n int64) {
				if n < last {
					t.Errorf("progress went back from %d to %d", last, n)
				}
				last = n
				calls++
			}
			res, err := Fetch(context.Background(), sourceFor(srv.URL+"/root.img", img), dst, o)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if !bytes.Equal(contents(t, dst), img) {
				t.Error("dst differs from the image")
			}
			if res.Compressed != tc.compressed {
				t.Errorf("Compressed = %v, want %v", res.Compressed, tc.compressed)
			}
			if res.Transferred != int64(len(tc.served)) {
				t.Errorf("Transferred = %d, want %d", res.Transferred, len(tc.served))
			}
			if last != int64(len(img)) || calls == 0 {
				t.Errorf("last progress %d after %d calls, want %d", last, calls, len(img))
			}
			if n := reqs.Load(); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
}

// TestFetchBadImage covers images that arrive intact but do not match the
// command line: every one is ErrBadRoot, found on the first request, and
// never more than Size bytes land in dst.
func TestFetchBadImage(t *testing.T) {
	img := testImage()
	z := testImageZstd()
	corrupt := bytes.Clone(z)
	for i := len(corrupt) / 2; i < len(corrupt)/2+64; i++ {
		corrupt[i] ^= 0x5a
	}
	other := bytes.Clone(img)
	other[len(other)/3] ^= 1
	for _, tc := range []struct {
		name    string
		served  []byte
		src     Source
		wantErr string
	}{
		{
			name:    "wrong sha256",
			served:  other,
			src:     sourceFor("", img),
			wantErr: "sha256 is " + sumOf(other),
		},
		{
			name:    "wrong sha256 zstd",
			served:  compress(other),
			src:     sourceFor("", img),
			wantErr: "sha256",
		},
		{
			name:    "longer than size",
			served:  append(bytes.Clone(img), "trailing"...),
			src:     sourceFor("", img),
			wantErr: fmt.Sprintf("root image is longer than %s=%d", ArgSize, len(img)),
		},
		{
			name:    "zstd longer than size",
			served:  z,
			src:     Source{SHA256: sumOf(img[:1<<20]), Size: 1 << 20},
			wantErr: "longer",
		},
		{
			name:    "raw truncated",
			served:  img[:len(img)-1000],
			src:     sourceFor("", img),
			wantErr: fmt.Sprintf("root image is truncated: got %d of %d bytes", len(img)-1000, len(img)),
		},
		{
			name:    "zstd truncated",
			served:  z[:len(z)/2],
			src:     sourceFor("", img),
			wantErr: "truncated",
		},
		{
			name:    "zstd corrupt",
			served:  corrupt,
			src:     sourceFor("", img),
			wantErr: "corrupt zstd data",
		},
		{
			name:    "empty",
			served:  nil,
			src:     sourceFor("", img),
			wantErr: fmt.Sprintf("got 0 of %d bytes", len(img)),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, reqs := serveBytes(t, tc.served)
			dst := newDst(t)
			src := tc.src
			src.URL = srv.URL + "/root.img"
			_, err := Fetch(context.Background(), src, dst, fast)
			if !errors.Is(err, ErrBadRoot) {
				t.Fatalf("Fetch error %v, want ErrBadRoot", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
			if n := reqs.Load(); n != 1 {
				t.Errorf("%d requests, want 1: a bad image is not fetched again", n)
			}
			if got := int64(len(contents(t, dst))); got > src.Size {
				t.Errorf("dst has %d bytes, more than size %d", got, src.Size)
			}
		})
	}
}

// TestFetchBounded: a server that sends far more than slate.root_size,
// raw or as a small zstd bomb, fills no more than Size bytes of RAM.
func TestFetchBounded(t *testing.T) {
	const size = 1 << 20
	big := bytes.Repeat([]byte("0123456789abcdef"), 8<<20/16)
	var bomb bytes.Buffer
	enc, err := zstd.NewWriter(&bomb)
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for range 256 {
		enc.Write(zeros)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		served []byte
		sum    []byte
	}{
		{"raw", big, big[:size]},
		{"zstd bomb", bomb.Bytes(), zeros[:size]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := serveBytes(t, tc.served)
			dst := newDst(t)
			var maxProgress int64
			o := fast
			o.Progress = func(n int64) { maxProgress = max(maxProgress, n) }
			_, err := Fetch(context.Background(), Source{URL: srv.URL, SHA256: sumOf(tc.sum), Size: size}, dst, o)
			if !errors.Is(err, ErrBadRoot) || !strings.Contains(err.Error(), "longer") {
				t.Errorf("Fetch error %v, want ErrBadRoot saying longer", err)
			}
			fi, err := dst.Stat()
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() > size || maxProgress > size {
				t.Errorf("dst has %d bytes, progress reached %d; size is %d", fi.Size(), maxProgress, size)
			}
		})
	}
}

func TestFetchNotFound(t *testing.T) {
	var reqs atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		http.NotFound(w, r)
	}))
	defer srv.Close()
	img := testImage()
	start := time.Now()
	// A backoff this long makes a retry show in the elapsed time.
	_, err := Fetch(context.Background(), sourceFor(srv.URL+"/root.img", img), newDst(t), Options{Attempts: 5, Backoff: time.Second})
	if err == nil || errors.Is(err, ErrBadRoot) {
		t.Fatalf("Fetch error %v, want a non-ErrBadRoot error", err)
	}
	if !strings.Contains(err.Error(), "404") {
		t.Errorf("error %q does not mention 404", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("took %v: a 404 is not retried", d)
	}
	if n := reqs.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestFetchUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	start := time.Now()
	_, err = Fetch(context.Background(), sourceFor("http://"+addr+"/root.img", testImage()), newDst(t), Options{Attempts: 3, Backoff: 10 * time.Millisecond})
	if err == nil || errors.Is(err, ErrBadRoot) {
		t.Fatalf("Fetch error %v, want a non-ErrBadRoot error", err)
	}
	if !strings.Contains(err.Error(), "3 failed attempts") {
		t.Errorf("error %q does not count the attempts", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestFetchRetriesServerErrors: a 503 is worth another try.
func TestFetchRetriesServerErrors(t *testing.T) {
	img := testImage()
	var reqs atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if reqs.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(img))
	}))
	defer srv.Close()
	dst := newDst(t)
	if _, err := Fetch(context.Background(), sourceFor(srv.URL, img), dst, fast); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if !bytes.Equal(contents(t, dst), img) {
		t.Error("dst differs from the image")
	}
	if n := reqs.Load(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

// droppingReader ends every response limit bytes after its start: the
// handler then returns short of its Content-Length and net/http closes the
// connection, which the client sees as a dropped download.
type droppingReader struct {
	*bytes.Reader
	limit, sent int64
}

func (d *droppingReader) Seek(off int64, whence int) (int64, error) {
	d.sent = 0
	return d.Reader.Seek(off, whence)
}

func (d *droppingReader) Read(p []byte) (int, error) {
	if d.sent >= d.limit {
		return 0, errors.New("connection dropped on purpose")
	}
	p = p[:min(int64(len(p)), d.limit-d.sent)]
	n, err := d.Reader.Read(p)
	d.sent += int64(n)
	return n, err
}

// flakyServer serves b honouring Range, dropping each connection after
// limit bytes; failAfter > 0 makes every request past the first failAfter
// answer 503.
func flakyServer(t *testing.T, b []byte, limit int64, failAfter int32) (*httptest.Server, *atomic.Int32, *atomic.Int32) {
	t.Helper()
	var reqs, ranged atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := reqs.Add(1)
		if failAfter > 0 && n > failAfter {
			http.Error(w, "gone", http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("Range") != "" {
			ranged.Add(1)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", time.Time{}, &droppingReader{Reader: bytes.NewReader(b), limit: limit})
	}))
	t.Cleanup(srv.Close)
	return srv, &reqs, &ranged
}

func TestFetchResumes(t *testing.T) {
	img := testImage()
	for _, tc := range []struct {
		name   string
		served []byte
	}{
		{"raw", img},
		{"zstd", testImageZstd()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, reqs, ranged := flakyServer(t, tc.served, 1<<20, 0)
			dst := newDst(t)
			res, err := Fetch(context.Background(), sourceFor(srv.URL, img), dst, fast)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if !bytes.Equal(contents(t, dst), img) {
				t.Error("dst differs from the image")
			}
			want := int32((len(tc.served) + 1<<20 - 1) >> 20)
			if n := reqs.Load(); n != want || ranged.Load() != want-1 {
				t.Errorf("%d requests, %d with Range; want %d, %d", n, ranged.Load(), want, want-1)
			}
			if res.Transferred != int64(len(tc.served)) {
				t.Errorf("Transferred = %d, want %d: nothing is fetched twice", res.Transferred, len(tc.served))
			}
		})
	}
}

// TestFetchNetworkFailureMidStream: a server that goes away for good after
// the first MiB is a network failure, not a bad image, also when the zstd
// decoder is the one that sees the broken stream.
func TestFetchNetworkFailureMidStream(t *testing.T) {
	img := testImage()
	for _, tc := range []struct {
		name   string
		served []byte
	}{
		{"raw", img},
		{"zstd", testImageZstd()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _, _ := flakyServer(t, tc.served, 1<<20, 1)
			_, err := Fetch(context.Background(), sourceFor(srv.URL, img), newDst(t), fast)
			if err == nil || errors.Is(err, ErrBadRoot) {
				t.Fatalf("Fetch error %v, want a non-ErrBadRoot error", err)
			}
			if !strings.Contains(err.Error(), "503") {
				t.Errorf("error %q does not name the cause", err)
			}
		})
	}
}

func TestFetchCancel(t *testing.T) {
	img := testImage()
	for _, tc := range []struct {
		name   string
		served []byte
	}{
		{"raw", img},
		{"zstd", testImageZstd()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stop := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(tc.served)))
				w.Write(tc.served[:256<<10])
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
				case <-stop:
				}
			}))
			defer srv.Close()
			defer close(stop)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var once sync.Once
			start := time.Now()
			o := fast
			// Cancel once data flows, so the fetch is stuck mid-body.
			o.Progress = func(int64) { once.Do(func() { time.AfterFunc(100*time.Millisecond, cancel) }) }
			_, err := Fetch(ctx, sourceFor(srv.URL, img), newDst(t), o)
			if !errors.Is(err, context.Canceled) || errors.Is(err, ErrBadRoot) {
				t.Errorf("Fetch error %v, want context.Canceled and not ErrBadRoot", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %v after cancel", d)
			}
		})
	}
}

// TestFetchTruncatesDst: Fetch promises to truncate dst, so a retry into
// the file of a failed attempt must not leave that attempt's bytes around
// the new image.
func TestFetchTruncatesDst(t *testing.T) {
	img := testImage()
	srv, _ := serveBytes(t, img)
	tftpAddr, _ := tftpServer(t, map[string][]byte{"root.img": img[:64<<10]})
	for _, tc := range []struct {
		name string
		src  Source
		want []byte
	}{
		{"http", sourceFor(srv.URL, img), img},
		{"tftp", sourceFor("tftp://"+tftpAddr+"/root.img", img[:64<<10]), img[:64<<10]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := newDst(t)
			if _, err := dst.Write(bytes.Repeat([]byte{0xee}, 2*len(img))); err != nil {
				t.Fatal(err)
			}
			if _, err := Fetch(context.Background(), tc.src, dst, fast); err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if got := contents(t, dst); !bytes.Equal(got, tc.want) {
				t.Errorf("dst has %d bytes, want the %d of the image", len(got), len(tc.want))
			}
		})
	}
}

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

func TestFetchTFTP(t *testing.T) {
	// TFTP moves 512-byte blocks in lockstep: a smaller image keeps it quick.
	img := testImage()[:512<<10+77]
	z := compress(img)
	addr, reqs := tftpServer(t, map[string][]byte{"slate/root.img": img, "slate/root.img.zst": z})
	other := bytes.Clone(img)
	other[1000] ^= 1
	for _, tc := range []struct {
		name       string
		path       string
		src        Source
		compressed bool
		wantErr    string
	}{
		{name: "raw", path: "/slate/root.img", src: sourceFor("", img)},
		{name: "zstd", path: "/slate/root.img.zst", src: sourceFor("", img), compressed: true},
		{name: "wrong sha256", path: "/slate/root.img", src: sourceFor("", other), wantErr: "sha256"},
		{name: "longer", path: "/slate/root.img", src: sourceFor("", img[:1000]), wantErr: "longer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := reqs.Load()
			dst := newDst(t)
			src := tc.src
			src.URL = "tftp://" + addr + tc.path
			var last int64
			o := fast
			o.Progress = func(n int64) { last = n }
			res, err := Fetch(context.Background(), src, dst, o)
			if n := reqs.Load() - before; n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
			if tc.wantErr != "" {
				if !errors.Is(err, ErrBadRoot) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Fetch error %v, want ErrBadRoot containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if !bytes.Equal(contents(t, dst), img) {
				t.Error("dst differs from the image")
			}
			if res.Compressed != tc.compressed || last != int64(len(img)) {
				t.Errorf("Compressed = %v, last progress %d; want %v, %d", res.Compressed, last, tc.compressed, len(img))
			}
		})
	}
}

func TestFetchNoURL(t *testing.T) {
	if _, err := Fetch(context.Background(), sourceFor("", testImage()), newDst(t), fast); err == nil {
		t.Error("Fetch of a source without URL succeeded")
	}
}

func TestVerify(t *testing.T) {
	img := testImage()[:300<<10]
	other := bytes.Clone(img)
	other[0] ^= 1
	for _, tc := range []struct {
		name string
		r    io.Reader
		src  Source
		bad  bool
	}{
		{"raw", bytes.NewReader(img), sourceFor("", img), false},
		{"raw one byte at a time", iotest.OneByteReader(bytes.NewReader(img)), sourceFor("", img), false},
		// What is checked is what gets mounted: a compressed image is not
		// the image, even when it decompresses to it.
		{"zstd", bytes.NewReader(compress(img)), sourceFor("", img), true},
		{"data with EOF", iotest.DataErrReader(bytes.NewReader(img)), sourceFor("", img), false},
		{"wrong sha256", bytes.NewReader(other), sourceFor("", img), true},
		{"short", bytes.NewReader(img[:len(img)-1]), sourceFor("", img), true},
		{"long", bytes.NewReader(img), sourceFor("", img[:len(img)-1]), true},
		{"empty", bytes.NewReader(nil), sourceFor("", img), true},
		{"zstd garbage", bytes.NewReader(append([]byte{0x28, 0xb5, 0x2f, 0xfd}, img[:100]...)), sourceFor("", img), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.r, tc.src)
			if tc.bad != (err != nil) || (err != nil && !errors.Is(err, ErrBadRoot)) {
				t.Errorf("Verify = %v, want bad=%v (ErrBadRoot)", err, tc.bad)
			}
		})
	}
	t.Run("read error is not ErrBadRoot", func(t *testing.T) {
		r := io.MultiReader(bytes.NewReader(img[:1000]), iotest.ErrReader(errors.New("disk on fire")))
		err := Verify(r, sourceFor("", img))
		if err == nil || errors.Is(err, ErrBadRoot) || !strings.Contains(err.Error(), "disk on fire") {
			t.Errorf("Verify = %v, want the read error, not ErrBadRoot", err)
		}
	})
	t.Run("negative size", func(t *testing.T) {
		err := Verify(bytes.NewReader(img), Source{SHA256: sumOf(img), Size: -5})
		if err == nil {
			t.Error("Verify with a negative size succeeded")
		}
	})
}

// refDecoder is a zstd decoder independent of the one under test, bounded
// so that a fuzzed bomb cannot exhaust memory.
var refDecoder = sync.OnceValue(func() *zstd.Decoder {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(2<<20))
	if err != nil {
		panic(err)
	}
	return dec
})

func FuzzCopyVerified(f *testing.F) {
	small := testImage()[:200]
	f.Add(small, uint32(len(small)), uint8(0), uint8(0))
	f.Add(small, uint32(len(small)-1), uint8(0), uint8(1))
	f.Add(small, uint32(len(small)+1), uint8(1), uint8(2))
	f.Add(compress(small), uint32(len(small)), uint8(2), uint8(0))
	f.Add(compress(small), uint32(len(small)), uint8(2), uint8(1))
	f.Add(compress(small)[:100], uint32(len(small)), uint8(2), uint8(3))
	f.Add(compress(bytes.Repeat([]byte{0}, 3<<20)), uint32(1<<20), uint8(2), uint8(0))
	f.Add([]byte{0x28, 0xb5, 0x2f}, uint32(3), uint8(0), uint8(0))
	f.Add([]byte{}, uint32(0), uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, size uint32, mode, chunk uint8) {
		src := Source{Size: int64(size % (1<<20 + 1))}
		// The sha256 comes from the stream itself, its first Size bytes,
		// or what zstd makes of it, so that matching images turn up.
		switch mode % 3 {
		case 0:
			src.SHA256 = sumOf(data)
		case 1:
			src.SHA256 = sumOf(data[:min(int64(len(data)), src.Size)])
		case 2:
			out, _ := refDecoder().DecodeAll(data, nil)
			src.SHA256 = sumOf(out)
		}
		var r io.Reader = bytes.NewReader(data)
		switch chunk % 4 {
		case 1:
			r = iotest.OneByteReader(r)
		case 2:
			r = iotest.HalfReader(r)
		case 3:
			r = iotest.DataErrReader(r)
		}
		var w bytes.Buffer
		var last int64
		_, err := copyVerified(&w, r, src, func(n int64) {
			if n < last || n > src.Size {
				t.Fatalf("progress %d after %d, size %d", n, last, src.Size)
			}
			last = n
		}, mode%2 == 0)
		got := w.Bytes()
		if int64(len(got)) > src.Size {
			t.Fatalf("wrote %d bytes, size %d", len(got), src.Size)
		}
		if last != int64(len(got)) {
			t.Fatalf("last progress %d, wrote %d", last, len(got))
		}
		if err == nil {
			if int64(len(got)) != src.Size || sumOf(got) != src.SHA256 {
				t.Fatalf("nil error for %d bytes with sha256 %s, want %d with %s", len(got), sumOf(got), src.Size, src.SHA256)
			}
			return
		}
		// The reader never fails and the writer never does: every error is
		// about the image.
		if !errors.Is(err, ErrBadRoot) {
			t.Fatalf("error %v is not ErrBadRoot", err)
		}
		if mode%3 == 0 && int64(len(data)) == src.Size && !bytes.HasPrefix(data, zstdMagic) {
			t.Fatalf("raw image of the right size and sha256 refused: %v", err)
		}
	})
}
