package updater

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/slateos/slate/updater/payload"
)

// Rollout waves on the machine side: the channel's top manifest may hold
// its version back (payload.Rollout). Each check decides anew whether this
// machine's wave has opened; waiting holds no lock and no job beyond the
// check itself, so status, check and rollback answer as always.

// Place is a machine's place in [0,1) in the rollout of version: the
// first 8 bytes of sha256(machineID + "\x00" + version) as a fraction of
// 2^64. It is stable (the same machine and version give the same place on
// every check and every boot) and different for each version, so the
// same machines are not always the first.
func Place(machineID, version string) float64 {
	sum := sha256.Sum256([]byte(machineID + "\x00" + version))
	// 53 bits: every value is exact as a float64 and below 1.
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
}

// RolloutStatus is this machine's place in the rollout of the version the
// channel offers, in `slate update status`.
type RolloutStatus struct {
	Version string  `json:"version"`
	Wave    int     `json:"wave"`  // 1-based
	Waves   int     `json:"waves"` // how many the rollout has
	Share   int     `json:"share"` // the wave's cumulative share, percent
	Place   float64 `json:"place"` // Place(machine id, version); 1 without a machine id
	// Opens is when the wave opens (the rollout's start plus its after).
	Opens time.Time `json:"opens"`
	Open  bool      `json:"open"`
	// Paused: the publisher paused the channel (slate channel pause).
	Paused   bool      `json:"paused,omitempty"`
	PausedAt time.Time `json:"paused_at,omitzero"`
	// Note says why the place is what it is (no machine id).
	Note string `json:"note,omitempty"`
}

// String is the status line: "1.1.0: wave 2/3 (50%), place 0.4213, opens
// 2026-12-02T10:00:00Z (waiting)".
func (r *RolloutStatus) String() string {
	s := fmt.Sprintf("%s: wave %d/%d (%d%%), place %.4f, opens %s", r.Version, r.Wave, r.Waves, r.Share, r.Place, r.Opens.UTC().Format(time.RFC3339))
	switch {
	case r.Paused:
		s += ", paused since " + r.PausedAt.UTC().Format(time.RFC3339)
	case r.Open:
		s += " (open)"
	default:
		s += " (waiting)"
	}
	if r.Note != "" {
		s += "; " + r.Note
	}
	return s
}

// now is the daemon's clock.
func (d *Daemon) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// rolloutOf places this machine in m's rollout at time now. A manifest
// without a rollout is one wave of 100%, open since it was published. A machine without an id is in the last wave: it cannot be
// placed, and the last wave is the safe end.
func (d *Daemon) rolloutOf(m *payload.Manifest, now time.Time) RolloutStatus {
	r := m.Rollout
	if r == nil {
		r = &payload.Rollout{Waves: payload.AllAtOnce, Start: m.Published}
	}
	rs := RolloutStatus{Version: m.Version, Waves: len(r.Waves), Paused: r.Paused, PausedAt: r.PausedAt}
	i := len(r.Waves) - 1
	if d.MachineID == "" {
		rs.Place, rs.Note = 1, "no machine id: in the last wave"
	} else {
		rs.Place = Place(d.MachineID, m.Version)
		i = r.WaveOf(rs.Place)
	}
	rs.Wave, rs.Share, rs.Opens = i+1, r.Waves[i].Share, r.Opens(i)
	// A machine whose clock is before the start waits, whatever the
	// wave: it cannot tell how far the rollout is. Without a rollout
	// (a channel as before waves) nothing waits, whatever the clock.
	rs.Open = m.Rollout == nil || !now.Before(rs.Opens)
	return rs
}

// holdForRollout decides at a check whether the newer version m waits for
// this machine's wave or for the channel to be resumed. It records the
// decision in the status and the metrics, and prints a console line once
// per version and decision (not at every check):
//
//	SLATE-UPDATE state=waiting version=V wave=2/3 opens=<RFC 3339>
//	SLATE-UPDATE state=paused version=V
//
// Only a check of the channel waits: an apply by hand (slate update apply)
// is a person's decision and ignores the waves.
func (d *Daemon) holdForRollout(m *payload.Manifest) bool {
	rs := d.rolloutOf(m, d.now())
	d.metrics().rolloutWave(rs.Wave)
	state, kv := "", []any(nil)
	switch {
	case rs.Paused:
		state, kv = "paused", []any{"version", m.Version}
	case !rs.Open:
		state, kv = "waiting", []any{"version", m.Version, "wave", fmt.Sprintf("%d/%d", rs.Wave, rs.Waves), "opens", rs.Opens.UTC().Format(time.RFC3339)}
		if rs.Note != "" {
			kv = append(kv, "note", rs.Note)
		}
	}
	d.smu.Lock()
	d.status.Rollout = &rs
	said := d.rolloutSaid
	key := state + " " + m.Version + " " + rs.Opens.String()
	if state != "" {
		d.rolloutSaid = key
	}
	d.smu.Unlock()
	if state == "" {
		return false
	}
	if said != key {
		d.report(state, kv...)
	} else {
		d.setState(state)
	}
	return true
}

// setState changes the status's state without a console line (a decision
// repeated at every check is printed once).
func (d *Daemon) setState(state string) {
	d.smu.Lock()
	d.status.State, d.status.Percent = state, 0
	d.smu.Unlock()
	d.metrics().setState(state)
}
