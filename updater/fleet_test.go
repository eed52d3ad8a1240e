package updater

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/bootentry"
	"github.com/slateos/slate/internal/bootlog"
	"github.com/slateos/slate/updater/fleet"
	"github.com/slateos/slate/updater/fleet/fleettest"
)

func startEtcd(t *testing.T) string {
	ep, _ := fleettest.StartEtcd(t)
	return ep
}

// Stop-the-line: one machine gave 1.1.0 up (rolled back) and says so;
// the other does not apply 1.1.0 until someone resumes it.
func TestStopTheLine(t *testing.T) {
	ep := startEtcd(t)
	conn := configs.EtcdConn{Endpoints: []string{ep}, Prefix: configs.DefaultLockPrefix, DialTimeout: configs.Duration(2 * time.Second)}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := newFixture(t)
	report := &configs.UpdateReport{Etcd: &conn}

	one := testDaemon(t, "http://127.0.0.1:1/", nil)
	one.MachineID, one.Config.Report, one.Config.HaltAfter = "11111111111111111111111111111111", report, 1
	one.editState(func(st *State) {
		st.Failed["1.1.0"] = Failure{Reason: "health check: service web did not stay up", At: time.Now().UTC()}
	})
	one.reportFleet(ctx)

	two := testDaemon(t, serveChannel(t, f.channel), f.pub)
	two.MachineID, two.Config.Report, two.Config.HaltAfter = "22222222222222222222222222222222", report, 1
	if err := two.Check(ctx); err != nil {
		t.Fatal(err)
	}
	st := two.Status()
	if st.State != "halted" || st.Staged != "" || st.Other.Version != "0.9.0" {
		t.Fatalf("machine two applied 1.1.0 that failed on machine one: state %s, staged %q, other %+v", st.State, st.Staged, st.Other)
	}
	if !strings.Contains(st.Halted, "1.1.0 failed on 1 machines (11111111111111111111111111111111)") {
		t.Errorf("status does not say why: %q", st.Halted)
	}
	two.reportFleet(ctx)
	fl := &fleet.Fleet{Conn: conn}
	defer fl.Close()
	fs, err := fl.Status(ctx)
	if err != nil || len(fs.Machines) != 2 || fs.Counts["1.0.0"]["halted"] != 1 || len(fs.Failed) != 1 || fs.Failed[0].ID != one.MachineID {
		t.Errorf("fleet status %+v %v", fs, err)
	}
	// still held at the next check
	if err := two.Check(ctx); err != nil || two.Status().Staged != "" {
		t.Fatalf("second check: %v, staged %q", err, two.Status().Staged)
	}
	if err := fl.Resume(ctx, "1.1.0"); err != nil {
		t.Fatal(err)
	}
	if err := two.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if st := two.Status(); st.Staged != "1.1.0" || st.Halted != "" {
		t.Errorf("after resume: staged %q, halted %q", st.Staged, st.Halted)
	}
}

// An etcd that cannot be read holds the update (fail closed) and says so.
func TestStopTheLineUnreachable(t *testing.T) {
	ep := fleettest.ClosedPort(t)
	f := newFixture(t)
	d := testDaemon(t, serveChannel(t, f.channel), f.pub)
	d.MachineID = "22222222222222222222222222222222"
	d.Config.Report = &configs.UpdateReport{Etcd: &configs.EtcdConn{Endpoints: []string{ep}, DialTimeout: configs.Duration(time.Second)}}
	err := d.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "stop-the-line") {
		t.Fatalf("check with etcd down: %v", err)
	}
	if st := d.Status(); st.Staged != "" || st.Other.Version != "0.9.0" {
		t.Errorf("applied without the fleet's word: %+v", st)
	}
}

// An apply by hand with etcd out of reach (air-gapped) is a person's
// decision: the stop-the-line error is said on the console, and the apply
// goes on (here to idleTarget, which an empty boot disk fails).
func TestStopTheLineUnreachableApplyByHand(t *testing.T) {
	var console syncBuffer
	bootlog.SetEvents(&console)
	defer bootlog.SetEvents(nil)
	ep := fleettest.ClosedPort(t)
	f := newFixture(t)
	d := testDaemon(t, "http://127.0.0.1:1/", f.pub)
	d.MachineID = "22222222222222222222222222222222"
	d.Config.Report = &configs.UpdateReport{Etcd: &configs.EtcdConn{Endpoints: []string{ep}, DialTimeout: configs.Duration(time.Second)}}
	err := d.ApplyFrom(context.Background(), f.channel)
	if err != nil && strings.Contains(err.Error(), "stop-the-line") {
		t.Fatalf("apply by hand with etcd down: %v", err)
	}
	if !strings.Contains(console.String(), "stop-the-line") || !strings.Contains(console.String(), "applied by hand anyway") {
		t.Errorf("the console does not say the fleet was not asked:\n%s", console.String())
	}
}

