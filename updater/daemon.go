package updater

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/bootdisk"
	"github.com/slateos/slate/internal/bootentry"
	"github.com/slateos/slate/internal/bootlog"
	"github.com/slateos/slate/internal/fetch"
	"github.com/slateos/slate/internal/run/supervisor"
	"github.com/slateos/slate/partitions"
	"github.com/slateos/slate/updater/fleet"
	"github.com/slateos/slate/updater/payload"
)

// Paths on a running slate system.
const (
	PublicKeyPath = "/usr/lib/slate/update.pub"
	SocketPath    = "/run/slate/update.sock"
)

// Daemon is `slate updated`.
//
// Locking: mu guards the boot entries and the state file, and is held only
// for the moments they change, never across a network wait, a download or
// a sleep, so `slate update status` and `rollback` always answer at once.
// One update (check or apply) runs at a time: a second check is refused
// with ErrBusy; an apply asked for by hand waits, as long as its client
// does.
type Daemon struct {
	Name    string // image name
	Version string // running version
	Slot    string // running slot
	Config  configs.Update
	// PublicKeys are the keys of the running image (its update.pub):
	// a version is trusted only if one of them signed it, so a newer
	// image that drops a key revokes it.
	PublicKeys []ed25519.PublicKey
	Disk       *bootdisk.Disk
	StateFile  string
	// StatusFile is the supervisor's status (health checks).
	StatusFile string
	// Containers are the image's containers that the health gate covers
	// besides Config.Health.Services: those whose restart is not never.
	Containers []string
	// Reboot asks PID 1 to reboot.
	Reboot func() error
	// Client fetches from channels; nil: one with the timeouts of
	// Config.Timeouts.
	Client *http.Client
	// StagingDir holds the kernel and initramfs of an update while the
	// root is written (on STATE); empty: beside the state file.
	StagingDir string
	// MachineID is the machine's /etc/machine-id: its identity in a
	// fleet (reboot locks, rollout waves, fleet reports).
	MachineID string
	// Now is the clock of rollout decisions and freshness checks
	// (tests); nil is time.Now.
	Now func() time.Time
	// Lock is the fleet's reboot lock and Fleet its reports (nil: built
	// from Config.Lock and Config.ReportEtcd; see lock.go).
	Lock  fleet.Lock
	Fleet *fleet.Fleet

	fl     fleetState
	mu     sync.Mutex // boot entries and state file
	smu    sync.Mutex // guards status, the job fields, rebootTimer
	status Status
	// job is the update running now ("" none, trial: a health check),
	// cancelJob stops it, jobDone is closed when it ends, jobs holds the
	// one token.
	job         string
	trial       bool
	cancelJob   context.CancelFunc
	jobDone     chan struct{}
	jobs        chan struct{}
	rebootTimer *time.Timer
	// rebooting: a reboot was asked for; no check or apply starts after
	// it (one would write the slot the machine is about to boot).
	rebooting  bool
	clientOnce sync.Once
	// blessPending: healthy, but the bless did not get written yet.
	blessPending bool
	// rolloutSaid is the last rollout decision printed (rollout.go).
	rolloutSaid string
	metricsOnce sync.Once
	metricsReg  *Metrics
}

// ErrBusy is returned when an update is asked for while another runs.
var ErrBusy = errors.New("the updater is busy")

// Timeouts are the network timeouts of the daemon.
func (d *Daemon) Timeouts() fetch.Timeouts {
	t := d.Config.Timeouts
	return fetch.Timeouts{Connect: t.Connect.D(), Header: t.Header.D(), Idle: t.Idle.D()}.OrDefault()
}

func (d *Daemon) client() *http.Client {
	d.clientOnce.Do(func() {
		if d.Client == nil {
			d.Client = fetch.NewClient(d.Timeouts())
		}
	})
	return d.Client
}

