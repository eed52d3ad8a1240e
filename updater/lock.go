package updater

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/bootentry"
	"github.com/slateos/slate/internal/bootlog"
	"github.com/slateos/slate/partitions"
	"github.com/slateos/slate/updater/fleet"
)

// fleetState is the daemon's part in fleet coordination: the wait for the
// reboot lock (a goroutine of its own, holding no lock of the daemon's
// while it waits) and the last stop-the-line verdict, for status.
type fleetState struct {
	once sync.Once

	mu      sync.Mutex
	runCtx  context.Context
	waiting bool
	since   time.Time
	lastErr string
	cancel  context.CancelFunc
	halted  string

	// A release and the wait for the lock are serialised: each wait
	// bumps relGen and cancels a pending release (relCancel), whose
	// Release, if already called, it lets end (relMu) before its
	// Acquire. A late Release would otherwise remove the hold the
	// Acquire found between it and the reboot.
	relGen    uint64
	relCancel context.CancelFunc
	relMu     sync.Mutex
}

// fleetStart gives the fleet's background work (the wait for the lock,
// its release) the daemon's life: they end when Run does.
func (d *Daemon) fleetStart(ctx context.Context) {
	d.fleetInit()
	d.fl.mu.Lock()
	d.fl.runCtx = ctx
	d.fl.mu.Unlock()
}

func (d *Daemon) runCtx() context.Context {
	d.fl.mu.Lock()
	defer d.fl.mu.Unlock()
	if d.fl.runCtx == nil {
		return context.Background()
	}
	return d.fl.runCtx
}

// fleetInit builds the lock and the fleet reports from the config once;
// a test may have set Lock or Fleet itself.
func (d *Daemon) fleetInit() {
	d.fl.once.Do(func() {
		if d.Lock == nil && d.Config.Lock != nil {
			switch l := d.Config.Lock; {
			case l.Etcd != nil:
				d.Lock = &fleet.Etcd{Conn: l.Etcd.Conn(), Group: l.Etcd.Group, Max: l.Etcd.Max, TTL: l.Etcd.TTL.D(), ID: d.MachineID, Report: d.lockReport}
			case l.FleetLock != nil:
				d.Lock = &fleet.FleetLock{URL: l.FleetLock.URL, Group: l.FleetLock.Group, ID: d.MachineID, Client: d.client(), Report: d.lockReport}
			}
		}
		if d.Fleet == nil {
			if e := d.Config.ReportEtcd(); e != nil {
				d.Fleet = &fleet.Fleet{Conn: *e}
			}
		}
	})
}

// lockReport prints a lock's lines: locking and locked are the updater's
// state (status shows them); released and releasing are said only, the
// machine's state is its bless or rollback.
func (d *Daemon) lockReport(state string, kv ...any) {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "err" {
			if s, ok := kv[i+1].(string); ok {
				d.fl.mu.Lock()
				d.fl.lastErr = Redact(s)
				d.fl.mu.Unlock()
			}
		}
	}
	switch state {
	case "locking", "locked":
		d.report(state, kv...)
	default:
		kv = append([]any(nil), kv...)
		for i := 1; i < len(kv); i += 2 {
			if s, ok := kv[i].(string); ok {
				kv[i] = Redact(s)
			}
		}
		bootlog.Event("UPDATE", append([]any{"state", state}, kv...)...)
	}
}

