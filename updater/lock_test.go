package updater

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/updater/fleet"
)

// gateLock is a reboot lock that is granted when the test says so.
type gateLock struct {
	mu     sync.Mutex
	events []string
	grant  chan struct{}
}

func (g *gateLock) log(e string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.events = append(g.events, e)
}

func (g *gateLock) Events() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.events)
}

func (g *gateLock) Acquire(ctx context.Context) error {
	g.log("acquire")
	select {
	case <-g.grant:
		g.log("locked")
		return nil
	case <-ctx.Done():
		g.log("gave up")
		return ctx.Err()
	}
}

func (g *gateLock) Release(context.Context) error { g.log("release"); return nil }
func (g *gateLock) String() string                { return "gate" }

func waitEvent(t *testing.T, g *gateLock, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(g.Events(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %v", want, g.Events())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A staged update waits for the fleet's reboot lock without holding the
// daemon: status, check and rollback answer meanwhile; the reboot comes
// only after Acquire, and the lock goes back after the bless.
func TestRebootWaitsForLock(t *testing.T) {
	f := newFixture(t)
	d := testDaemon(t, serveChannel(t, f.channel), f.pub)
	d.Config.Reboot = configs.RebootLock
	d.MachineID = "0123456789abcdef0123456789abcdef"
	g := &gateLock{grant: make(chan struct{})}
	d.Lock = g
	rebooted := make(chan struct{}, 1)
	d.Reboot = func() error { g.log("reboot"); rebooted <- struct{}{}; return nil }
	c := control(t, d)
	start := time.Now()
	if err := d.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("the check took %v", time.Since(start))
	}
	waitEvent(t, g, "acquire")
	st, err := c.Do(context.Background(), "status", "")
	if err != nil || st.Staged != "1.1.0" || !strings.HasPrefix(st.Lock, "waiting for the reboot lock since ") || st.MachineID != d.MachineID {
		t.Fatalf("status while waiting: %+v %v", st, err)
	}
	// a second check finds the version staged and the wait going on
	if err := d.Check(context.Background()); err != nil {
		t.Errorf("check while waiting: %v", err)
	}
	select {
	case <-rebooted:
		t.Fatal("rebooted without the lock")
	case <-time.After(200 * time.Millisecond):
	}
	if n := strings.Count(strings.Join(g.Events(), " "), "acquire"); n != 1 {
		t.Errorf("%d waits for the lock, want 1: %v", n, g.Events())
	}
	close(g.grant)
	select {
	case <-rebooted:
	case <-time.After(5 * time.Second):
		t.Fatal("no reboot after the lock was granted")
	}
	if ev := g.Events(); !slices.Equal(ev, []string{"acquire", "locked", "reboot"}) {
		t.Errorf("events %v", ev)
	}
	// the next boot: on trial, healthy, blessed: then the lock goes back
	rebootDone(t, d) // a test's reboot returns: the next boot begins
	onTrial(t, d)
	d.bless()
	waitEvent(t, g, "release")
	if st := d.Status(); st.Lock != "" || st.State != "blessed" {
		t.Errorf("after the bless: state %s, lock %q", st.State, st.Lock)
	}
}

// A rollback by hand ends the wait for the lock: the machine does not
// reboot into the update afterwards.
func TestRollbackEndsLockWait(t *testing.T) {
	d := testDaemon(t, "http://127.0.0.1:1/", nil)
	d.Config.Reboot = configs.RebootLock
	d.MachineID = "0123456789abcdef0123456789abcdef"
	g := &gateLock{grant: make(chan struct{})}
	d.Lock = g
	d.Reboot = func() error { g.log("reboot"); return nil }
	if err := d.rebootPerPolicy(); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, g, "acquire")
	if err := d.Rollback(); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, g, "gave up")
	close(g.grant)
	time.Sleep(100 * time.Millisecond)
	if slices.Contains(g.Events(), "reboot") {
		t.Error("rebooted after the rollback ended the wait")
	}
}