// begin claims the one update slot for job; the returned context is
// cancelled by end, by Rollback and with ctx. With wait, it waits for a
// running check or apply to end (as long as ctx lasts) rather than fail
// with ErrBusy; a health check (trial) is never waited for: it may last
// minutes and an update must not overwrite the fallback meanwhile.
func (d *Daemon) begin(ctx context.Context, job string, wait, trial bool) (context.Context, func(), error) {
	d.smu.Lock()
	if d.jobs == nil {
		d.jobs = make(chan struct{}, 1)
	}
	jobs := d.jobs
	for {
		if d.rebooting && !trial {
			d.smu.Unlock()
			return nil, nil, fmt.Errorf("%w: the machine is rebooting", ErrBusy)
		}
		select {
		case jobs <- struct{}{}:
			jctx, cancel := context.WithCancel(ctx)
			d.job, d.trial, d.cancelJob, d.jobDone = job, trial, cancel, make(chan struct{})
			done := d.jobDone
			d.smu.Unlock()
			return jctx, func() {
				cancel()
				// the token goes back under smu, where waiters look
				// at it, before they are woken
				d.smu.Lock()
				d.job, d.trial, d.cancelJob, d.jobDone = "", false, nil, nil
				<-jobs
				d.smu.Unlock()
				close(done)
			}, nil
		default:
		}
		if !wait || d.trial {
			err := fmt.Errorf("%w: %s is running (state %s); see slate update status", ErrBusy, d.job, d.status.State)
			d.smu.Unlock()
			return nil, nil, err
		}
		running, done := d.job, d.jobDone
		d.smu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("waiting for %s to end: %w", running, ctx.Err())
		}
		d.smu.Lock()
	}
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
	// Rollout is this machine's place in the rollout of the newer
	// version the channel offers, from the last check that found one.
	Rollout   *RolloutStatus `json:"rollout,omitempty"`
	MachineID string         `json:"machine_id,omitempty"`
	// Lock says the daemon waits for the fleet's reboot lock; Halted
	// that stop-the-line holds a version back.
	Lock   string `json:"lock,omitempty"`
	Halted string `json:"halted,omitempty"`
}

// SlotInfo describes a slot from its boot entry.
type SlotInfo struct {
	Slot    string `json:"slot"`
	Version string `json:"version,omitempty"`
	State   string `json:"state"` // good, trying, bad, empty
	Entry   string `json:"entry,omitempty"`
	// Note says why an empty slot is empty (an update failed while
	// writing it) or that it is being written.
	Note string `json:"note,omitempty"`
}

