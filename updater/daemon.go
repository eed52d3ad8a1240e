package updater

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/bootlog"
	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/partitions"
	"github.com/slateos/slate/supervisor"
	"github.com/slateos/slate/updater/payload"
)

// Paths on a running slate system.
const (
	PublicKeyPath = "/usr/lib/slate/update.pub"
	SocketPath    = "/run/slate/update.sock"
	ESPMount      = "/run/slate/esp"
)

// Daemon is `slate updated`.
type Daemon struct {
	Name    string // image name
	Version string // running version
	Slot    string // running slot
	Config  configs.Update
	// PublicKeys are the keys of the running image (its update.pub):
	// a version is trusted only if one of them signed it, so a newer
	// image that drops a key revokes it.
	PublicKeys []ed25519.PublicKey
	Machine    *Machine
	StateFile  string
	// StatusFile is the supervisor's status (health checks).
	StatusFile string
	// Reboot asks PID 1 to reboot.
	Reboot func() error
	Client *http.Client

	mu     sync.Mutex // one operation at a time
	smu    sync.Mutex // guards status
	status Status
	// blessPending: healthy, but the bless did not get written yet.
	blessPending bool
}

// Status is what `slate update status` shows.
type Status struct {
	State     string             `json:"state"` // idle, checking, downloading, verifying, staged, trial, blessed, failed
	Percent   int                `json:"percent,omitempty"`
	Name      string             `json:"name"`
	Version   string             `json:"version"`
	Slot      string             `json:"slot"`
	Current   SlotInfo           `json:"current"` // the running slot's entry
	Other     SlotInfo           `json:"other"`
	Staged    string             `json:"staged,omitempty"`
	Channel   string             `json:"channel,omitempty"`
	LastCheck time.Time          `json:"last_check,omitzero"`
	LastError string             `json:"last_error,omitempty"`
	Failed    map[string]Failure `json:"failed,omitempty"`
}

// SlotInfo describes a slot from its boot entry.
type SlotInfo struct {
	Slot    string `json:"slot"`
	Version string `json:"version,omitempty"`
	State   string `json:"state"` // good, trying, bad, empty
	Entry   string `json:"entry,omitempty"`
}

// report prints a SLATE-UPDATE line and updates the status.
func (d *Daemon) report(state string, kv ...any) {
	bootlog.Event("UPDATE", append([]any{"state", state}, kv...)...)
	d.smu.Lock()
	defer d.smu.Unlock()
	d.status.State = state
	d.status.Percent = 0
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "percent" {
			if p, ok := kv[i+1].(int); ok {
				d.status.Percent = p
			}
		}
	}
}

// Status returns the current status, with the slots read from the ESP.
func (d *Daemon) Status() Status {
	d.smu.Lock()
	st := d.status
	d.smu.Unlock()
	st.Name, st.Version, st.Slot, st.Channel = d.Name, d.Version, d.Slot, d.Config.Channel
	if s, err := LoadState(d.StateFile); err == nil {
		st.LastCheck, st.LastError, st.Failed, st.Staged = s.LastCheck, s.LastError, s.Failed, s.Staged
	}
	st.Current = SlotInfo{Slot: d.Slot, State: "empty"}
	st.Other = SlotInfo{Slot: partitions.Other(d.Slot), State: "empty"}
	_ = d.withESP(func(b partitions.BootDir) error {
		for _, si := range []*SlotInfo{&st.Current, &st.Other} {
			if e, ok, err := b.SlotEntry(si.Slot); err == nil && ok {
				si.Version, si.State, si.Entry = e.Version, e.State(), e.File
			}
		}
		return nil
	})
	if st.State == "" {
		st.State = "idle"
	}
	return st
}

func (d *Daemon) withESP(fn func(partitions.BootDir) error) error {
	return d.Machine.WithESP(fn)
}

func (d *Daemon) loadState() *State {
	s, err := LoadState(d.StateFile)
	if err != nil {
		logrus.WithError(err).Warn("updater: state unreadable, starting over")
		return &State{Failed: map[string]Failure{}}
	}
	return s
}

func (d *Daemon) saveState(s *State) {
	if err := s.Save(d.StateFile); err != nil {
		logrus.WithError(err).Error("updater: cannot save state")
	}
}

