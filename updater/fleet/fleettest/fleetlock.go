package fleettest

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sync"
)

// FleetLockServer is a FleetLock server (Zincati's protocol) with one
// place, as airlock behaves with max 1: pre-reboot is recursive for the
// holder, steady-state releases (200 when nothing is held too). It keeps
// every call and every change of holder, for tests to check that no two
// machines ever held it at once.
type FleetLockServer struct {
	// Group, when set, is the only group accepted; others are bad requests.
	Group string

	mu      sync.Mutex
	holder  string
	calls   []string
	bad     []string
	holders []string // the holder after each change ("" free)
	changed chan struct{}
}

// ServeHTTP answers /v1/pre-reboot and /v1/steady-state.
func (s *FleetLockServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var body struct {
		ClientParams struct {
			ID    string `json:"id"`
			Group string `json:"group"`
		} `json:"client_params"`
	}
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if r.Method != http.MethodPost || r.Header.Get("fleet-lock-protocol") != "true" || json.Unmarshal(b, &body) != nil ||
		body.ClientParams.ID == "" || body.ClientParams.Group == "" || s.Group != "" && body.ClientParams.Group != s.Group {
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
		s.setLocked(id)
	case "/v1/steady-state":
		if s.holder == id {
			s.setLocked("")
		}
	default:
		http.NotFound(w, r)
	}
}

// setLocked changes the holder; call it with mu held.
func (s *FleetLockServer) setLocked(id string) {
	if id == s.holder {
		return
	}
	s.holder = id
	s.holders = append(s.holders, id)
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// Hold makes id the holder (an operator's hold), whoever held it.
func (s *FleetLockServer) Hold(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setLocked(id)
}

// Holder is who holds the lock now ("" nobody).
func (s *FleetLockServer) Holder() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holder
}

// Changed is closed at the next change of holder.
func (s *FleetLockServer) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

// History is the holder after each change, "" when it was freed: with one
// place, two holders in a row without a "" between them would be a
// machine taking a lock another held.
func (s *FleetLockServer) History() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.holders)
}

// Calls are the valid requests, "PATH ID", in order.
func (s *FleetLockServer) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Bad are the requests that were not FleetLock's.
func (s *FleetLockServer) Bad() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.bad)
}
