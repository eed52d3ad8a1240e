package supervisor

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/slateos/slate/internal/imageinfo"
)

// UnitInfo is one line of `slate containers` or `slate status`.
type UnitInfo struct {
	Name string `json:"name"`
	// Kind is "service" or "container" (slate status only).
	Kind string `json:"kind,omitempty"`
	// Digest is a container image's manifest digest.
	Digest string `json:"digest,omitempty"`
	// State is the supervisor's (ServiceStatus), "unknown" when the
	// supervisor does not list the container.
	State    string `json:"state"`
	Restarts int    `json:"restarts"`
	// Since is when the state began; UptimeSeconds is set while it runs
	// (state started).
	Since         time.Time `json:"since,omitzero"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	Memory        uint64    `json:"memory"`
	CPUUsec       uint64    `json:"cpu_usec"`
	OOMKills      uint64    `json:"oom_kills"`
	Health        string    `json:"health,omitempty"`
	Reason        string    `json:"reason,omitempty"`
}

// Containers joins the image's containers with the supervisor's status
// (nil when there is none: every state is unknown), in image order.
func Containers(st *Status, cs []imageinfo.Container, now time.Time) []UnitInfo {
	out := make([]UnitInfo, 0, len(cs))
	for _, c := range cs {
		ci := UnitInfo{Name: c.Name, Digest: c.Digest, State: "unknown"}
		if st != nil {
			if s, ok := st.Service(c.Name); ok {
				ci.fill(s, now)
			}
		}
		out = append(out, ci)
	}
	return out
}

// Units lists every unit of the status, services and containers, in the
// supervisor's order.
func Units(st *Status, now time.Time) []UnitInfo {
	out := make([]UnitInfo, 0, len(st.Services))
	for _, s := range st.Services {
		u := UnitInfo{Name: s.Name, Kind: "service"}
		if s.Kind != "" {
			u.Kind = s.Kind
		}
		u.fill(s, now)
		out = append(out, u)
	}
	return out
}

func (u *UnitInfo) fill(s ServiceStatus, now time.Time) {
	u.State, u.Since, u.Memory, u.CPUUsec, u.OOMKills = s.State, s.Since, s.Memory, s.CPUUsec, s.OOMKills
	u.Health, u.Reason = s.Health, s.Reason
	u.Restarts = max(s.Starts-1, 0)
	if s.State == "started" && !s.Since.IsZero() {
		u.UptimeSeconds = int64(max(now.Sub(s.Since), 0) / time.Second)
	}
}

// WriteContainers writes list as a table (with the image column), or as
// JSON with asJSON.
func WriteContainers(w io.Writer, list []UnitInfo, asJSON bool) error {
	return writeUnits(w, list, asJSON, true)
}

// WriteUnits writes list as a table (with the kind column), or as JSON.
func WriteUnits(w io.Writer, list []UnitInfo, asJSON bool) error {
	return writeUnits(w, list, asJSON, false)
}

func writeUnits(w io.Writer, list []UnitInfo, asJSON, images bool) error {
	if asJSON {
		b, err := json.MarshalIndent(list, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	second := "KIND"
	if images {
		second = "IMAGE"
	}
	fmt.Fprintln(tw, "NAME\t"+second+"\tSTATE\tRESTARTS\tUPTIME\tMEMORY\tCPU\tHEALTH")
	for _, c := range list {
		up := "-"
		if c.State == "started" {
			up = (time.Duration(c.UptimeSeconds) * time.Second).String()
		}
		health := c.Health
		if health == "" {
			health = "-"
		}
		state := c.State
		if c.Reason != "" {
			state += " (" + c.Reason + ")"
		}
		col := c.Kind
		if images {
			col = shortDigest(c.Digest)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", c.Name, col, state, c.Restarts, up,
			humanBytes(c.Memory), (time.Duration(c.CPUUsec) * time.Microsecond).Round(time.Millisecond), health)
	}
	return tw.Flush()
}

// shortDigest is "sha256:" and 12 hex digits, as docker shows image IDs.
func shortDigest(d string) string {
	const n = len("sha256:") + 12
	if len(d) > n {
		return d[:n]
	}
	if d == "" {
		return "-"
	}
	return d
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
