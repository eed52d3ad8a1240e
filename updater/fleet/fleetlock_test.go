package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// fleetLockServer is a FleetLock server with max 1, as airlock behaves:
// pre-reboot is recursive for the holder, steady-state releases (200 when
// nothing is held too).
type fleetLockServer struct {
	mu     sync.Mutex
	holder string
	calls  []string
	bad    []string
}

func (s *fleetLockServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var body struct {
		ClientParams struct {
			ID    string `json:"id"`
			Group string `json:"group"`
		} `json:"client_params"`
	}
	b, _ := io.ReadAll(r.Body)
	if r.Method != http.MethodPost || r.Header.Get("fleet-lock-protocol") != "true" || json.Unmarshal(b, &body) != nil || body.ClientParams.ID == "" || body.ClientParams.Group != "web" {
		s.bad = append(s.bad, r.Method+" "+r.URL.Path+" "+string(b))
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"kind":"bad_request","value":"not a FleetLock request"}`))
		return
	}
	id := body.ClientParams.ID
	s.calls = append(s.calls, r.URL.Path+" "+id)
	switch r.URL.Path {
	case "/v1/pre-reboot":
		if s.holder != "" && s.holder != id {
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"kind":"failed_lock","value":"semaphore currently full"}`))
			return
		}
		s.holder = id
	case "/v1/steady-state":
		if s.holder == id {
			s.holder = ""
		}
	default:
		http.NotFound(w, r)
	}
}

func TestFleetLock(t *testing.T) {
	srv := &fleetLockServer{}
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
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.holder != "bbbb" || len(srv.bad) > 0 {
		t.Errorf("holder %q, bad requests %v", srv.holder, srv.bad)
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
