package fleet

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/slateos/slate/updater/fleet/fleettest"
)

func TestFleetLock(t *testing.T) {
	srv := &fleettest.FleetLockServer{Group: "web"}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	l := &lines{}
	a := &FleetLock{URL: ts.URL, Group: "web", ID: "aaaa", Report: l.report, Backoff: fast}
	b := &FleetLock{URL: ts.URL + "/", Group: "web", ID: "bbbb", Report: l.report, Backoff: fast}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	bctx, bcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if err := b.Acquire(bctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b took a held lock: %v", err)
	}
	bcancel()
	if !l.has("409 Conflict: failed_lock: semaphore currently full") {
		t.Errorf("the refusal is not shown:\n%s", l)
	}
	done := make(chan error)
	go func() { done <- b.Acquire(ctx) }()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("b acquired while a holds: %v", err)
	default:
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx); err != nil { // nothing held: still 200
		t.Fatal(err)
	}
	if h, bad := srv.Holder(), srv.Bad(); h != "bbbb" || len(bad) > 0 {
		t.Errorf("holder %q, bad requests %v", h, bad)
	}
	if h := srv.History(); !slices.Equal(h, []string{"aaaa", "", "bbbb"}) {
		t.Errorf("holders %q", h)
	}
	if !l.has("state=locked lock=fleetlock "+ts.URL+" id=bbbb") || !l.has("state=released lock=fleetlock "+ts.URL+" id=aaaa") {
		t.Errorf("lines:\n%s", l)
	}
}

func TestFleetLockBadServer(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		for range 1000 {
			_, _ = w.Write([]byte("\x1b[2Jgarbage "))
		}
	}))
	defer ts.Close()
	l := &lines{}
	f := &FleetLock{URL: ts.URL, ID: "aaaa", Report: l.report, Backoff: fast}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := f.Acquire(ctx); err == nil {
		t.Fatal("acquired from a server that says 500")
	}
	if !l.has("500 Internal Server Error:  [2Jgarbage") || l.has("\x1b") {
		t.Errorf("error body not shown bounded and printable:\n%q", l.String())
	}
	for _, s := range l.l {
		if len(s) > 600 {
			t.Errorf("a line of %d bytes", len(s))
		}
	}
}
