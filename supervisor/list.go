package supervisor

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/slateos/slate/imageinfo"
)

// ContainerInfo is one line of `slate containers`.
type ContainerInfo struct {
	Name string `json:"name"`
	// Digest is the image's manifest digest.
	Digest string `json:"digest"`
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
func Containers(st *Status, cs []imageinfo.Container, now time.Time) []ContainerInfo {
	out := make([]ContainerInfo, 0, len(cs))
	for _, c := range cs {
		ci := ContainerInfo{Name: c.Name, Digest: c.Digest, State: "unknown"}
		if st != nil {
			if s, ok := st.Service(c.Name); ok {
				ci.State, ci.Since, ci.Memory, ci.CPUUsec, ci.OOMKills = s.State, s.Since, s.Memory, s.CPUUsec, s.OOMKills
				ci.Health, ci.Reason = s.Health, s.Reason
				ci.Restarts = max(s.Starts-1, 0)
				if s.State == "started" && !s.Since.IsZero() {
					ci.UptimeSeconds = int64(max(now.Sub(s.Since), 0) / time.Second)
				}
			}
		}
		out = append(out, ci)
	}
	return out
}

// WriteContainers writes list as a table, or as JSON with asJSON.
func WriteContainers(w io.Writer, list []ContainerInfo, asJSON bool) error {
	if asJSON {
		b, err := json.MarshalIndent(list, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tIMAGE\tSTATE\tRESTARTS\tUPTIME\tMEMORY\tCPU\tHEALTH")
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", c.Name, shortDigest(c.Digest), state, c.Restarts, up,
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
