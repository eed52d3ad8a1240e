package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slateos/slate/internal/qemu"
	"github.com/slateos/slate/updater/payload"
)

// hangServer is a channel server in the test process whose behaviour the
// test switches: phaseHang never answers, phaseStall serves the channel
// but stalls the first download of the root halfway, phase404 offers a
// newer version whose root is missing.
type hangServer struct {
	phase   atomic.Int32
	good    http.Handler // the channel with 1.1.0
	missing http.Handler // the channel with a 1.2.0 whose root is 404
	dir     string       // the channel folder with 1.1.0
	root    string       // path of the root image in the channel
	rootLen int64

	mu      sync.Mutex
	stalled int64    // bytes sent before the stall (0: not yet)
	ranges  []string // Range headers of the root's requests after the stall
	release chan struct{}
}

const (
	phaseHang = iota
	phaseStall
	phase404
)

func (h *hangServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch h.phase.Load() {
	case phaseHang:
		// headers never come; hold the connection until the client
		// gives up
		select {
		case <-r.Context().Done():
		case <-h.release:
		}
		return
	case phase404:
		if strings.HasSuffix(r.URL.Path, "root.img.zst") {
			http.NotFound(w, r)
			return
		}
		h.missing.ServeHTTP(w, r)
		return
	}
	if r.URL.Path != "/"+h.root {
		h.good.ServeHTTP(w, r)
		return
	}
	h.mu.Lock()
	first := h.stalled == 0
	if first {
		h.stalled = h.rootLen / 2
	} else {
		h.ranges = append(h.ranges, r.Header.Get("Range"))
	}
	h.mu.Unlock()
	if !first {
		h.good.ServeHTTP(w, r)
		return
	}
	// half the file, then nothing: the connection stays open
	w.Header().Set("Content-Length", strconv.FormatInt(h.rootLen, 10))
	f, err := os.Open(filepath.Join(h.dir, filepath.FromSlash(h.root)))
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	defer f.Close()
	_, _ = io.CopyN(w, f, h.rootLen/2)
	http.NewResponseController(w).Flush()
	select {
	case <-r.Context().Done():
	case <-h.release:
	}
}

