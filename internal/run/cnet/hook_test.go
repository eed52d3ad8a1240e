package cnet

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func state(id string, pid int) string {
	return fmt.Sprintf(`{"ociVersion":"1.2.0","id":%q,"status":"creating","pid":%d,"bundle":"/usr/lib/slate/containers/%s","annotations":{"a":"b"}}`, id, pid, id)
}

func TestParseState(t *testing.T) {
	s, err := ParseState(strings.NewReader(state("web", 42) + "\n"))
	if err != nil || s.ID != "web" || s.PID != 42 || s.Status != "creating" || s.Bundle != "/usr/lib/slate/containers/web" {
		t.Fatalf("ParseState = %+v, %v", s, err)
	}
	for _, tc := range []struct {
		what string
		in   io.Reader
		want string
	}{
		{"empty", strings.NewReader(""), "empty"},
		{"blank", strings.NewReader(" \n\t"), "empty"},
		{"not JSON", strings.NewReader("pid=42"), "invalid character"},
		{"an array", strings.NewReader("[1,2]"), "cannot unmarshal array"},
		{"truncated", strings.NewReader(`{"ociVersion":"1.2.0","id":"web","pid":4`), "unexpected EOF"},
		{"two objects", strings.NewReader(state("web", 42) + state("web", 43)), "data after the JSON object"},
		{"garbage after", strings.NewReader(state("web", 42) + "}"), "data after the JSON object"},
		{"no ociVersion", strings.NewReader(`{"id":"web","pid":42}`), "no ociVersion"},
		{"no id", strings.NewReader(`{"ociVersion":"1","pid":42}`), "no id"},
		{"no pid", strings.NewReader(`{"ociVersion":"1","id":"web"}`), "pid 0"},
		{"negative pid", strings.NewReader(`{"ociVersion":"1","id":"web","pid":-1}`), "pid -1"},
		{"huge pid", strings.NewReader(`{"ociVersion":"1","id":"web","pid":99999999999}`), "pid 99999999999"},
		{"pid beyond int", strings.NewReader(`{"ociVersion":"1","id":"web","pid":1e30}`), "cannot unmarshal number"},
		{"pid a string", strings.NewReader(`{"ociVersion":"1","id":"web","pid":"42"}`), "cannot unmarshal string"},
		{"too long", io.MultiReader(strings.NewReader(`{"ociVersion":"1","id":"`), bytes.NewReader(bytes.Repeat([]byte("x"), MaxState))), "longer than 65536 bytes"},
		{"endless", iotest.OneByteReader(zeros{}), "longer than"},
		{"read error", iotest.ErrReader(io.ErrClosedPipe), "closed pipe"},
	} {
		if _, err := ParseState(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ParseState = %v, want an error with %q", tc.what, err, tc.want)
		}
	}
}

// zeros is an endless stream of spaces.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

func TestHookRefuses(t *testing.T) {
	requireNetns(t) // the cases that get as far as Attach run in a namespace of their own
	ns := newNS(t)
	good := []string{"web", "10.88.0.2/16", "10.88.0.1"}
	for _, tc := range []struct {
		what  string
		args  []string
		stdin string
		want  string
	}{
		{"no arguments", nil, state("web", 1), "got 0 arguments"},
		{"too many", append(good, "slate0"), state("web", 1), "got 4 arguments"},
		{"bad name", []string{"web/x", "10.88.0.2/16", "10.88.0.1"}, state("web", 1), "character '/'"},
		{"address without prefix", []string{"web", "10.88.0.2", "10.88.0.1"}, state("web", 1), "container web: address"},
		{"IPv6 address", []string{"web", "fd00::2/64", "fd00::1"}, state("web", 1), "not IPv4"},
		{"garbage address", []string{"web", "10.88.0.2/16; rm -rf /", "10.88.0.1"}, state("web", 1), "too long"},
		{"gateway outside", []string{"web", "10.88.0.2/16", "10.99.0.1"}, state("web", 1), "outside 10.88.0.0/16"},
		{"gateway is the container", []string{"web", "10.88.0.2/16", "10.88.0.2"}, state("web", 1), "own address"},
		{"gateway not an address", []string{"web", "10.88.0.2/16", "gw"}, state("web", 1), "gateway"},
		{"empty stdin", good, "", "container web: OCI state on stdin: empty"},
		{"bad stdin", good, "{", "OCI state on stdin"},
		{"another container's state", good, state("db", 1), `the OCI state is container "db"'s`},
		{"no bridge", good, state("web", 1), "bridge slate0"},
	} {
		err := inNS(ns, func() error { return Hook(tc.args, strings.NewReader(tc.stdin)) })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Hook(%q) = %v, want an error with %q", tc.what, tc.args, err, tc.want)
		}
	}
}