// rebootWithLock starts the wait for the reboot lock (inside the window
// if there is one) and reboots once it is held. It returns at once: the
// wait blocks no request, and a second call while waiting does nothing.
func (d *Daemon) rebootWithLock() error {
	d.fleetInit()
	if d.Lock == nil {
		return fmt.Errorf("reboot: lock without update.lock")
	}
	parent := d.runCtx()
	d.fl.mu.Lock()
	if d.fl.waiting {
		d.fl.mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithCancel(parent)
	d.fl.waiting, d.fl.since, d.fl.lastErr, d.fl.cancel = true, time.Now().UTC(), "", cancel
	d.fl.relGen++
	if d.fl.relCancel != nil {
		d.fl.relCancel()
		d.fl.relCancel = nil
	}
	d.fl.mu.Unlock()
	go func() {
		defer func() {
			cancel()
			d.fl.mu.Lock()
			d.fl.waiting, d.fl.cancel = false, nil
			d.fl.mu.Unlock()
		}()
		// a Release already called ends (cancelled) before the Acquire
		d.fl.relMu.Lock()
		//lint:ignore SA2001 a barrier: a Release runs under relMu
		d.fl.relMu.Unlock()
		t0 := time.Now()
		if err := d.acquireInWindow(ctx); err != nil {
			if ctx.Err() == nil { // else shutting down, or a rollback by hand
				d.report("failed", "err", "reboot lock: "+err.Error())
			}
			return
		}
		d.Metrics().LockWait(time.Since(t0))
		// The version may have failed elsewhere while this machine
		// waited (the holder before it rolled back): held, it gives
		// the lock back and stays.
		// Nothing staged any more, or the wait was ended (a rollback by
		// hand, a halt seen by a check) as the lock came: no reboot.
		v := d.loadStateLocked().Staged
		halted, err := false, error(nil)
		if v != "" && ctx.Err() == nil {
			halted, err = d.haltStaged(ctx, v)
		}
		if v == "" || err != nil || halted || ctx.Err() != nil {
			if err != nil && ctx.Err() == nil {
				d.report("failed", "err", "reboot lock: "+err.Error())
			}
			if rerr := d.Lock.Release(parent); rerr != nil && parent.Err() == nil {
				logrus.WithError(rerr).Warn("updater: cannot release the reboot lock")
			}
			return
		}
		_ = d.rebootNow()
	}()
	return nil
}

// haltStaged is stop-the-line for the staged version: when the fleet
// holds it, the wait for the reboot lock ends and its boot entry goes, so
// that no reboot (a power cut included) starts it; a newer version or
// slate fleet resume and the next check write it again.
func (d *Daemon) haltStaged(ctx context.Context, version string) (bool, error) {
	halted, err := d.haltFor(ctx, version)
	if err != nil || !halted {
		return false, err
	}
	d.stopLockWait()
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.loadState()
	if st.Staged != version {
		return true, nil
	}
	other := partitions.Other(d.Slot)
	err = d.withESP(func(b bootentry.Dir) error {
		e, ok, err := b.SlotEntry(other)
		if err != nil || !ok || e.Version != version {
			return err
		}
		return b.RemoveSlot(other)
	})
	if err != nil {
		return true, fmt.Errorf("stop-the-line: unstage %s: %w", version, err)
	}
	st.Staged = ""
	d.saveState(st)
	return true, nil
}

// acquireInWindow takes the lock; with a window, only inside it: an
// attempt that has not succeeded when the window closes waits for the
// next one.
func (d *Daemon) acquireInWindow(ctx context.Context) error {
	if d.Config.Window == "" {
		return d.Lock.Acquire(ctx)
	}
	from, to, err := configs.ParseWindow(d.Config.Window)
	if err != nil {
		return err
	}
	for {
		now := time.Now().UTC()
		if wait := untilWindow(now, from, to); wait > 0 {
			d.report("staged", "reboot", "lock", "window", d.Config.Window, "in", wait.Round(time.Second).String())
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			continue
		}
		end := windowEnd(now, to)
		wctx, cancel := context.WithDeadline(ctx, end)
		err := d.Lock.Acquire(wctx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		// the window closed first: give back a place taken at its
		// very end, then wait for the next window
		_ = d.Lock.Release(ctx)
	}
}

// windowEnd is the next time the window closes (to: minutes after
// midnight UTC) from inside it.
func windowEnd(now time.Time, to int) time.Time {
	end := time.Date(now.Year(), now.Month(), now.Day(), to/60, to%60, 0, 0, time.UTC)
	if !end.After(now) {
		end = end.Add(24 * time.Hour)
	}
	return end
}

// stopLockWait ends a wait for the lock (rollback by hand, shutdown).
func (d *Daemon) stopLockWait() {
	d.fl.mu.Lock()
	defer d.fl.mu.Unlock()
	if d.fl.cancel != nil {
		d.fl.cancel()
	}
}

// releaseLock gives the reboot lock back in the background: after a
// bless, or on a boot not on trial once the system is healthy (the
// machine rolled back, or rebooted for some other reason with a hold it no
// longer needs). A version staged and waiting for its reboot keeps it.
func (d *Daemon) releaseLock(waitHealthy bool) {
	d.fleetInit()
	if d.Lock == nil {
		return
	}
	parent := d.runCtx()
	d.fl.mu.Lock()
	if d.fl.relCancel != nil {
		d.fl.relCancel() // this one supersedes it
	}
	ctx, cancel := context.WithCancel(parent)
	gen := d.fl.relGen
	d.fl.relCancel = cancel
	d.fl.mu.Unlock()
	go func() {
		defer cancel()
		if waitHealthy {
			if st := d.loadStateLocked(); st.Staged != "" {
				return
			}
			if err := d.healthy(ctx); err != nil {
				if ctx.Err() == nil {
					logrus.WithError(err).Warn("updater: not healthy: the reboot lock is kept")
				}
				return
			}
		}
		// Right before Release, and holding relMu so that a wait for
		// the lock begun from now on acquires only after it: nothing
		// staged, no wait for the lock, none begun since this release
		// was asked for.
		d.fl.relMu.Lock()
		defer d.fl.relMu.Unlock()
		if st := d.loadStateLocked(); st.Staged != "" {
			return
		}
		d.fl.mu.Lock()
		void := d.fl.waiting || d.fl.relGen != gen || ctx.Err() != nil
		d.fl.mu.Unlock()
		if void {
			return
		}
		// The fleet hears of this machine's state (a rollback among
		// it) before the next machine can take the lock: it checks
		// stop-the-line once it holds it.
		d.reportFleet(ctx)
		if err := d.Lock.Release(ctx); err != nil && ctx.Err() == nil {
			logrus.WithError(err).Warn("updater: cannot release the reboot lock")
		}
	}()
}

func (d *Daemon) loadStateLocked() *State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.loadState()
}

// haltFor is stop-the-line: with fleet reports, a version that enough
// machines gave up is not applied until a newer one comes or someone
// runs slate fleet resume. Without reports, nothing halts.
func (d *Daemon) haltFor(ctx context.Context, version string) (bool, error) {
	d.fleetInit()
	if d.Fleet == nil {
		return false, nil
	}
	h, err := d.Fleet.ShouldHalt(ctx, version, d.Config.HaltAfter)
	if err != nil {
		// fail closed: without the fleet's word, a version that may
		// be failing everywhere is not applied
		return false, fmt.Errorf("stop-the-line: %w", err)
	}
	d.fl.mu.Lock()
	defer d.fl.mu.Unlock()
	if h == nil {
		d.fl.halted = ""
		return false, nil
	}
	d.fl.halted = fmt.Sprintf("%s failed on %d machines (%s): held until a newer version or slate fleet resume %s", version, h.Failed, strings.Join(h.Machines, ", "), version)
	d.report("halted", "version", version, "failed", h.Failed)
	return true, nil
}

// reportFleet writes this machine's state for the fleet, with a lease of
// three check intervals so a machine gone quiet disappears.
func (d *Daemon) reportFleet(ctx context.Context) {
	d.fleetInit()
	if d.Fleet == nil {
		return
	}
	st := d.Status()
	host, _ := os.Hostname()
	r := fleet.MachineReport{
		ID: d.MachineID, Hostname: host, Version: d.Version, Slot: d.Slot, State: st.State,
		LastError: st.LastError, LastCheck: st.LastCheck, At: time.Now().UTC(),
		Failed: slices.Sorted(maps.Keys(st.Failed)),
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := d.Fleet.Put(rctx, r, 3*d.Config.CheckInterval.D()); err != nil && ctx.Err() == nil {
		logrus.WithError(redactErr(err)).Warn("updater: fleet report")
	}
}

// fleetStatus adds the fleet's part to a status.
func (d *Daemon) fleetStatus(st *Status) {
	st.MachineID = d.MachineID
	d.fl.mu.Lock()
	defer d.fl.mu.Unlock()
	if d.fl.waiting {
		st.Lock = "waiting for the reboot lock since " + d.fl.since.Format(time.RFC3339)
		if d.Lock != nil {
			st.Lock += " (" + Redact(d.Lock.String()) + ")"
		}
		if d.fl.lastErr != "" {
			st.Lock += ": " + d.fl.lastErr
		}
	}
	st.Halted = d.fl.halted
}