// Run is the daemon's life: settle the boot (note a failed update, or
// bless this slot once healthy), then check the channel now and at every
// interval.
func (d *Daemon) Run(ctx context.Context) error {
	srv, err := d.serve()
	if err != nil {
		return err
	}
	defer srv.Close()
	d.settle(ctx)
	retry := 5 * time.Second
	for {
		wait := jitter(d.Config.CheckInterval.D(), rand.Int64N)
		if d.blessPending {
			d.mu.Lock()
			d.bless()
			d.mu.Unlock()
		}
		if err := d.Check(ctx); err != nil && ctx.Err() == nil {
			logrus.WithError(err).Warn("updater: check failed")
			// The network may not be up yet after boot, or the server
			// is down for a moment: try again soon, backing off to the
			// normal interval.
			wait = min(wait, retry)
			retry = min(2*retry, d.Config.CheckInterval.D())
		} else {
			retry = 5 * time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// settle looks at the boot entries once after boot.
func (d *Daemon) settle(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.loadState()
	other := partitions.Other(d.Slot)
	var mine, theirs partitions.EntryFile
	var haveMine, haveTheirs bool
	err := d.withESP(func(b partitions.BootDir) error {
		var err error
		if mine, haveMine, err = b.SlotEntry(d.Slot); err != nil {
			return err
		}
		theirs, haveTheirs, err = b.SlotEntry(other)
		return err
	})
	if err != nil {
		d.report("failed", "err", err.Error())
		return
	}
	// The other slot holds a newer version that is bad: the update to it
	// did not come up (panic, failed init, hang or failed health check)
	// and systemd-boot fell back to us.
	if haveTheirs && theirs.Bad() && payload.CompareVersions(theirs.Version, d.Version) > 0 {
		if _, known := st.Failed[theirs.Version]; !known {
			st.Failed[theirs.Version] = Failure{Reason: "it did not boot healthy within its tries; back on " + d.Version, At: time.Now().UTC()}
		}
		d.report("failed", "version", theirs.Version, "running", d.Version, "reason", st.Failed[theirs.Version].Reason)
		st.Staged = ""
		d.saveState(st)
	} else if st.Staged != "" && payload.CompareVersions(st.Staged, d.Version) <= 0 {
		st.Staged = ""
		d.saveState(st)
	}
	if !haveMine || !mine.Counted {
		d.report("idle", "version", d.Version, "slot", d.Slot)
		return
	}
	// We are on trial: bless once healthy.
	d.report("trial", "version", d.Version, "slot", d.Slot, "entry", mine.File)
	if err := d.healthy(ctx); err != nil {
		st := d.loadState()
		st.Failed[d.Version] = Failure{Reason: "health check: " + err.Error(), At: time.Now().UTC()}
		st.LastError = err.Error()
		d.saveState(st)
		d.report("unhealthy", "version", d.Version, "err", err.Error())
		if haveTheirs && !theirs.Bad() {
			// Give up on this version now rather than after every try.
			_ = d.withESP(func(b partitions.BootDir) error { _, err := b.MarkBad(d.Slot); return err })
			d.report("rollback", "version", d.Version, "to", theirs.Version)
			if d.Reboot != nil {
				_ = d.Reboot()
			}
		}
		return
	}
	d.bless()
}

// bless removes the running entry's counter; on failure it is tried again
// before every check, so a passing system is never left on trial.
func (d *Daemon) bless() {
	var blessed string
	err := d.withESP(func(b partitions.BootDir) error {
		var err error
		blessed, err = b.Bless(d.Slot)
		return err
	})
	if err != nil {
		d.blessPending = true
		d.report("failed", "version", d.Version, "err", "bless: "+err.Error())
		return
	}
	d.blessPending = false
	st := d.loadState()
	st.Blessed, st.Staged = d.Version, ""
	d.saveState(st)
	d.report("blessed", "version", d.Version, "slot", d.Slot, "entry", blessed)
}

// healthy waits for SLATE-READY, then for the required services to stay
// up for the hold time, then runs the check commands.
func (d *Daemon) healthy(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Minute)
	var st *supervisor.Status
	for {
		s, err := supervisor.ReadStatus(d.StatusFile)
		if err == nil && s.Ready {
			st = s
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the system did not reach SLATE-READY within 10 minutes")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	want := map[string]supervisor.ServiceStatus{}
	for _, name := range d.Config.Health.Services {
		s, ok := st.Service(name)
		if !ok {
			return fmt.Errorf("service %s is not known to the supervisor", name)
		}
		want[name] = s
	}
	end := time.Now().Add(d.Config.Health.Hold.D())
	for {
		s, err := supervisor.ReadStatus(d.StatusFile)
		if err != nil {
			return err
		}
		for name, first := range want {
			now, _ := s.Service(name)
			if now.State != "started" || now.Starts != first.Starts || now.PID != first.PID {
				return fmt.Errorf("service %s did not stay up (state %s, %d starts)", name, now.State, now.Starts)
			}
		}
		if time.Now().After(end) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	for _, hc := range d.Config.Health.Commands {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := exec.CommandContext(cctx, hc.Command, hc.Args...).CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("check %s failed: %v: %s", hc.Command, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// ErrNothingNew means the channel has no version newer than the running one.
var ErrNothingNew = errors.New("no newer version")

// Check looks at the channel and applies a newer version.
func (d *Daemon) Check(ctx context.Context) error {
	src, err := NewSource(d.Config.Channel, d.Client)
	if err != nil {
		return err
	}
	return d.update(ctx, src, false)
}

// ApplyFrom applies the version in a folder or at a URL (air-gapped
// machines), with the same verification.
func (d *Daemon) ApplyFrom(ctx context.Context, loc string) error {
	src, err := NewSource(loc, d.Client)
	if err != nil {
		return err
	}
	return d.update(ctx, src, true)
}

func (d *Daemon) update(ctx context.Context, src Source, explicit bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.loadState()
	st.LastCheck = time.Now().UTC()
	fail := func(err error) error {
		st.LastError = err.Error()
		d.saveState(st)
		d.report("failed", append(reasonOf(err), "err", err.Error())...)
		return err
	}
	d.report("checking", "source", src.String())
	m, err := d.fetchTrusted(ctx, src, explicit)
	if err != nil {
		return fail(err)
	}
	if m.Name != d.Name {
		return fail(fmt.Errorf("%s offers image %q, this machine runs %q", src, m.Name, d.Name))
	}
	if payload.CompareVersions(m.Version, d.Version) <= 0 {
		st.LastError = ""
		d.saveState(st)
		d.report("idle", "version", d.Version, "latest", m.Version)
		if explicit {
			return fmt.Errorf("%s holds %s, not newer than the running %s", src, m.Version, d.Version)
		}
		return nil
	}
	if f, bad := st.Failed[m.Version]; bad && !explicit {
		d.report("idle", "version", d.Version, "skipped", m.Version, "reason", "failed before: "+f.Reason)
		return nil
	}
	if st.Staged == m.Version && !explicit {
		d.report("staged", "version", m.Version)
		return d.rebootPerPolicy(ctx)
	}
	t, err := d.Machine.Target(d.Slot)
	if err != nil {
		return fail(err)
	}
	err = d.withESP(func(b partitions.BootDir) error {
		t.Boot = b
		running, ok, err := b.SlotEntry(d.Slot)
		if err != nil {
			return err
		}
		switch {
		case len(m.KernelArgs) > 0: // the new version's own command line
			t.Options = EntryOptions(strings.Join(m.KernelArgs, " "), t.Slot, t.PartUUID)
		case ok:
			t.Options = EntryOptions(running.Options, t.Slot, t.PartUUID)
		default:
			t.Options = EntryOptions(d.Machine.Cmdline, t.Slot, t.PartUUID)
		}
		return Apply(ctx, src, m, t.Target, d.report)
	})
	if err != nil {
		return fail(fmt.Errorf("apply %s: %w", m.Version, err))
	}
	delete(st.Failed, m.Version)
	st.Staged, st.LastError = m.Version, ""
	d.saveState(st)
	return d.rebootPerPolicy(ctx)
}

func (d *Daemon) rebootPerPolicy(ctx context.Context) error {
	switch d.Config.Reboot {
	case configs.RebootOff:
		return nil
	case configs.RebootWindow:
		from, to, err := configs.ParseWindow(d.Config.Window)
		if err != nil {
			return err
		}
		wait := untilWindow(time.Now().UTC(), from, to)
		d.report("staged", "reboot", "window", "in", wait.Round(time.Second).String())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	d.report("rebooting", "from", d.Version)
	if d.Reboot == nil {
		return nil
	}
	return d.Reboot()
}

// untilWindow is how long from now until the daily window [from, to)
// (minutes after midnight UTC; to < from wraps past midnight) opens; zero
// inside it.
func untilWindow(now time.Time, from, to int) time.Duration {
	m := now.Hour()*60 + now.Minute()
	in := (from < to && m >= from && m < to) || (from > to && (m >= from || m < to))
	if in {
		return 0
	}
	start := time.Date(now.Year(), now.Month(), now.Day(), from/60, from%60, 0, 0, time.UTC)
	if !start.After(now) {
		start = start.Add(24 * time.Hour)
	}
	return start.Sub(now)
}

// Rollback makes the other slot boot next, if it holds a good version: the
// running slot's entry is marked bad.
func (d *Daemon) Rollback() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	other := partitions.Other(d.Slot)
	return d.withESP(func(b partitions.BootDir) error {
		e, ok, err := b.SlotEntry(other)
		if err != nil {
			return err
		}
		if !ok || e.Bad() {
			return fmt.Errorf("slot %s holds no good version to roll back to", other)
		}
		if _, err := b.MarkBad(d.Slot); err != nil {
			return err
		}
		st := d.loadState()
		st.Failed[d.Version] = Failure{Reason: "rolled back by hand", At: time.Now().UTC()}
		d.saveState(st)
		d.report("rollback", "version", d.Version, "to", e.Version, "slot", other)
		return nil
	})
}
