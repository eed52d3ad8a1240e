package updater

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/bootdisk"
	"github.com/slateos/slate/internal/bootentry"
	"github.com/slateos/slate/partitions"
	"github.com/slateos/slate/updater/payload"
)

// testDaemon is a daemon running 1.0.0 in slot a of a machine made of
// files: slot b's root is a file, the ESP a folder with a good 0.9.0
// entry for slot b (the fallback) and a blessed entry for slot a.
func testDaemon(t *testing.T, channel string, pub []byte) *Daemon {
	t.Helper()
	dir := t.TempDir()
	rootb := filepath.Join(dir, "rootb")
	if err := os.WriteFile(rootb, make([]byte, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	esp := bootentry.Dir{Path: filepath.Join(dir, "esp")}
	for _, e := range []bootentry.Config{{Version: "0.9.0", Slot: "b", Options: "x"}, {Version: "1.0.0", Slot: "a", Options: "root=PARTUUID=aaa slate.slot=a ro"}} {
		if _, err := esp.InstallEntry(e, 0); err != nil {
			t.Fatal(err)
		}
	}
	m := &bootdisk.Disk{
		Cmdline:  "root=PARTUUID=aaa slate.slot=a ro",
		ESPMount: esp.Path,
		Disk: partitions.Disk{
			Name:   "test",
			Layout: partitions.Layout{Parts: []partitions.Part{{Num: partitions.NumRootB, Label: partitions.LabelRootB, GUID: "BBB", Size: 16 << 20}}},
			// Dev is "/dev/" + this: reach the file from /dev
			Parts: map[int]string{partitions.NumRootB: "../" + strings.TrimPrefix(rootb, "/")},
		},
	}
	return &Daemon{
		Name: "demo", Version: "1.0.0", Slot: "a",
		Config:     configs.Update{Channel: channel, Reboot: configs.RebootOff, CheckInterval: configs.Duration(time.Hour)},
		PublicKeys: []ed25519.PublicKey{pub},
		Disk:       m,
		StateFile:  filepath.Join(dir, "var", "state.json"),
	}
}

// silent accepts connections and never answers.
func silent(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(io.Discard, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + l.Addr().String() + "/stable/"
}

// control serves the daemon's control API on a unix socket.
func control(t *testing.T, d *Daemon) Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "update.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: d.Handler()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return Client{Socket: sock}
}

func waitState(t *testing.T, d *Daemon, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for d.Status().State != want {
		if time.Now().After(deadline) {
			t.Fatalf("state %s, want %s", d.Status().State, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A check stuck on a server that never answers holds no lock: status,
// a second check and rollback answer at once, and the rollback cancels
// the check.
func TestStuckCheckBlocksNothing(t *testing.T) {
	d := testDaemon(t, silent(t), nil)
	d.Config.Timeouts.Header = configs.Duration(time.Hour)
	c := control(t, d)
	done := make(chan error, 1)
	go func() { done <- d.Check(context.Background()) }()
	waitState(t, d, "checking")

	quick := func(op string) (*Status, error) {
		t.Helper()
		start := time.Now()
		st, err := c.Do(context.Background(), op, "")
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %v while a check is stuck", op, d)
		}
		return st, err
	}
	if st, err := quick("status"); err != nil || st.State != "checking" || st.Other.Version != "0.9.0" {
		t.Errorf("status: %+v %v", st, err)
	}
	if _, err := quick("check"); !errors.Is(err, ErrBusy) && (err == nil || !strings.Contains(err.Error(), "busy")) {
		t.Errorf("second check: %v, want busy", err)
	}
	st, err := quick("rollback")
	if err != nil || st.Current.State != "bad" {
		t.Fatalf("rollback: %v, running slot %+v", err, st.Current)
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the stuck check ended with %v, want cancelled by the rollback", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the rollback did not cancel the stuck check")
	}
}

// A control client that hangs up cancels its request; the client's own
// timeout says what happened.
func TestControlHangupCancels(t *testing.T) {
	d := testDaemon(t, silent(t), nil)
	d.Config.Timeouts.Header = configs.Duration(time.Hour)
	c := control(t, d)
	c.Timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := c.Do(context.Background(), "check", "")
	if err == nil || !strings.Contains(err.Error(), "did not answer check within 300ms") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("client timeout took %v", time.Since(start))
	}
	// the daemon gave the check up: a new one can start
	deadline := time.Now().Add(5 * time.Second)
	for {
		d.smu.Lock()
		job := d.job
		d.smu.Unlock()
		if job == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the check of a client that hung up still runs (%s)", job)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := d.Status(); st.State != "failed" || !strings.Contains(st.LastError, "context canceled") {
		t.Errorf("status after hang-up: %s %q", st.State, st.LastError)
	}
}

// The header timeout ends a check on a dead server: the daemon does not
// hang.
func TestCheckHeaderTimeout(t *testing.T) {
	d := testDaemon(t, silent(t), nil)
	d.Config.Timeouts.Header = configs.Duration(300 * time.Millisecond)
	start := time.Now()
	err := d.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "timeout awaiting response headers") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
}

// serveChannel serves a channel folder, with files answering 404 when
// named in missing.
func serveChannel(t *testing.T, dir string, missing ...string) string {
	t.Helper()
	files := payload.Serve(dir)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, m := range missing {
			if strings.HasSuffix(r.URL.Path, m) {
				http.NotFound(w, r)
				return
			}
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// B: a channel whose files are missing or wrong costs the fallback slot
// nothing; a failure after writing began leaves the slot marked lost.
func TestFailedUpdateKeepsFallback(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name    string
		missing []string
		spoil   func(t *testing.T, channel string)
		want    string
		lost    bool
	}{
		{name: "root 404", missing: []string{"root.img.zst"}, want: "404"},
		{name: "kernel 404", missing: []string{"vmlinuz"}, want: "404"},
		{name: "initrd 404", missing: []string{"initrd.img"}, want: "404"},
		{name: "corrupt kernel", spoil: func(t *testing.T, ch string) { flipByte(t, filepath.Join(ch, "1.1.0", "vmlinuz"), 10) }, want: "vmlinuz"},
		{name: "root of the wrong length", spoil: func(t *testing.T, ch string) {
			p := filepath.Join(ch, "1.1.0", "root.img.zst")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, append(b, 0), 0o644)
		}, want: "the manifest says"},
		{name: "root not zstd", spoil: func(t *testing.T, ch string) { flipByte(t, filepath.Join(ch, "1.1.0", "root.img.zst"), 0) }, want: "root.img.zst"},
		{name: "corrupt root end", spoil: func(t *testing.T, ch string) {
			p := filepath.Join(ch, "1.1.0", "root.img.zst")
			st, _ := os.Stat(p)
			flipByte(t, p, st.Size()-20)
		}, want: "root.img.zst", lost: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch := filepath.Join(t.TempDir(), "channel")
			if err := os.CopyFS(ch, os.DirFS(f.channel)); err != nil {
				t.Fatal(err)
			}
			if tc.spoil != nil {
				tc.spoil(t, ch)
			}
			d := testDaemon(t, serveChannel(t, ch, tc.missing...), f.pub)
			d.Name = "demo"
			err := d.Check(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			st := d.Status()
			if tc.lost {
				if st.Other.State != "empty" || !strings.Contains(st.Other.Note, "an update to 1.1.0 failed while writing it at ") {
					t.Errorf("other slot %+v, want empty and said why", st.Other)
				}
				s, _ := LoadState(d.StateFile)
				if s.Lost == nil || s.Lost.Slot != "b" || s.Lost.Version != "1.1.0" || s.Writing != nil {
					t.Errorf("state lost %+v writing %+v", s.Lost, s.Writing)
				}
				return
			}
			if st.Other.Version != "0.9.0" || st.Other.State != "good" || st.Other.Note != "" {
				t.Errorf("the fallback slot is %+v after %v; want 0.9.0, good", st.Other, err)
			}
		})
	}
}

func flipByte(t *testing.T, p string, off int64) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x55
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A successful update after a lost slot clears the note; the state file
// is root's only.
func TestUpdateClearsLostAndStateMode(t *testing.T) {
	f := newFixture(t)
	d := testDaemon(t, serveChannel(t, f.channel), f.pub)
	d.editState(func(s *State) { s.Lost = &SlotWrite{Slot: "b", Version: "1.0.5", At: time.Now()} })
	if err := d.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := d.Status()
	if st.Other.Version != "1.1.0" || st.Other.State != "trying" || st.Other.Note != "" || st.Staged != "1.1.0" {
		t.Errorf("after the update: %+v staged %s", st.Other, st.Staged)
	}
	fi, err := os.Stat(d.StateFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}

// A power cut while writing: the next start finds Writing set and no
// entry for the slot, and records the slot as lost.
func TestSettleTurnsInterruptedWriteIntoLost(t *testing.T) {
	d := testDaemon(t, "http://127.0.0.1:1/", nil)
	_ = d.withESP(func(b bootentry.Dir) error { return b.RemoveSlot("b") })
	d.editState(func(s *State) { s.Writing = &SlotWrite{Slot: "b", Version: "1.1.0", At: time.Now()} })
	d.settle(context.Background())
	st := d.Status()
	if !strings.Contains(st.Other.Note, "an update to 1.1.0 failed while writing it at") || !strings.Contains(st.Other.Note, "interrupted") {
		t.Errorf("other slot after an interrupted write: %+v", st.Other)
	}
}

// A failed mark-bad is not a rollback: the error is returned and nothing
// claims the other slot boots next.
func TestRollbackReportsMarkBadFailure(t *testing.T) {
	d := testDaemon(t, "http://127.0.0.1:1/", nil)
	// a folder in the way of the rename to the bad name (root ignores
	// folder modes, so that is how a rename is made to fail)
	block := filepath.Join(d.Disk.ESPMount, "loader", "entries", "slate-1.0.0-a+0-3.conf")
	if err := os.MkdirAll(filepath.Join(block, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := d.Rollback()
	if err == nil || !strings.Contains(err.Error(), "mark slot a bad") {
		t.Fatalf("rollback: %v", err)
	}
	s, _ := LoadState(d.StateFile)
	if _, ok := s.Failed["1.0.0"]; ok || d.Status().State == "rollback" {
		t.Error("a failed mark-bad was recorded as a rollback")
	}
}

// onTrial makes slot a's entry a fresh one with tries, and a supervisor
// status that says the system is up.
func onTrial(t *testing.T, d *Daemon) {
	t.Helper()
	err := d.withESP(func(b bootentry.Dir) error {
		if err := b.RemoveSlot("a"); err != nil {
			return err
		}
		_, err := b.InstallEntry(bootentry.Config{Version: "1.0.0", Slot: "a", Options: "x"}, 3)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	d.StatusFile = filepath.Join(t.TempDir(), "status.json")
	if err := os.WriteFile(d.StatusFile, []byte(`{"version":"1.0.0","slot":"a","ready":true,"services":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The health wait holds no lock: a rollback by hand during it answers at
// once, and the settle that follows does not bless the slot again.
func TestRollbackDuringTrial(t *testing.T) {
	d := testDaemon(t, "http://127.0.0.1:1/", nil)
	onTrial(t, d)
	d.Config.Health.Hold = configs.Duration(2 * time.Second)
	done := make(chan struct{})
	go func() { d.settle(context.Background()); close(done) }()
	waitState(t, d, "trial")
	if err := d.Check(context.Background()); !errors.Is(err, ErrBusy) {
		t.Errorf("a check during the trial: %v, want busy (it would overwrite the fallback)", err)
	}
	start := time.Now()
	if err := d.Rollback(); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("rollback waited %v behind the health check", time.Since(start))
	}
	<-done
	if st := d.Status(); st.Current.State != "bad" || st.Failed["1.0.0"].Reason != "rolled back by hand" {
		t.Errorf("running slot %+v, failed %+v after a rollback during the trial, want bad, rolled back by hand", st.Current, st.Failed)
	}
}

// An unhealthy trial whose mark-bad fails reports the failure, not a
// rollback, and does not reboot.
func TestUnhealthyMarkBadFailure(t *testing.T) {
	d := testDaemon(t, "http://127.0.0.1:1/", nil)
	onTrial(t, d)
	d.Config.Health.Services = []string{"web"} // not known: unhealthy
	rebooted := false
	d.Reboot = func() error { rebooted = true; return nil }
	block := filepath.Join(d.Disk.ESPMount, "loader", "entries", "slate-1.0.0-a+0-3.conf")
	if err := os.MkdirAll(filepath.Join(block, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	d.settle(context.Background())
	if st := d.Status(); st.State != "failed" || rebooted {
		t.Errorf("state %s, rebooted %v: a failed mark-bad was taken for a rollback", st.State, rebooted)
	}
}

// A reboot window hours away is a timer: the update returns at once
// instead of sleeping with the update claimed.
func TestRebootWindowDoesNotWait(t *testing.T) {
	d := testDaemon(t, "http://127.0.0.1:1/", nil)
	now := time.Now().UTC()
	from := now.Add(3 * time.Hour)
	d.Config.Reboot = configs.RebootWindow
	d.Config.Window = from.Format("15:04") + "-" + from.Add(time.Hour).Format("15:04")
	rebooted := make(chan struct{}, 1)
	d.Reboot = func() error { rebooted <- struct{}{}; return nil }
	start := time.Now()
	if err := d.rebootPerPolicy(); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("waited %v for the window", time.Since(start))
	}
	d.smu.Lock()
	scheduled := d.rebootTimer != nil
	d.smu.Unlock()
	if !scheduled {
		t.Error("no reboot scheduled for the window")
	}
	if st := d.Status(); st.State != "staged" {
		t.Errorf("state %s, want staged", st.State)
	}
	d.stopReboot()
	select {
	case <-rebooted:
		t.Error("rebooted outside the window")
	default:
	}
}

// An apply asked for by hand waits for a running check, as long as its
// client lets it; a check finds the update busy.
func TestApplyWaitsForCheck(t *testing.T) {
	f := newFixture(t)
	d := testDaemon(t, silent(t), f.pub)
	d.Config.Timeouts.Header = configs.Duration(time.Second)
	done := make(chan error, 1)
	go func() { done <- d.Check(context.Background()) }()
	waitState(t, d, "checking")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := d.ApplyFrom(ctx, f.channel); err == nil || !strings.Contains(err.Error(), "waiting for a check of the channel to end: context deadline exceeded") {
		t.Fatalf("apply with a short client: %v", err)
	}
	if err := d.ApplyFrom(context.Background(), f.channel); err != nil {
		t.Fatalf("apply after the check: %v", err)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "timeout awaiting response headers") {
		t.Errorf("the check: %v", err)
	}
	if st := d.Status(); st.Staged != "1.1.0" || st.Other.Version != "1.1.0" {
		t.Errorf("after the apply: staged %q, other %+v", st.Staged, st.Other)
	}
}

// A check cut short by the daemon's own stop (SIGTERM at a reboot or
// shutdown) is no failure: the last error stays the one before, not
// "context canceled".
func TestCheckStoppedKeepsLastError(t *testing.T) {
	d := testDaemon(t, silent(t), nil)
	d.Config.Timeouts.Header = configs.Duration(time.Hour)
	d.editState(func(st *State) { st.LastError = "an earlier error" })
	ctx, cancel := context.WithCancel(context.Background())
	d.fleetStart(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Check(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for d.Status().State != "checking" {
		if time.Now().After(deadline) {
			t.Fatal("the check did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the check did not end with the daemon")
	}
	if st := d.Status(); st.LastError != "an earlier error" || st.State == "failed" {
		t.Errorf("after the stop: state %s, last error %q", st.State, st.LastError)
	}
}

// Once a reboot is asked for, no check or apply starts: it would write
// the slot the machine is about to boot.
func TestNoCheckAfterReboot(t *testing.T) {
	f := newFixture(t)
	d := testDaemon(t, serveChannel(t, f.channel), f.pub)
	d.Config.Reboot = configs.RebootImmediate
	var reboots atomic.Int32
	d.Reboot = func() error { reboots.Add(1); return nil }
	if err := d.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := reboots.Load(); n != 1 || d.Status().Staged != "1.1.0" {
		t.Fatalf("%d reboots, staged %q", n, d.Status().Staged)
	}
	if err := d.Check(context.Background()); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "rebooting") {
		t.Errorf("check after the reboot was asked for: %v", err)
	}
	if err := d.ApplyFrom(context.Background(), f.channel); !errors.Is(err, ErrBusy) {
		t.Errorf("apply after the reboot was asked for: %v", err)
	}
	if n := reboots.Load(); n != 1 {
		t.Errorf("%d reboots", n)
	}
	// a reboot PID 1 refused lets the daemon go on
	d2 := testDaemon(t, serveChannel(t, f.channel), f.pub)
	d2.Config.Reboot = configs.RebootImmediate
	d2.Reboot = func() error { return errors.New("refused") }
	if err := d2.Check(context.Background()); err == nil {
		t.Fatal("a refused reboot is no error")
	}
	if err := d2.Check(context.Background()); errors.Is(err, ErrBusy) {
		t.Errorf("check after a refused reboot: %v", err)
	}
}
