package fleet

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestFleetReportsAndStopTheLine(t *testing.T) {
	ep := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	one := &Fleet{Conn: conn(ep)}
	two := &Fleet{Conn: conn(ep)}
	defer one.Close()
	defer two.Close()
	now := time.Now().UTC()
	if err := one.Put(ctx, MachineReport{ID: "one", Hostname: "h1", Version: "2.0.0", Slot: "a", State: "failed", Failed: []string{"3.0.0"}, LastError: "health check: web did not stay up", At: now}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := two.Put(ctx, MachineReport{ID: "two", Hostname: "h2", Version: "2.0.0", Slot: "b", State: "idle", At: now}, time.Minute); err != nil {
		t.Fatal(err)
	}
	ms, err := two.Machines(ctx)
	if err != nil || len(ms) != 2 || ms[0].ID != "one" || ms[1].Hostname != "h2" {
		t.Fatalf("machines %+v %v", ms, err)
	}
	h, err := two.ShouldHalt(ctx, "3.0.0", 1)
	if err != nil || h == nil || h.Failed != 1 || h.Machines[0] != "one" {
		t.Fatalf("v3 failed on one machine: halt %+v %v", h, err)
	}
	if h, err := two.ShouldHalt(ctx, "3.0.0", 2); err != nil || h != nil {
		t.Errorf("halt_after 2 with one failure: %+v %v", h, err)
	}
	if h, err := two.ShouldHalt(ctx, "3.0.1", 1); err != nil || h != nil {
		t.Errorf("a newer version is not held: %+v %v", h, err)
	}
	if err := one.Resume(ctx, "3.0.0"); err != nil {
		t.Fatal(err)
	}
	if h, err := two.ShouldHalt(ctx, "3.0.0", 1); err != nil || h != nil {
		t.Errorf("after resume: %+v %v", h, err)
	}
	st, err := two.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Counts["2.0.0"]["failed"] != 1 || st.Counts["2.0.0"]["idle"] != 1 || len(st.Failed) != 1 || st.Failed[0].ID != "one" {
		t.Errorf("status %+v", st)
	}
}

func TestFleetReportLeaseExpires(t *testing.T) {
	ep := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := &Fleet{Conn: conn(ep)}
	defer f.Close()
	// a garbage report is shown, not hidden
	cli := client(t, conn(ep))
	if _, err := cli.Put(ctx, f.machinesPrefix()+"junk", "{not json"); err != nil {
		t.Fatal(err)
	}
	if err := f.Put(ctx, MachineReport{ID: "gone", Version: "1.0.0", State: "idle"}, time.Second); err != nil {
		t.Fatal(err)
	}
	ms, _ := f.Machines(ctx)
	if len(ms) != 2 || ms[1].State != "unreadable" {
		t.Fatalf("machines %+v", ms)
	}
	// the shortest lease etcd grants here is the 10 s slate asks at least
	if testing.Short() {
		return
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ms, _ = f.Machines(ctx)
		if len(ms) == 1 {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Errorf("a machine that stopped reporting is still there: %+v", ms)
}

// The daemon's reports (its Run loop) and its stop-the-line checks (from
// a request) use one Fleet at once: under -race, this is a data race
// unless the Fleet sets its client up once.
func TestFleetConcurrentUse(t *testing.T) {
	ep := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f := &Fleet{Conn: conn(ep)}
	defer f.Close()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			r := MachineReport{ID: fmt.Sprintf("m%d", i), Version: "1.0.0", State: "idle", At: time.Now().UTC()}
			if err := f.Put(ctx, r, time.Minute); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := f.ShouldHalt(ctx, "2.0.0", 1); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}