// Stop-the-line holds a version already staged, not only one not yet
// downloaded: machine two staged 1.1.0 and waits for the reboot lock when
// machine one reports it failed. Two then does not reboot into it: at its
// next check, or as the lock comes, it ends the wait, gives the lock back
// and removes the staged entry (a power cut must not boot it either).
func TestStopTheLineHoldsStaged(t *testing.T) {
	ep := startEtcd(t)
	conn := configs.EtcdConn{Endpoints: []string{ep}, Prefix: configs.DefaultLockPrefix, DialTimeout: configs.Duration(2 * time.Second)}
	f := newFixture(t)
	for i, tc := range []string{"next check", "lock taken"} {
		t.Run(tc, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			prefix := fmt.Sprintf("test%d", i)
			c := conn
			c.Prefix = prefix
			rep := &configs.UpdateReport{Etcd: &c}
			two := testDaemon(t, serveChannel(t, f.channel), f.pub)
			two.MachineID, two.Config.Report, two.Config.Reboot = "22222222222222222222222222222222", rep, configs.RebootLock
			g := &gateLock{grant: make(chan struct{})}
			two.Lock = g
			two.Reboot = func() error { g.log("reboot"); return nil }
			if err := two.Check(ctx); err != nil {
				t.Fatal(err)
			}
			waitEvent(t, g, "acquire")
			if st := two.Status(); st.Staged != "1.1.0" {
				t.Fatalf("not staged: %+v", st)
			}

			one := testDaemon(t, "http://127.0.0.1:1/", nil)
			one.MachineID, one.Config.Report = "11111111111111111111111111111111", rep
			one.editState(func(st *State) {
				st.Failed["1.1.0"] = Failure{Reason: "health check: service web did not stay up", At: time.Now().UTC()}
			})
			one.reportFleet(ctx)

			switch tc {
			case "next check":
				if err := two.Check(ctx); err != nil {
					t.Fatal(err)
				}
				waitEvent(t, g, "gave up")
			case "lock taken":
				close(g.grant)
				waitEvent(t, g, "release")
			}
			rebootDone(t, two)
			if slices.Contains(g.Events(), "reboot") {
				t.Errorf("rebooted into a version the fleet holds: %v", g.Events())
			}
			st := two.Status()
			if st.Staged != "" || st.Other.State != "empty" || !strings.Contains(st.Halted, "1.1.0 failed on 1 machines") || st.Lock != "" {
				t.Errorf("after the halt: staged %q, other %+v, halted %q, lock %q", st.Staged, st.Other, st.Halted, st.Lock)
			}
			// held at the next check too, without a download
			if err := two.Check(ctx); err != nil || two.Status().State != "halted" || two.Status().Staged != "" {
				t.Errorf("the next check: %v, %+v", err, two.Status())
			}
		})
	}
}

// A machine that rolled back reports it before it gives the reboot lock
// back: the next holder's stop-the-line check sees the failure.
func TestRollbackReportedBeforeRelease(t *testing.T) {
	ep := startEtcd(t)
	conn := configs.EtcdConn{Endpoints: []string{ep}, Prefix: configs.DefaultLockPrefix, DialTimeout: configs.Duration(2 * time.Second)}
	fl := &fleet.Fleet{Conn: conn}
	defer fl.Close()
	d := testDaemon(t, "http://127.0.0.1:1/", nil)
	d.MachineID, d.Config.Report, d.Config.Reboot = "11111111111111111111111111111111", &configs.UpdateReport{Etcd: &conn}, configs.RebootLock
	var seen []int
	var mu sync.Mutex
	g := &gateLock{grant: make(chan struct{})}
	d.Lock = &funcLock{Lock: g, release: func() {
		ms, err := fl.Machines(context.Background())
		n, _ := fleet.FailedOn(ms, "1.1.0")
		if err != nil {
			n = -1
		}
		mu.Lock()
		seen = append(seen, n)
		mu.Unlock()
	}}
	// back on 1.0.0 after 1.1.0 failed (its entry is bad), not on trial
	if err := d.withESP(func(b bootentry.Dir) error {
		if err := b.RemoveSlot("b"); err != nil {
			return err
		}
		if _, err := b.InstallEntry(bootentry.Config{Version: "1.1.0", Slot: "b", Options: "x"}, 3); err != nil {
			return err
		}
		for range 3 {
			if _, err := b.MarkBad("b"); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	d.StatusFile = filepath.Join(t.TempDir(), "status.json")
	if err := os.WriteFile(d.StatusFile, []byte(`{"version":"1.0.0","slot":"a","ready":true,"services":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	d.settle(context.Background())
	waitEvent(t, g, "release")
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != 1 {
		t.Errorf("machines that reported 1.1.0 failed, as the lock was released: %v, want [1]", seen)
	}
}

// funcLock calls release before it passes a Release on.
type funcLock struct {
	fleet.Lock
	release func()
}

func (f *funcLock) Release(ctx context.Context) error {
	f.release()
	return f.Lock.Release(ctx)
}