// TestUpdateHang: one machine meets a channel server that never answers
// (the daemon gives up on it by its header timeout, and status, rollback
// and check answer at once meanwhile), then a server that stalls halfway
// through the root (the download resumes with Range from where it
// stopped and the update completes), then a channel whose root is 404
// (the fallback slot's entry is still there afterwards).
func TestUpdateHang(t *testing.T) {
	needQEMU(t)
	t.Parallel()
	start := time.Now()
	dir := t.TempDir()
	// the server's listener is held from here on, so its port (baked into
	// the images' channel URL) cannot be taken meanwhile
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := &channel{dir: dir, keys: filepath.Join(dir, "keys"), root: filepath.Join(dir, "channel"), port: l.Addr().(*net.TCPAddr).Port}
	if out, err := slate(t, "keygen", "-o", c.keys); err != nil {
		t.Fatalf("slate keygen: %v\n%s", err, out)
	}
	// short timeouts (spec: update.timeouts), and servers that stall
	// far longer than them
	timeouts := "  timeouts:\n    header: 10s\n    idle: 5s\n"
	v1 := c.publish(t, updSpec{version: "1.0.0", update: timeouts, extra: `  - name: hangcheck
    command: /usr/local/bin/probe
    args: [hangcheck]
    restart: never
`})
	c.publish(t, updSpec{version: "1.1.0", update: timeouts})

	// 1.2.0: the 1.1.0 files under a newer, correctly signed manifest,
	// served with its root missing
	missing := filepath.Join(dir, "missing")
	if err := os.MkdirAll(missing, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"manifest.json"} { // the envelope carries its signatures
		b, err := os.ReadFile(filepath.Join(c.root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(missing, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyTree(t, filepath.Join(c.root, "1.1.0"), filepath.Join(missing, "1.1.0"))
	resign(t, c, missing, func(m *payload.Manifest) { m.Version = "1.2.0" })

	data, err := os.ReadFile(filepath.Join(c.root, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := payload.ParseEnvelope(data)
	if err != nil {
		t.Fatal(err)
	}
	m, err := payload.ParseManifest(env.Signed)
	if err != nil {
		t.Fatal(err)
	}
	rootFile, _ := m.File(payload.RoleRoot)
	h := &hangServer{dir: c.root, good: payload.Serve(c.root), missing: payload.Serve(missing), root: rootFile.Path, rootLen: rootFile.CompressedSize, release: make(chan struct{})}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { close(h.release); srv.Close() })

	vm := boot(t, machine(t, v1), qemu.Options{Network: true})
	nthMatch(t, vm, `^SLATE-READY version=1\.0\.0 slot=a$`, 1, 5*time.Minute)

	// 1. a server that never answers
	for _, op := range []struct{ name, want string }{
		{"status", `updater:  checking`},
		{"rollback", `holds no good version to roll back to`},
		{"check", `busy`},
	} {
		mm := nthMatch(t, vm, `^\[hangcheck\] HANG op=`+op.name+` ms=(\d+) ok=(\w+) out="(.*)"$`, 1, 2*time.Minute)
		ms, _ := strconv.Atoi(mm[1])
		t.Logf("slate update %s while the check is stuck: %d ms: %s", op.name, ms, mm[3])
		if ms > 5000 || !strings.Contains(mm[3], op.want) {
			t.Errorf("slate update %s took %d ms and said %q; want an answer within 5 s naming %q", op.name, ms, mm[3], op.want)
		}
	}
	nthMatch(t, vm, `^SLATE-UPDATE state=failed err=".*timeout awaiting response headers`, 1, time.Minute)
	hung := time.Now()

	// 2. a server that stalls halfway through the root
	h.phase.Store(phaseStall)
	nthMatch(t, vm, `^SLATE-UPDATE state=staged version=1\.1\.0 slot=b`, 1, 6*time.Minute)
	t.Logf("stalled download to staged: %s", time.Since(hung).Round(time.Second))
	h.mu.Lock()
	stalled, ranges := h.stalled, append([]string(nil), h.ranges...)
	h.mu.Unlock()
	if want := fmt.Sprintf("bytes=%d-", stalled); len(ranges) == 0 || ranges[0] != want {
		t.Errorf("root requests after the stall asked for %q, want %q (resume where it stopped)", ranges, want)
	}
	nthMatch(t, vm, `updater: download of http://10\.0\.2\.2:\d+/1\.1\.0/root\.img\.zst interrupted; resuming at byte `+strconv.FormatInt(stalled, 10)+` \(attempt 2\)".*download stalled`, 1, time.Second)
	// TCG on a busy machine: the firmware alone may take minutes
	nthMatch(t, vm, `^SLATE-READY version=1\.1\.0 slot=b$`, 1, 8*time.Minute)

	// 3. a newer version whose root is missing
	h.phase.Store(phase404)
	nthMatch(t, vm, `^SLATE-UPDATE state=blessed version=1\.1\.0 slot=b`, 1, 2*time.Minute)
	nthMatch(t, vm, `^SLATE-UPDATE state=failed err=".*1\.2\.0.*404 Not Found`, 1, 2*time.Minute)
	// the daemon's status (from the ESP) after the failure: slot a's
	// entry, the way back, is still there and good
	nthMatch(t, vm, `^\[status\] STATUS state=failed version=1\.1\.0 slot=b entry=good other=a/1\.0\.0/good`, 1, time.Minute)
	noneMatch(t, vm.Lines(), `SLATE-UPDATE state=downloading version=1\.2\.0`, "the idle slot was given up for a missing root")
	t.Logf("TestUpdateHang took %s", time.Since(start).Round(time.Second))
}