// report prints a SLATE-UPDATE line and updates the status. Every
// string value is redacted: errors name channel URLs.
func (d *Daemon) report(state string, kv ...any) {
	kv = append([]any(nil), kv...)
	for i := 1; i < len(kv); i += 2 {
		if s, ok := kv[i].(string); ok {
			kv[i] = Redact(s)
		}
	}
	bootlog.Event("UPDATE", append([]any{"state", state}, kv...)...)
	d.metrics().reported(state)
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
// It takes no lock an update holds for long: it answers at once.
func (d *Daemon) Status() Status {
	d.smu.Lock()
	st := d.status
	job := d.job
	d.smu.Unlock()
	st.Name, st.Version, st.Slot, st.Channel = d.Name, d.Version, d.Slot, Redact(d.Config.Channel)
	s, err := LoadState(d.StateFile)
	if err == nil {
		st.LastCheck, st.LastError, st.Failed, st.Staged = s.LastCheck, Redact(s.LastError), s.Failed, s.Staged
	}
	st.Current = SlotInfo{Slot: d.Slot, State: "empty"}
	st.Other = SlotInfo{Slot: partitions.Other(d.Slot), State: "empty"}
	_ = d.withESP(func(b bootentry.Dir) error {
		for _, si := range []*SlotInfo{&st.Current, &st.Other} {
			if e, ok, err := b.SlotEntry(si.Slot); err == nil && ok {
				si.Version, si.State, si.Entry = e.Version, e.State(), e.File
			}
		}
		return nil
	})
	if s != nil && st.Other.State == "empty" {
		switch {
		case s.Writing != nil && s.Writing.Slot == st.Other.Slot && job != "":
			st.Other.Note = "being written with " + s.Writing.Version
		case s.Lost != nil && s.Lost.Slot == st.Other.Slot:
			st.Other.Note = Redact(s.Lost.Describe())
		}
	}
	if st.State == "" {
		st.State = "idle"
	}
	d.fleetStatus(&st)
	return st
}

func (d *Daemon) withESP(fn func(bootentry.Dir) error) error {
	return d.Disk.WithESP(func(dir string) error { return fn(bootentry.Dir{Path: dir}) })
}

// loadState reads the state; call it with mu held when the state is
// written back.
func (d *Daemon) loadState() *State {
	s, err := LoadState(d.StateFile)
	if err != nil {
		logrus.WithError(err).Warn("updater: state unreadable, starting over")
		return &State{Failed: map[string]Failure{}}
	}
	return s
}

func (d *Daemon) saveState(s *State) {
	s.LastError = Redact(s.LastError)
	for v, f := range s.Failed {
		f.Reason = Redact(f.Reason)
		s.Failed[v] = f
	}
	for _, w := range []*SlotWrite{s.Writing, s.Lost} {
		if w != nil {
			w.Error = Redact(w.Error)
		}
	}
	if err := s.Save(d.StateFile); err != nil {
		logrus.WithError(err).Error("updater: cannot save state")
	}
}

// editState changes the state file under mu.
func (d *Daemon) editState(fn func(*State)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.loadState()
	fn(st)
	d.saveState(st)
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
	defer d.stopReboot()
	if d.Config.Metrics != "" {
		mctx, stop := context.WithCancel(ctx)
		defer stop()
		go d.serveMetrics(mctx, d.Config.Metrics)
	}
	defer d.stopLockWait()
	d.fleetStart(ctx)
	d.settle(ctx)
	retry := 5 * time.Second
	for {
		wait := jitter(d.Config.CheckInterval.D(), rand.Int64N)
		if d.blessPending {
			d.bless()
		}
		if err := d.Check(ctx); errors.Is(err, ErrBusy) {
			// an update asked for by hand is running
		} else if err != nil && ctx.Err() == nil {
			logrus.WithError(redactErr(err)).Warn("updater: check failed")
			// The network may not be up yet after boot, or the server
			// is down for a moment: try again soon, backing off to the
			// normal interval.
			wait = min(wait, retry)
			retry = min(2*retry, d.Config.CheckInterval.D())
		} else {
			retry = 5 * time.Second
		}
		d.reportFleet(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// settle looks at the boot entries once after boot. The health wait runs
// without mu: a rollback by hand may come meanwhile, and wins.
func (d *Daemon) settle(ctx context.Context) {
	other := partitions.Other(d.Slot)
	var mine, theirs bootentry.File
	var haveMine, haveTheirs bool
	d.mu.Lock()
	st := d.loadState()
	err := d.withESP(func(b bootentry.Dir) error {
		var err error
		if mine, haveMine, err = b.SlotEntry(d.Slot); err != nil {
			return err
		}
		theirs, haveTheirs, err = b.SlotEntry(other)
		return err
	})
	if err != nil {
		d.mu.Unlock()
		d.report("failed", "err", err.Error())
		return
	}
	changed := false
	// A write that was going on when the machine went down: the slot
	// holds its new version only if the flip was reached.
	if w := st.Writing; w != nil {
		if e := theirs; w.Slot == other && haveTheirs && e.Version == w.Version || w.Slot == d.Slot {
			st.Writing = nil
		} else {
			w.Error = "interrupted (power cut or restart)"
			st.Lost, st.Writing = w, nil
		}
		changed = true
	}
	if st.Lost != nil && (st.Lost.Slot == d.Slot || haveTheirs && st.Lost.Slot == other) {
		st.Lost, changed = nil, true
	}
	// The other slot holds a newer version that is bad: the update to it
	// did not come up (panic, failed init, hang or failed health check)
	// and systemd-boot fell back to us.
	if haveTheirs && theirs.Bad() && payload.CompareVersions(theirs.Version, d.Version) > 0 {
		if _, known := st.Failed[theirs.Version]; !known {
			st.Failed[theirs.Version] = Failure{Reason: "it did not boot healthy within its tries; back on " + d.Version, At: time.Now().UTC()}
		}
		d.report("failed", "version", theirs.Version, "running", d.Version, "reason", st.Failed[theirs.Version].Reason)
		st.Staged, changed = "", true
	} else if st.Staged != "" && payload.CompareVersions(st.Staged, d.Version) <= 0 {
		st.Staged, changed = "", true
	}
	if changed {
		d.saveState(st)
	}
	d.mu.Unlock()
	if !haveMine || !mine.Counted {
		d.report("idle", "version", d.Version, "slot", d.Slot)
		d.releaseLock(true)
		return
	}
	// We are on trial: bless once healthy. No update runs meanwhile: it
	// would overwrite the slot to fall back to.
	jctx, end, err := d.begin(ctx, "the health check of "+d.Version, false, true)
	if err != nil {
		return
	}
	defer end()
	d.report("trial", "version", d.Version, "slot", d.Slot, "entry", mine.File)
	if err := d.healthy(jctx); err != nil {
		if jctx.Err() != nil {
			// shutting down, or rolled back by hand meanwhile
			return
		}
		d.editState(func(st *State) {
			st.Failed[d.Version] = Failure{Reason: "health check: " + err.Error(), At: time.Now().UTC()}
			st.LastError = err.Error()
		})
		d.report("unhealthy", "version", d.Version, "err", err.Error())
		if haveTheirs && !theirs.Bad() {
			// Give up on this version now rather than after every try.
			d.mu.Lock()
			merr := d.withESP(func(b bootentry.Dir) error { _, err := b.MarkBad(d.Slot); return err })
			d.mu.Unlock()
			if merr != nil {
				// Not a rollback: the entry keeps its tries, and
				// systemd-boot falls back once they are used up.
				d.report("failed", "version", d.Version, "err", "mark bad: "+merr.Error())
				return
			}
			d.report("rollback", "version", d.Version, "to", theirs.Version)
			// the fleet hears of the failure now, not after the
			// rollback's boot: stop-the-line holds the others sooner
			d.reportFleet(ctx)
			d.smu.Lock()
			d.rebooting = true
			d.smu.Unlock()
			if d.Reboot != nil {
				_ = d.Reboot()
			}
		}
		return
	}
	d.bless()
}

// bless removes the running entry's counter; on failure it is tried again
// before every check, so a passing system is never left on trial. An entry
// marked bad meanwhile (rollback by hand) stays bad.
func (d *Daemon) bless() {
	d.mu.Lock()
	defer d.mu.Unlock()
	var blessed string
	rolledBack := false
	err := d.withESP(func(b bootentry.Dir) error {
		e, ok, err := b.SlotEntry(d.Slot)
		if err != nil {
			return err
		}
		if ok && e.Bad() {
			rolledBack = true
			return nil
		}
		blessed, err = b.Bless(d.Slot)
		return err
	})
	if rolledBack {
		d.blessPending = false
		return
	}
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
	d.releaseLock(false)
}

// healthy waits for SLATE-READY, then for the required services and
// containers to stay up for the hold time, then for those with a health
// check to be healthy (a failed check fails at once), then runs the check
// commands.
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
	names := append([]string(nil), d.Config.Health.Services...)
	for _, c := range d.Containers {
		if !slices.Contains(names, c) {
			names = append(names, c)
		}
	}
	want := map[string]supervisor.ServiceStatus{}
	for _, name := range names {
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
		waiting := ""
		for _, name := range names {
			first := want[name]
			now, _ := s.Service(name)
			if now.State != "started" || now.Starts != first.Starts || now.PID != first.PID {
				return fmt.Errorf("service %s did not stay up (state %s, %d starts)", name, now.State, now.Starts)
			}
			switch now.Health {
			case supervisor.HealthUnhealthy:
				return fmt.Errorf("service %s is unhealthy: %s", name, now.HealthReason)
			case supervisor.HealthStarting:
				if waiting == "" {
					waiting = name
				}
			}
		}
		if time.Now().After(end) && waiting == "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("service %s did not pass its health check within 10 minutes", waiting)
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
			return fmt.Errorf("check %s failed: %w: %s", hc.Command, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// ErrNothingNew means the channel has no version newer than the running one.
var ErrNothingNew = errors.New("no newer version")

// Check looks at the channel and applies a newer version.
func (d *Daemon) Check(ctx context.Context) error {
	err := d.check(ctx)
	if !errors.Is(err, ErrBusy) {
		d.metrics().checked(d.now(), err)
	}
	return err
}

func (d *Daemon) check(ctx context.Context) error {
	src, err := NewSourceIdle(d.Config.Channel, d.client(), d.Timeouts().Idle)
	if err != nil {
		return redactErr(err)
	}
	return redactErr(d.update(ctx, src, false))
}

// ApplyFrom applies the version in a folder or at a URL (air-gapped
// machines), with the same verification.
func (d *Daemon) ApplyFrom(ctx context.Context, loc string) error {
	src, err := NewSourceIdle(loc, d.client(), d.Timeouts().Idle)
	if err != nil {
		return redactErr(err)
	}
	return redactErr(d.update(ctx, src, true))
}

func (d *Daemon) stagingDir() string {
	if d.StagingDir != "" {
		return d.StagingDir
	}
	return filepath.Join(filepath.Dir(d.StateFile), "staging")
}

func (d *Daemon) update(ctx context.Context, src Source, explicit bool) error {
	what := "a check of the channel"
	if explicit {
		what = "an apply from " + src.String()
	}
	// An apply asked for by hand waits for a running check (its client
	// bounds the wait); a check finds the update busy and says so.
	ctx, end, err := d.begin(ctx, what, explicit, false)
	if err != nil {
		return err
	}
	defer end()
	checked := time.Now().UTC()
	fail := func(err error) error {
		err = redactErr(err)
		if d.runCtx().Err() != nil {
			// Cut short by the daemon's own stop: not a failure of
			// the update. The last error stays what it was; a slot
			// left half written is found by the next start (settle).
			return err
		}
		d.editState(func(st *State) {
			st.LastCheck, st.LastError = checked, err.Error()
			// The slot's entry was removed and writing began: its old
			// content is gone.
			if w := st.Writing; w != nil {
				w.Error = err.Error()
				st.Lost, st.Writing = w, nil
			}
		})
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
		d.editState(func(st *State) { st.LastCheck, st.LastError = checked, "" })
		d.report("idle", "version", d.Version, "latest", m.Version)
		if explicit {
			return fmt.Errorf("%s holds %s, not newer than the running %s", src, m.Version, d.Version)
		}
		return nil
	}
	st := d.loadState()
	if f, bad := st.Failed[m.Version]; bad && !explicit {
		d.editState(func(st *State) { st.LastCheck = checked })
		d.report("idle", "version", d.Version, "skipped", m.Version, "reason", "failed before: "+f.Reason)
		return nil
	}
	if st.Staged == m.Version && !explicit {
		// Stop-the-line holds a staged version too: it may have
		// failed elsewhere since it was written.
		if halted, err := d.haltStaged(ctx, m.Version); err != nil {
			return fail(err)
		} else if halted {
			d.editState(func(st *State) { st.LastCheck, st.LastError = checked, "" })
			return nil
		}
		d.editState(func(st *State) { st.LastCheck = checked })
		d.report("staged", "version", m.Version)
		return d.rebootPerPolicy()
	}
	// Not yet this machine's wave, or the channel is paused: a decision,
	// not a wait; the next check decides again.
	if !explicit && d.holdForRollout(m) {
		d.editState(func(st *State) { st.LastCheck, st.LastError = checked, "" })
		return nil
	}
	if halted, err := d.haltFor(ctx, m.Version); err != nil {
		if !explicit {
			return fail(err)
		}
		// An apply by hand is a person's decision, as a halt is no
		// stop for it: without the fleet's word (an air-gapped apply,
		// etcd down) it says so and goes on.
		d.report("checking", "source", src.String(), "version", m.Version, "warn", redactErr(err).Error()+": applied by hand anyway")
	} else if halted && !explicit {
		d.editState(func(st *State) { st.LastCheck, st.LastError = checked, "" })
		return nil
	}
	t, err := idleTarget(d.Disk, d.Slot)
	if err != nil {
		return fail(err)
	}
	t.Staging = d.stagingDir()
	// Right before the first byte reaches the idle root partition:
	// under mu, and only if nothing (a rollback) came in between, the
	// slot's entry goes and the state says the slot is being written.
	t.BeforeWrite = func(b bootentry.Dir) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return err
		}
		if e, ok, err := b.SlotEntry(d.Slot); err != nil {
			return err
		} else if ok && e.Bad() {
			return fmt.Errorf("slot %s was marked bad (rolled back): not writing slot %s", d.Slot, t.Slot)
		}
		st := d.loadState()
		st.Writing = &SlotWrite{Slot: t.Slot, Version: m.Version, At: time.Now().UTC()}
		d.saveState(st)
		if err := b.RemoveSlot(t.Slot); err != nil {
			return fmt.Errorf("remove slot %s's entry: %w", t.Slot, err)
		}
		return nil
	}
	t.Flip = func(flip func() error) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return err
		}
		return flip()
	}
	err = d.withESP(func(b bootentry.Dir) error {
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
			t.Options = EntryOptions(d.Disk.Cmdline, t.Slot, t.PartUUID)
		}
		return Apply(ctx, src, m, t.Target, d.report)
	})
	if err != nil {
		return fail(fmt.Errorf("apply %s: %w", m.Version, err))
	}
	d.editState(func(st *State) {
		delete(st.Failed, m.Version)
		st.LastCheck, st.Staged, st.LastError, st.Writing = checked, m.Version, "", nil
		if st.Lost != nil && st.Lost.Slot == t.Slot {
			st.Lost = nil
		}
	})
	return d.rebootPerPolicy()
}

// rebootPerPolicy reboots now, schedules the reboot for the window, or
// leaves the staged version for the next reboot. It never waits: the wait
// for a window is a timer, so no request and no lock hangs on it.
func (d *Daemon) rebootPerPolicy() error {
	switch d.Config.Reboot {
	case configs.RebootOff:
		return nil
	case configs.RebootLock:
		return d.rebootWithLock()
	case configs.RebootWindow:
		from, to, err := configs.ParseWindow(d.Config.Window)
		if err != nil {
			return err
		}
		wait := untilWindow(time.Now().UTC(), from, to)
		if wait > 0 {
			d.smu.Lock()
			scheduled := d.rebootTimer != nil
			if !scheduled {
				d.rebootTimer = time.AfterFunc(wait, func() { _ = d.rebootNow() })
			}
			d.smu.Unlock()
			if !scheduled {
				d.report("staged", "reboot", "window", "in", wait.Round(time.Second).String())
			}
			return nil
		}
	}
	return d.rebootNow()
}

func (d *Daemon) rebootNow() error {
	d.smu.Lock()
	d.rebooting = true
	d.smu.Unlock()
	d.report("rebooting", "from", d.Version)
	if d.Reboot == nil {
		return nil
	}
	err := d.Reboot()
	if err != nil {
		// PID 1 did not take the request: the daemon goes on
		d.smu.Lock()
		d.rebooting = false
		d.smu.Unlock()
	}
	return err
}

func (d *Daemon) stopReboot() {
	d.smu.Lock()
	defer d.smu.Unlock()
	if d.rebootTimer != nil {
		d.rebootTimer.Stop()
		d.rebootTimer = nil
	}
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
// running slot's entry is marked bad. It never waits for an update: one
// that has not begun writing the other slot is cancelled; one that has
// leaves no version there to roll back to.
func (d *Daemon) Rollback() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	other := partitions.Other(d.Slot)
	var to string
	err := d.withESP(func(b bootentry.Dir) error {
		e, ok, err := b.SlotEntry(other)
		if err != nil {
			return err
		}
		if !ok || e.Bad() {
			msg := fmt.Sprintf("slot %s holds no good version to roll back to", other)
			if st := d.loadState(); st.Writing != nil && st.Writing.Slot == other {
				msg += " (an update to " + st.Writing.Version + " is writing it)"
			}
			return errors.New(msg)
		}
		if _, err := b.MarkBad(d.Slot); err != nil {
			return fmt.Errorf("mark slot %s bad: %w", d.Slot, err)
		}
		to = e.Version
		return nil
	})
	if to == "" {
		if err == nil {
			err = errors.New("rollback: nothing was changed")
		}
		return fmt.Errorf("rollback: %w", err)
	}
	// Marked bad: an update that would write the other slot must not,
	// and a staged one no longer waits for the reboot lock.
	d.stopLockWait()
	d.smu.Lock()
	if d.cancelJob != nil {
		d.cancelJob()
	}
	d.smu.Unlock()
	st := d.loadState()
	st.Failed[d.Version] = Failure{Reason: "rolled back by hand", At: time.Now().UTC()}
	d.saveState(st)
	d.report("rollback", "version", d.Version, "to", to, "slot", other)
	if err != nil {
		// marked bad, but the ESP did not unmount cleanly
		return fmt.Errorf("rollback to %s: %w", to, err)
	}
	return nil
}