// TestHook runs the hook as runc would, with the state of a fresh
// container on stdin.
func TestHook(t *testing.T) {
	n := newTestNet(t)
	pid := startIn(t, n.host, true)
	if err := inNS(n.host, func() error {
		return Hook([]string{"db", "10.88.0.3/16", "10.88.0.1"}, strings.NewReader(state("db", pid)))
	}); err != nil {
		t.Fatalf("Hook: %v", err)
	}
	serveTCP(t, pidNS(t, pid), "10.88.0.3:5432")
	// The two containers reach each other over the bridge.
	if got, err := dial(n.container, "tcp4", "10.88.0.3:5432"); err != nil || got != "10.88.0.2" {
		t.Errorf("web to db: %q, %v", got, err)
	}
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(state("web", 42)))
	f.Add([]byte(`{"ociVersion":"1","id":"x","pid":1} `))
	f.Add([]byte(`{"pid":-5}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseState(bytes.NewReader(b))
		if err != nil {
			return
		}
		if s.ID == "" || s.OCIVersion == "" || s.PID <= 0 || s.PID > maxPID || len(b) > MaxState {
			t.Fatalf("ParseState(%q) accepted %+v", b, s)
		}
	})
}

func FuzzParseAddress(f *testing.F) {
	f.Add("10.88.0.2/16", "10.88.0.1")
	f.Add("10.88.0.0/16", "10.88.0.1")
	f.Add("::1/64", "::2")
	f.Fuzz(func(t *testing.T, a, g string) {
		p, err := ParseAddress(a)
		if err != nil {
			return
		}
		if !p.Addr().Is4() || p.Bits() > 30 || p.Addr() == p.Masked().Addr() {
			t.Fatalf("ParseAddress(%q) accepted %s", a, p)
		}
		gw, err := ParseGateway(g, p)
		if err == nil && (!p.Contains(gw) || gw == p.Addr()) {
			t.Fatalf("ParseGateway(%q, %s) accepted %s", g, p, gw)
		}
	})
}

// BenchmarkAttach is a container's start: a fresh namespace, no pair
// left from before (the pair is deleted with the timer stopped: deleting
// a veth waits for an RCU grace period, 15-20 ms here).
func BenchmarkAttach(b *testing.B) { benchAttach(b, false) }

// BenchmarkAttachStale is the hook of a container whose old pair is still
// there: the delete is most of the time.
func BenchmarkAttachStale(b *testing.B) { benchAttach(b, true) }

func benchAttach(b *testing.B, stale bool) {
	requireNetns(b)
	host := newNS(b)
	h := Host{Subnet: mustPrefix("10.88.0.0/16"), Gateway: mustAddr("10.88.0.1")}
	if err := inNS(host, func() error { return SetupHost(h) }); err != nil {
		b.Fatal(err)
	}
	pid := startIn(b, host, true)
	err := inNS(host, func() error {
		b.ResetTimer()
		for range b.N {
			if err := Attach("web", pid, mustPrefix("10.88.0.2/16"), h.Gateway, ""); err != nil {
				return err
			}
			if !stale {
				b.StopTimer()
				if err := Detach("web"); err != nil {
					return err
				}
				b.StartTimer()
			}
		}
		b.StopTimer()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

func BenchmarkSetupHost(b *testing.B) {
	requireNetns(b)
	host := newNS(b)
	h := Host{Subnet: mustPrefix("10.88.0.0/16"), Gateway: mustAddr("10.88.0.1")}
	for i := range 10 {
		h.Ports = append(h.Ports, Port{Proto: "tcp", HostPort: uint16(8000 + i), Addr: mustAddr("10.88.0.2"), ContainerPort: 80, Container: "web"})
	}
	err := inNS(host, func() error {
		b.ResetTimer()
		for range b.N {
			if err := SetupHost(h); err != nil {
				return err
			}
		}
		b.StopTimer()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}
