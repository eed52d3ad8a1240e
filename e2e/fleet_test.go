package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/slateos/slate/internal/qemu"
	"github.com/slateos/slate/updater"
	"github.com/slateos/slate/updater/fleet"
	"github.com/slateos/slate/updater/fleet/fleettest"
	"github.com/slateos/slate/updater/payload"
)

// fleetVM is one machine of a test fleet: its disk, its id (set by an
// Ignition config on its first boot) and the QEMU running it now.
type fleetVM struct {
	name, id, disk, ign string
	vm                  *qemu.VM
}

// start boots the machine (again, after a kill): 512M, QEMU's user
// network, the Ignition config that gives it its id.
func (m *fleetVM) start(t *testing.T) {
	t.Helper()
	m.vm = boot(t, m.disk, qemu.Options{Network: true, Mem: "512M", FwCfg: []qemu.FwCfg{{Name: "opt/com.coreos/config", File: m.ign}}})
}

// newFleet makes n machines from the disk in out, with the ids given.
func newFleet(t *testing.T, out string, ids []string) []*fleetVM {
	t.Helper()
	var ms []*fleetVM
	for i, id := range ids {
		cfg := map[string]any{
			"ignition": map[string]any{"version": "3.4.0"},
			"storage": map[string]any{"files": []any{map[string]any{
				"path": "/etc/machine-id", "mode": 0o444, "contents": map[string]any{"source": "data:," + id + "%0A"}}}},
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, &fleetVM{name: fmt.Sprintf("m%d", i+1), id: id, disk: machine(t, out), ign: writeFile(t, "config.ign", b)})
	}
	return ms
}

// placedIDs returns machine ids (valid, made up) of which exactly first
// fall in the first wave of spec for version, and the rest later.
func placedIDs(t *testing.T, spec, version string, first, later int) []string {
	t.Helper()
	waves, err := payload.ParseRolloutSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	r := &payload.Rollout{Waves: waves}
	var in, out []string
	for i := 1; len(in) < first || len(out) < later; i++ {
		id := fmt.Sprintf("%032x", 0x5a7e000000+i)
		if r.WaveOf(updater.Place(id, version)) == 0 {
			if len(in) < first {
				in = append(in, id)
			}
		} else if len(out) < later {
			out = append(out, id)
		}
	}
	return append(in, out...)
}

// firstOf waits until one of the machines prints its n[i]-th line
// matching re (counted from its boot) and returns its index; a machine
// whose QEMU exits meanwhile fails the test at once.
func firstOf(t *testing.T, ms []*fleetVM, re string, d time.Duration) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	rx := regexp.MustCompile(re)
	type res struct {
		i   int
		err error
	}
	got := make(chan res, len(ms))
	for i, m := range ms {
		go func() {
			_, err := m.vm.WaitForNth(ctx, rx, 1)
			got <- res{i, err}
		}()
	}
	var errs []string
	for range ms {
		r := <-got
		if r.err == nil {
			return r.i
		}
		if ctx.Err() == nil {
			t.Fatalf("%s: %v", ms[r.i].name, r.err)
		}
		errs = append(errs, ms[r.i].name+": "+r.err.Error())
	}
	t.Fatalf("no machine printed %q within %s:\n%s", re, d, strings.Join(errs, "\n"))
	return -1
}

// semWatch records every revision of the semaphore document, as a watch
// from the first revision of etcd sees them.
type semWatch struct {
	mu   sync.Mutex
	revs []semRev
}

type semRev struct {
	rev     int64
	holders []string
	err     error // the document did not parse (the test wrote garbage)
}

