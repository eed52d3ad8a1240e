package payload

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// startServer runs NewServer on a loopback port.
func startServer(t *testing.T, dir string, to ServeTimeouts) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(dir, to)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// closedWithin reports whether the server closes c within d (reading and
// dropping whatever it sends first).
func closedWithin(t *testing.T, c net.Conn, d time.Duration) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true
}

func TestServerClosesSilentAndIdleConnections(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ManifestFile), []byte("{}"), 0o644)
	to := ServeTimeouts{ReadHeader: 300 * time.Millisecond, Idle: 300 * time.Millisecond, Stall: 300 * time.Millisecond}
	addr := startServer(t, dir, to)

	// A client that connects and says nothing.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !closedWithin(t, c, 5*time.Second) {
		t.Error("a connection that sent no request was kept open")
	}

	// A keep-alive connection left idle after one request.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	io.WriteString(c2, "GET /"+ManifestFile+" HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if !closedWithin(t, c2, 5*time.Second) {
		t.Error("an idle keep-alive connection was kept open")
	}
}

func TestServerClosesStalledDownload(t *testing.T) {
	dir := t.TempDir()
	// Larger than what the socket buffers of both ends hold.
	f, err := os.Create(filepath.Join(dir, "root.img"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(256 << 20)
	f.Close()
	addr := startServer(t, dir, ServeTimeouts{ReadHeader: time.Second, Idle: time.Second, Stall: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /root.img HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(1500 * time.Millisecond) // the client stops reading
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, _ := io.Copy(io.Discard, c)
	if n >= 256<<20 {
		t.Errorf("a stalled download of %d bytes was sent in full", n)
	}
}

// A download that keeps moving is not cut, however long it takes as a
// whole: the stall bound is not a bound on the response.
func TestServerKeepsSlowDownload(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "v.bin"), make([]byte, 4<<20), 0o644)
	addr := startServer(t, dir, ServeTimeouts{ReadHeader: time.Second, Idle: time.Second, Stall: 400 * time.Millisecond})
	resp, err := http.Get("http://" + addr + "/v.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var n int64
	buf := make([]byte, 512<<10)
	for {
		m, err := resp.Body.Read(buf)
		n += int64(m)
		if err != nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // slow, but never stalled
	}
	if n != 4<<20 {
		t.Errorf("got %d bytes of %d", n, 4<<20)
	}
}
