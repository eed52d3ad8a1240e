package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/slateos/slate/configs"
)

// MachineReport is what a machine says of itself at
// <prefix>/slate/machines/<id>, under a lease: a machine that stops
// reporting disappears from the fleet's view.
type MachineReport struct {
	ID        string    `json:"machine_id"`
	Hostname  string    `json:"hostname,omitempty"`
	Version   string    `json:"version"`
	Slot      string    `json:"slot,omitempty"`
	State     string    `json:"state"`
	LastError string    `json:"last_error,omitempty"`
	LastCheck time.Time `json:"last_check,omitzero"`
	// Failed are the versions this machine gave up (rolled back from):
	// stop-the-line counts them.
	Failed []string  `json:"failed,omitempty"`
	At     time.Time `json:"at"`
}

// Bounds of what is read back.
const (
	maxReport   = 16 << 10
	maxMachines = 10000
)

// Fleet is the fleet's reports and resume markers in one etcd.
type Fleet struct {
	Conn   configs.EtcdConn
	Client *clientv3.Client // nil: dialled from Conn on first use
	once   sync.Once
	lock   Etcd // its client and prefix helpers
}

// etcd is the lock's client and helpers, set from Conn and Client on
// first use: the daemon's reports and its stop-the-line checks may call
// at once, and Conn and Client are not to change after.
func (f *Fleet) etcd() *Etcd {
	f.once.Do(func() {
		f.lock.Conn = f.Conn
		if f.Client != nil {
			f.lock.Client = f.Client
		}
	})
	return &f.lock
}

// Close closes a client Fleet dialled itself.
func (f *Fleet) Close() error {
	if f.Client != nil {
		return nil
	}
	return f.lock.Close()
}

func (f *Fleet) machinesPrefix() string { return f.etcd().prefix() + "/slate/machines/" }
func (f *Fleet) resumeKey(v string) string {
	return f.etcd().prefix() + "/slate/resume/" + v
}

// Put writes r with a lease of ttl (refreshed by the next Put).
func (f *Fleet) Put(ctx context.Context, r MachineReport, ttl time.Duration) error {
	if r.ID == "" {
		return errors.New("fleet report: this machine has no id (/etc/machine-id)")
	}
	e := f.etcd()
	cli, err := e.client()
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, e.requestTimeout())
	defer cancel()
	lease, err := cli.Grant(rctx, max(int64(ttl/time.Second), 10))
	if err != nil {
		return fmt.Errorf("fleet report to %s: lease: %w", e, explain(err))
	}
	b, _ := json.Marshal(r)
	if _, err := cli.Put(rctx, f.machinesPrefix()+r.ID, string(b), clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("fleet report to %s: %w", e, explain(err))
	}
	return nil
}

// Machines reads every report, sorted by id; a report that is not valid
// is returned as a machine in state "unreadable" rather than hidden.
func (f *Fleet) Machines(ctx context.Context) ([]MachineReport, error) {
	e := f.etcd()
	cli, err := e.client()
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, e.requestTimeout())
	defer cancel()
	p := f.machinesPrefix()
	resp, err := cli.Get(rctx, p, clientv3.WithPrefix(), clientv3.WithLimit(maxMachines))
	if err != nil {
		return nil, fmt.Errorf("read the fleet's reports from %s: %w", e, explain(err))
	}
	var out []MachineReport
	for _, kv := range resp.Kvs {
		id := strings.TrimPrefix(string(kv.Key), p)
		var r MachineReport
		if len(kv.Value) > maxReport || json.Unmarshal(kv.Value, &r) != nil || r.ID != id {
			out = append(out, MachineReport{ID: Printable(id), State: "unreadable"})
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// FailedOn counts the machines that report version as failed.
func FailedOn(ms []MachineReport, version string) (n int, ids []string) {
	for _, m := range ms {
		if slices.Contains(m.Failed, version) {
			ids = append(ids, m.ID)
		}
	}
	return len(ids), ids
}

// Resume lets the fleet apply version again despite its failures.
func (f *Fleet) Resume(ctx context.Context, version string) error {
	e := f.etcd()
	cli, err := e.client()
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, e.requestTimeout())
	defer cancel()
	b := fmt.Appendf(nil, `{"resumed":%q}`, time.Now().UTC().Format(time.RFC3339))
	if _, err := cli.Put(rctx, f.resumeKey(version), string(b)); err != nil {
		return fmt.Errorf("resume %s in %s: %w", version, e, explain(err))
	}
	return nil
}

// Resumed says whether version was resumed.
func (f *Fleet) Resumed(ctx context.Context, version string) (bool, error) {
	e := f.etcd()
	cli, err := e.client()
	if err != nil {
		return false, err
	}
	rctx, cancel := context.WithTimeout(ctx, e.requestTimeout())
	defer cancel()
	resp, err := cli.Get(rctx, f.resumeKey(version), clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("read %s from %s: %w", f.resumeKey(version), e, explain(err))
	}
	return resp.Count > 0, nil
}

// Halt is the verdict of stop-the-line for one version.
type Halt struct {
	Version  string
	Failed   int
	Machines []string
}

// ShouldHalt reads the fleet: version is held back when at least
// haltAfter machines reported it failed and nobody resumed it.
func (f *Fleet) ShouldHalt(ctx context.Context, version string, haltAfter int) (*Halt, error) {
	if haltAfter < 1 {
		haltAfter = configs.DefaultHaltAfter
	}
	ms, err := f.Machines(ctx)
	if err != nil {
		return nil, err
	}
	n, ids := FailedOn(ms, version)
	if n < haltAfter {
		return nil, nil
	}
	resumed, err := f.Resumed(ctx, version)
	if err != nil {
		return nil, err
	}
	if resumed {
		return nil, nil
	}
	return &Halt{Version: version, Failed: n, Machines: ids}, nil
}

// FleetStatus is what slate fleet status shows.
type FleetStatus struct {
	Machines []MachineReport `json:"machines"`
	// Counts by version, then state.
	Counts map[string]map[string]int `json:"counts"`
	// Failed are the machines that gave up a version or are failed now.
	Failed []MachineReport `json:"failed,omitempty"`
}

// Status reads the fleet.
func (f *Fleet) Status(ctx context.Context) (*FleetStatus, error) {
	ms, err := f.Machines(ctx)
	if err != nil {
		return nil, err
	}
	st := &FleetStatus{Machines: ms, Counts: map[string]map[string]int{}}
	for _, m := range ms {
		if st.Counts[m.Version] == nil {
			st.Counts[m.Version] = map[string]int{}
		}
		st.Counts[m.Version][m.State]++
		if len(m.Failed) > 0 || m.State == "failed" || m.State == "unhealthy" || m.State == "unreadable" {
			st.Failed = append(st.Failed, m)
		}
	}
	if st.Machines == nil {
		st.Machines = []MachineReport{}
	}
	return st, nil
}