func watchSemaphore(t *testing.T, ep, key string) *semWatch {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; cli.Close() })
	w := &semWatch{}
	wch := cli.Watch(ctx, key, clientv3.WithRev(1))
	go func() {
		defer close(done)
		for resp := range wch {
			for _, ev := range resp.Events {
				r := semRev{rev: ev.Kv.ModRevision}
				if ev.Type == clientv3.EventTypeDelete {
					r.holders = []string{}
				} else if s, err := fleet.ParseSemaphore(ev.Kv.Value); err != nil {
					r.err = err
				} else {
					r.holders = s.Holders
				}
				w.mu.Lock()
				w.revs = append(w.revs, r)
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// check fails the test if any revision had more than max holders, and
// returns every holder seen, in the order they first held.
func (w *semWatch) check(t *testing.T, max int) []string {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var seen []string
	for _, r := range w.revs {
		if len(r.holders) > max {
			t.Errorf("revision %d of the semaphore has %d holders (max %d): %v", r.rev, len(r.holders), max, r.holders)
		}
		for _, h := range r.holders {
			if !slices.Contains(seen, h) {
				seen = append(seen, h)
			}
		}
	}
	t.Logf("semaphore: %d revisions, holders in order %v", len(w.revs), seen)
	return seen
}

func etcdPut(t *testing.T, ep, key, val string) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, val); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// guestURL is a loopback URL of the host as guests reach it (10.0.2.2).
func guestURL(t *testing.T, hostURL string) string {
	t.Helper()
	u, err := url.Parse(hostURL)
	if err != nil {
		t.Fatal(err)
	}
	return "http://10.0.2.2:" + u.Port()
}

const fleetWaves = "34%:0h,100%:1h"

// TestFleet: three machines with update.reboot: lock on a real etcd (in
// this process, reached by the guests at 10.0.2.2), locksmith's
// semaphore with max 1, in as few boots as it takes:
//
//   - waves: 1.1.0 is published with 34%:0h,100%:1h: the one machine whose
//     place is in the first wave updates; the two others wait, a pause
//     keeps them even once their wave has opened, a resume lets them go;
//   - a semaphore document that is not JSON: both say so on the console
//     and in status, and neither reboots without the lock;
//   - at most one holder at any revision of the semaphore, and a machine
//     killed while it holds the lock is taken over after the ttl;
//   - stop-the-line: 1.2.0, whose service fails its health check, rolls
//     back on the first machine; the two others hold it and never boot
//     it, and slate fleet status on the host says why.
func TestFleet(t *testing.T) {
	needQEMU(t)
	t.Parallel()
	t0 := time.Now()
	ep, _ := fleettest.StartEtcd(t)
	key := "coreos.com/updateengine/rebootlock/semaphore"
	sem := watchSemaphore(t, ep, key)
	c := newChannel(t)
	lockConf := fmt.Sprintf(`  reboot: lock
  lock:
    etcd:
      endpoints: [%s]
      max: 1
      ttl: 1m
      dial_timeout: 5s
`, guestURL(t, ep))
	spec := func(v, mode string) updSpec {
		return updSpec{version: v, webMode: mode, interval: "10s", update: lockConf, statusEnv: map[string]string{"STATUS_FLEET": "1"}}
	}
	v1 := c.publish(t, spec("1.0.0", ""))
	build(t, c.spec(t, spec("1.1.0", "")), "--version", "1.1.0", "--channel", c.root, "--sign", filepath.Join(c.keys, "update.key"), "--rollout", fleetWaves)
	ms := newFleet(t, v1, placedIDs(t, fleetWaves, "1.1.0", 1, 2))
	for _, m := range ms {
		m.start(t)
	}
	first, rest := ms[0], ms[1:]
	q := regexp.QuoteMeta

	// Waves: the first wave's machine updates, the others wait.
	for _, m := range rest {
		nthMatch(t, m.vm, `^SLATE-UPDATE state=waiting version=1\.1\.0 wave=2/2 opens=`, 1, 4*time.Minute)
	}
	nthMatch(t, first.vm, `^SLATE-UPDATE state=locked lock=.* id=`+first.id, 1, 4*time.Minute)
	nthMatch(t, first.vm, `^SLATE-READY version=1\.1\.0 slot=b$`, 1, 3*time.Minute)
	nthMatch(t, first.vm, `^SLATE-UPDATE state=blessed version=1\.1\.0`, 1, 2*time.Minute)
	nthMatch(t, first.vm, `^SLATE-UPDATE state=released lock=.* id=`+first.id, 1, time.Minute)
	t.Logf("first wave updated: %s", time.Since(t0).Round(time.Second))
	for _, m := range rest {
		noneMatch(t, m.vm.Lines(), `SLATE-UPDATE state=downloading`, m.name+" (second wave) began before its wave opened")
	}

	// Paused, then the second wave opens: still held.
	resign := func(args ...string) {
		t.Helper()
		out, err := slate(t, append(append([]string{"channel"}, args...), "--channel", c.root, "--key", filepath.Join(c.keys, "update.key"))...)
		if err != nil {
			t.Fatalf("slate channel %v: %v\n%s", args, err, out)
		}
		t.Logf("slate channel %s: %s", args[0], strings.TrimSpace(out))
	}
	resign("pause")
	for _, m := range rest {
		nthMatch(t, m.vm, `^SLATE-UPDATE state=paused version=1\.1\.0$`, 1, time.Minute)
	}
	resign("rollout", "34%:0h,100%:1s")
	// each checks twice more (10s) after the new rollout: still paused
	for _, m := range rest {
		nthMatch(t, m.vm, `^SLATE-UPDATE state=checking source=`, countMatches(m.vm.Lines(), `^SLATE-UPDATE state=checking source=`)+2, time.Minute)
		noneMatch(t, m.vm.Lines(), `SLATE-UPDATE state=downloading`, m.name+" began while the channel was paused")
	}

	// A semaphore that is not JSON: reported, and nobody reboots.
	etcdPut(t, ep, key, `{"semaphore":1,"max":1,"holders":[`)
	resign("resume")
	for _, m := range rest {
		nthMatch(t, m.vm, `^SLATE-UPDATE state=staged version=1\.1\.0`, 1, 4*time.Minute)
		nthMatch(t, m.vm, `^SLATE-UPDATE state=locking lock=.* id=`+m.id+` err=".*semaphore document is not locksmith's JSON object`, 1, time.Minute)
		nthMatch(t, m.vm, `STATUS .* lock="waiting for the reboot lock since [^"]*: [^"]*semaphore document is not locksmith's JSON object`, 1, time.Minute)
	}
	for _, m := range rest {
		noneMatch(t, m.vm.Lines(), `SLATE-UPDATE state=(locked|rebooting)`, m.name+" went on without a readable lock")
	}
	etcdPut(t, ep, key, `{"semaphore":1,"max":1,"holders":[]}`)

	// One takes the lock and is killed holding it; after the ttl the
	// other takes it over.
	h := firstOf(t, rest, `^SLATE-UPDATE state=locked lock=`, 3*time.Minute)
	holder, other := rest[h], rest[1-h]
	if err := holder.vm.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	t.Logf("%s killed holding the lock: %s", holder.name, time.Since(t0).Round(time.Second))
	nthMatch(t, other.vm, `^SLATE-UPDATE state=locking lock=.* id=`+other.id+` err="the reboot lock is full: held by `+holder.id+`"`, 1, 2*time.Minute)
	nthMatch(t, other.vm, `^SLATE-UPDATE state=locking lock=.* id=`+other.id+` took_over=`+holder.id+`$`, 1, 4*time.Minute)
	// the waiting machine tries again as the hold turns stale, not a
	// backoff (up to 1m) later
	if d := time.Since(killed); d < 50*time.Second || d > 2*time.Minute {
		t.Errorf("the hold was taken over %s after the kill, want about its ttl (1m)", d.Round(time.Second))
	}
	t.Logf("taken over %s after the kill", time.Since(killed).Round(time.Second))
	nthMatch(t, other.vm, `^SLATE-READY version=1\.1\.0 slot=b$`, 1, 3*time.Minute)
	nthMatch(t, other.vm, `^SLATE-UPDATE state=released lock=.* id=`+other.id, 1, 3*time.Minute)
	// The killed machine comes back (a power cycle) on the version it
	// had staged and blesses it.
	holder.start(t)
	nthMatch(t, holder.vm, `^SLATE-UPDATE state=blessed version=1\.1\.0`, 1, 4*time.Minute)
	if got := sem.check(t, 1); len(got) != 3 {
		t.Errorf("holders %v, want the three machines", got)
	}
	t.Logf("all on 1.1.0: %s", time.Since(t0).Round(time.Second))

	// Stop-the-line: 1.2.0 fails its health check on the first machine
	// to reboot into it; the two others hold it.
	released := map[*fleetVM]int{}
	for _, m := range ms {
		released[m] = countMatches(m.vm.Lines(), `^SLATE-UPDATE state=released `)
	}
	c.publish(t, spec("1.2.0", "crashloop"))
	f := firstOf(t, ms, `^SLATE-READY version=1\.2\.0 `, 6*time.Minute)
	failed := ms[f]
	nthMatch(t, failed.vm, `^SLATE-UPDATE state=unhealthy version=1\.2\.0 err="service web did not stay up`, 1, 3*time.Minute)
	nthMatch(t, failed.vm, `^SLATE-UPDATE state=failed version=1\.2\.0 running=1\.1\.0`, 1, 3*time.Minute)
	nthMatch(t, failed.vm, `^SLATE-UPDATE state=released lock=.* id=`+failed.id, released[failed]+1, 2*time.Minute)
	for i, m := range ms {
		if i == f {
			continue
		}
		nthMatch(t, m.vm, `^SLATE-UPDATE state=halted version=1\.2\.0 failed=1$`, 1, 2*time.Minute)
		nthMatch(t, m.vm, `STATUS .* halted="1\.2\.0 failed on 1 machines \(`+failed.id+`\)`, 1, time.Minute)
	}
	// the others' last check: after the failed machine is back
	for i, m := range ms {
		if i != f {
			nthMatch(t, m.vm, `^SLATE-UPDATE state=halted version=1\.2\.0 failed=1$`, countMatches(m.vm.Lines(), `^SLATE-UPDATE state=halted version=1\.2\.0`)+1, time.Minute)
			noneMatch(t, m.vm.Lines(), `^SLATE-READY version=1\.2\.0`, m.name+" booted the version that failed elsewhere")
			noneMatch(t, after(m.vm.Lines(), `SLATE-UPDATE state=halted`), `^SLATE-UPDATE state=rebooting`, m.name+" rebooted while 1.2.0 was held")
		}
	}
	out, err := slate(t, "fleet", "status", "--etcd", ep)
	if err != nil {
		t.Fatalf("slate fleet status: %v\n%s", err, out)
	}
	t.Logf("slate fleet status:\n%s", out)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^3 machines$`),
		regexp.MustCompile(`(?m)^1\.1\.0\s+halted\s+2$`),
		regexp.MustCompile(`(?m)^` + q(failed.id) + `\s.*\s1\.1\.0\s.*\s1\.2\.0(\s|$)`),
	} {
		if !want.MatchString(out) {
			t.Errorf("slate fleet status does not match %s", want)
		}
	}
	sem.check(t, 1)
	t.Logf("TestFleet: %s", time.Since(t0).Round(time.Second))
}

// TestFleetLockServer: two machines with update.lock.fleetlock, against
// a FleetLock server this test runs (one place, as airlock with max 1).
// While an operator holds the lock both stage 1.1.0, say why they wait on
// the console and in status, and do not reboot; once it is free they
// reboot one after the other, each giving the lock back (steady-state)
// only after its new version is blessed.
func TestFleetLockServer(t *testing.T) {
	needQEMU(t)
	t.Parallel()
	t0 := time.Now()
	srv := &fleettest.FleetLockServer{Group: "web"}
	srv.Hold("operator")
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	c := newChannel(t)
	lockConf := fmt.Sprintf(`  reboot: lock
  lock:
    fleetlock:
      url: %s
      group: web
`, guestURL(t, ts.URL))
	spec := func(v string) updSpec {
		return updSpec{version: v, interval: "10s", update: lockConf, statusEnv: map[string]string{"STATUS_FLEET": "1"}}
	}
	v1 := c.publish(t, spec("1.0.0"))
	c.publish(t, spec("1.1.0"))
	ms := newFleet(t, v1, placedIDs(t, "100%:0h", "1.1.0", 2, 0))
	for _, m := range ms {
		m.start(t)
	}
	for _, m := range ms {
		nthMatch(t, m.vm, `^SLATE-UPDATE state=staged version=1\.1\.0`, 1, 4*time.Minute)
		nthMatch(t, m.vm, `^SLATE-UPDATE state=locking lock=.* id=`+m.id+` err="fleetlock pre-reboot: 409 Conflict: failed_lock: semaphore currently full"$`, 1, time.Minute)
		nthMatch(t, m.vm, `STATUS .* lock="waiting for the reboot lock since [^"]*\(fleetlock http://10\.0\.2\.2:\d+\): fleetlock pre-reboot: 409 Conflict`, 1, time.Minute)
	}
	for _, m := range ms {
		noneMatch(t, m.vm.Lines(), `SLATE-UPDATE state=(locked|rebooting)`, m.name+" went on while the operator held the lock")
	}
	srv.Hold("") // the operator lets go
	f := firstOf(t, ms, `^SLATE-UPDATE state=locked lock=`, 3*time.Minute)
	one, two := ms[f], ms[1-f]
	for _, m := range []*fleetVM{one, two} {
		nthMatch(t, m.vm, `^SLATE-UPDATE state=locked lock=.* id=`+m.id+`$`, 1, 3*time.Minute)
		nthMatch(t, m.vm, `^SLATE-READY version=1\.1\.0 slot=b$`, 1, 3*time.Minute)
		// a FleetLock server answers steady-state whether or not the
		// machine held it: the release that counts is the one after
		// the bless
		waitLine(t, m.vm, `^SLATE-UPDATE state=blessed version=1\.1\.0`, 2*time.Minute)
		waitLine(t, m.vm, `^SLATE-UPDATE state=released lock=.* id=`+m.id+`$`, time.Minute)
	}
	if h := srv.History(); !slices.Equal(h, []string{"operator", "", one.id, "", two.id, ""}) {
		t.Errorf("the lock's holders, in order: %q; want the operator, %s, %s, each let go before the next", h, one.name, two.name)
	}
	if bad := srv.Bad(); len(bad) > 0 {
		t.Errorf("requests that were not FleetLock's: %q", bad)
	}
	t.Logf("TestFleetLockServer: %s", time.Since(t0).Round(time.Second))
}
