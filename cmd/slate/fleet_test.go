package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/updater/fleet"
	"github.com/slateos/slate/updater/fleet/fleettest"
)

func runFleet(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newFleetCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestFleetCommands(t *testing.T) {
	ep, _ := fleettest.StartEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := configs.EtcdConn{Endpoints: []string{ep}, Prefix: configs.DefaultLockPrefix}
	if out, err := runFleet(t, "lock", "--etcd", ep); err != nil || !strings.Contains(out, "no lock yet") {
		t.Fatalf("empty lock: %v\n%s", err, out)
	}
	lk := &fleet.Etcd{Conn: conn, ID: "aaaa", Max: 2, Report: func(string, ...any) {}}
	defer lk.Close()
	if err := lk.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := runFleet(t, "lock", "--etcd", ep)
	if err != nil || !strings.Contains(out, "max:       2\navailable: 1\n") || !strings.Contains(out, "aaaa") || !strings.Contains(out, " ago)") {
		t.Errorf("lock:\n%s %v", out, err)
	}
	out, err = runFleet(t, "lock", "--etcd", ep, "--json")
	var js struct {
		Max     int `json:"max"`
		Holders []struct {
			ID    string    `json:"id"`
			Taken time.Time `json:"taken"`
		} `json:"holders"`
	}
	if err != nil || json.Unmarshal([]byte(out), &js) != nil || js.Max != 2 || len(js.Holders) != 1 || js.Holders[0].Taken.IsZero() {
		t.Errorf("lock --json:\n%s %v", out, err)
	}
	if out, err := runFleet(t, "lock", "--etcd", ep, "--release", "aaaa"); err != nil || !strings.Contains(out, "released aaaa") {
		t.Errorf("release: %v %s", err, out)
	}
	if _, err := runFleet(t, "lock", "--etcd", ep, "--release", "aaaa"); err == nil || !strings.Contains(err.Error(), "does not hold") {
		t.Errorf("release of a non-holder: %v", err)
	}
	fl := &fleet.Fleet{Conn: conn}
	defer fl.Close()
	for _, r := range []fleet.MachineReport{
		{ID: "m1", Hostname: "web1", Version: "2.0.0", State: "failed", Failed: []string{"3.0.0"}, LastError: "health check: web"},
		{ID: "m2", Hostname: "web2", Version: "2.0.0", State: "halted"},
		{ID: "m3", Hostname: "web3", Version: "2.0.0", State: "halted"},
	} {
		if err := fl.Put(ctx, r, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	out, err = runFleet(t, "status", "--etcd", ep)
	if err != nil || !strings.Contains(out, "3 machines") || !regexpLine(out, "2.0.0", "halted", "2") || !regexpLine(out, "m1", "web1", "3.0.0", "health check: web") {
		t.Errorf("status:\n%s %v", out, err)
	}
	if out, err := runFleet(t, "status", "--etcd", ep, "--json"); err != nil || !strings.Contains(out, `"machine_id": "m1"`) {
		t.Errorf("status --json:\n%s %v", out, err)
	}
	if out, err := runFleet(t, "resume", "--etcd", ep, "3.0.0"); err != nil || !strings.Contains(out, "resumed 3.0.0") {
		t.Errorf("resume: %v %s", err, out)
	}
	if h, err := fl.ShouldHalt(ctx, "3.0.0", 1); err != nil || h != nil {
		t.Errorf("after resume: %+v %v", h, err)
	}
	if _, err := runFleet(t, "status", "--etcd", "10.0.0.1:2379"); err == nil || !strings.Contains(err.Error(), "--etcd") {
		t.Errorf("a bad endpoint: %v", err)
	}
}

// regexpLine: one line holds every field, in order.
func regexpLine(out string, fields ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		rest, ok := l, true
		for _, f := range fields {
			i := strings.Index(rest, f)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(f):]
		}
		if ok {
			return true
		}
	}
	return false
}

// Another machine's report may carry terminal escapes in any field it
// writes: the status table shows them as spaces.
func TestPrintFleetFiltersReports(t *testing.T) {
	esc := "\x1b]0;owned\x07\x1b[2J\u009b31m"
	st := &fleet.FleetStatus{
		Machines: []fleet.MachineReport{{ID: "m1"}},
		Counts:   map[string]map[string]int{"1.0" + esc: {"failed" + esc: 1}},
		Failed: []fleet.MachineReport{{
			ID: "m1" + esc, Hostname: "host" + esc, Version: "1.0" + esc, State: "failed",
			Failed: []string{"2.0" + esc}, LastError: "boom" + esc,
		}},
	}
	var out bytes.Buffer
	if err := printFleet(&out, st, false); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); strings.ContainsAny(s, "\x1b\x07\u009b") || !strings.Contains(s, "host ") || !strings.Contains(s, "boom ") {
		t.Errorf("escapes reach the terminal:\n%q", s)
	}
}