// reboot: lock without a lock is an error, never a reboot.
func TestRebootLockWithoutLock(t *testing.T) {
	d := testDaemon(t, "http://127.0.0.1:1/", nil)
	d.Config.Reboot = configs.RebootLock
	d.Reboot = func() error { return errors.New("must not reboot") }
	if err := d.rebootPerPolicy(); err == nil {
		t.Fatal("no error")
	}
}

// With a real etcd: another machine holds the only place; the staged
// update waits (status says for what), reboots once the place is free,
// and the bless gives it back.
func TestRebootWaitsForEtcdLock(t *testing.T) {
	ep := startEtcd(t)
	conn := configs.EtcdConn{Endpoints: []string{ep}, Prefix: configs.DefaultLockPrefix, DialTimeout: configs.Duration(2 * time.Second)}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	other := &fleet.Etcd{Conn: conn, ID: "other", Max: 1, Report: func(string, ...any) {}}
	defer other.Close()
	if err := other.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	d := testDaemon(t, serveChannel(t, f.channel), f.pub)
	d.MachineID = "0123456789abcdef0123456789abcdef"
	d.Config.Reboot = configs.RebootLock
	d.Config.Lock = &configs.UpdateLock{Etcd: &configs.EtcdLock{Endpoints: conn.Endpoints, Prefix: conn.Prefix, DialTimeout: conn.DialTimeout, Max: 1, TTL: configs.DefaultLockTTL}}
	rebooted := make(chan struct{}, 1)
	d.Reboot = func() error { rebooted <- struct{}{}; return nil }
	d.fleetInit()
	d.Lock.(*fleet.Etcd).Backoff = fleet.Backoff{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond}
	if err := d.Check(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.Status().Lock, "full: held by other") {
		if time.Now().After(deadline) {
			t.Fatalf("status lock %q", d.Status().Lock)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := d.Status(); st.State != "locking" {
		t.Errorf("state %s, want locking", st.State)
	}
	select {
	case <-rebooted:
		t.Fatal("rebooted while another machine holds the lock")
	case <-time.After(300 * time.Millisecond):
	}
	if err := other.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rebooted:
	case <-time.After(10 * time.Second):
		t.Fatal("no reboot once the lock was free")
	}
	ls, err := other.Read(ctx)
	if err != nil || !slices.Equal(ls.Doc.Holders, []string{d.MachineID}) {
		t.Fatalf("holders at the reboot: %+v %v", ls, err)
	}
	rebootDone(t, d) // a test's reboot returns: the next boot begins
	onTrial(t, d)
	d.bless()
	deadline = time.Now().Add(10 * time.Second)
	for {
		ls, err := other.Read(ctx)
		if err == nil && len(ls.Doc.Holders) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lock was not released after the bless: %+v %v", ls, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A machine that boots, not on trial, with a hold of its own (it rolled
// back, or rebooted before its bless was written) gives it back once
// healthy; one with a version staged keeps it for that reboot.
func TestBootReleasesStaleHold(t *testing.T) {
	for _, staged := range []bool{false, true} {
		d := testDaemon(t, "http://127.0.0.1:1/", nil)
		d.MachineID = "0123456789abcdef0123456789abcdef"
		d.Config.Reboot = configs.RebootLock
		g := &gateLock{grant: make(chan struct{})}
		d.Lock = g
		d.StatusFile = filepath.Join(t.TempDir(), "status.json")
		if err := os.WriteFile(d.StatusFile, []byte(`{"version":"1.0.0","slot":"a","ready":true,"services":[]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if staged {
			d.editState(func(st *State) { st.Staged = "1.1.0" })
		}
		d.settle(context.Background())
		time.Sleep(300 * time.Millisecond)
		if released := slices.Contains(g.Events(), "release"); released == staged {
			t.Errorf("staged %v: released %v", staged, released)
		}
	}
}

// reboot: lock with a window hours away asks for no lock before it opens.
func TestLockWaitsForWindow(t *testing.T) {
	d := testDaemon(t, "http://127.0.0.1:1/", nil)
	d.MachineID = "0123456789abcdef0123456789abcdef"
	d.Config.Reboot = configs.RebootLock
	from := time.Now().UTC().Add(3 * time.Hour)
	d.Config.Window = from.Format("15:04") + "-" + from.Add(time.Hour).Format("15:04")
	g := &gateLock{grant: make(chan struct{})}
	d.Lock = g
	if err := d.rebootPerPolicy(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if len(g.Events()) != 0 {
		t.Errorf("asked for the lock outside the window: %v", g.Events())
	}
	if st := d.Status(); st.State != "staged" || !strings.HasPrefix(st.Lock, "waiting for the reboot lock") {
		t.Errorf("state %s lock %q", st.State, st.Lock)
	}
	d.stopLockWait()
}

// rebootDone waits for the wait for the lock to end after a test's Reboot
// returned (a real one does not).
func rebootDone(t *testing.T, d *Daemon) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.fl.mu.Lock()
		w := d.fl.waiting
		d.fl.mu.Unlock()
		if !w {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the wait for the lock did not end after the reboot")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// holdLock is a reboot lock whose Release cannot get through (etcd down)
// until an Acquire happened, and then removes the hold: a release that
// lands between the next Acquire and its reboot.
type holdLock struct {
	mu       sync.Mutex
	held     bool
	events   []string
	acquired chan struct{}
	released chan struct{}
	calls    chan struct{}
}

func (h *holdLock) log(e string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, e)
}

func (h *holdLock) Events() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events)
}

func (h *holdLock) Acquire(ctx context.Context) error {
	h.mu.Lock()
	h.held = true
	h.events = append(h.events, "acquire")
	h.mu.Unlock()
	close(h.acquired)
	// a late release, if there is one, lands before the reboot
	select {
	case <-h.released:
	case <-time.After(300 * time.Millisecond):
	}
	return nil
}

func (h *holdLock) Release(ctx context.Context) error {
	h.log("release")
	h.calls <- struct{}{}
	select {
	case <-h.acquired:
		h.mu.Lock()
		h.held = false
		h.events = append(h.events, "released")
		h.mu.Unlock()
		close(h.released)
		return nil
	case <-ctx.Done():
		h.log("release cancelled")
		return ctx.Err()
	}
}

func (h *holdLock) String() string { return "hold" }

// A release still retrying (after a bless, etcd down) when the next
// version is staged and waits for the lock is cancelled before the
// Acquire: the machine never reboots without holding the lock.
func TestLateReleaseDoesNotDropTheHold(t *testing.T) {
	d := testDaemon(t, "http://127.0.0.1:1/", nil)
	d.MachineID = "0123456789abcdef0123456789abcdef"
	d.Config.Reboot = configs.RebootLock
	h := &holdLock{acquired: make(chan struct{}), released: make(chan struct{}), calls: make(chan struct{}, 4)}
	d.Lock = h
	heldAtReboot := make(chan bool, 1)
	d.Reboot = func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		heldAtReboot <- h.held
		return nil
	}
	d.releaseLock(false) // after a bless
	select {
	case <-h.calls:
	case <-time.After(10 * time.Second):
		t.Fatal("no release")
	}
	d.editState(func(st *State) { st.Staged = "1.2.0" })
	if err := d.rebootWithLock(); err != nil {
		t.Fatal(err)
	}
	select {
	case held := <-heldAtReboot:
		if !held {
			t.Fatalf("rebooted without the lock: %v", h.Events())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no reboot: %v", h.Events())
	}
	if ev := h.Events(); !slices.Equal(ev, []string{"release", "release cancelled", "acquire"}) {
		t.Errorf("events %v", ev)
	}
}
