package updater

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/run/supervisor"
)

func writeStatus(t *testing.T, path string, svcs ...supervisor.ServiceStatus) {
	t.Helper()
	b, err := json.Marshal(supervisor.Status{Version: "1.0.0", Slot: "a", Ready: true, Services: svcs})
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// The health gate covers the image's containers and waits for their
// health checks.
func TestHealthGateContainers(t *testing.T) {
	since := time.Now().UTC()
	web := func(health string) supervisor.ServiceStatus {
		return supervisor.ServiceStatus{Name: "web", Kind: supervisor.KindContainer, State: "started", PID: 7, Starts: 1, Since: since, Health: health}
	}
	svc := supervisor.ServiceStatus{Name: "api", State: "started", PID: 8, Starts: 1, Since: since}
	for _, tc := range []struct {
		name   string
		status []supervisor.ServiceStatus
		later  []supervisor.ServiceStatus // written after 1.5 s (after, when set)
		after  time.Duration
		err    string
	}{
		{"no check, up", []supervisor.ServiceStatus{svc, web("")}, nil, 0, ""},
		{"healthy", []supervisor.ServiceStatus{svc, web(supervisor.HealthHealthy)}, nil, 0, ""},
		{"unknown container", []supervisor.ServiceStatus{svc}, nil, 0, "service web is not known"},
		{"unhealthy", []supervisor.ServiceStatus{svc, web(supervisor.HealthUnhealthy)}, nil, 0, "service web is unhealthy"},
		{"becomes healthy after the hold", []supervisor.ServiceStatus{svc, web(supervisor.HealthStarting)},
			[]supervisor.ServiceStatus{svc, web(supervisor.HealthHealthy)}, 0, ""},
		{"becomes unhealthy", []supervisor.ServiceStatus{svc, web(supervisor.HealthStarting)},
			[]supervisor.ServiceStatus{svc, web(supervisor.HealthUnhealthy)}, 0, "unhealthy"},
		{"restarted", []supervisor.ServiceStatus{svc, web(supervisor.HealthHealthy)},
			[]supervisor.ServiceStatus{svc, {Name: "web", State: "restarting", Starts: 1}}, 300 * time.Millisecond, "did not stay up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := &Daemon{StatusFile: filepath.Join(t.TempDir(), "status.json"), Containers: []string{"web"}}
			d.Config.Health.Services = []string{"api"}
			d.Config.Health.Hold = configs.Duration(time.Second)
			writeStatus(t, d.StatusFile, tc.status...)
			done := make(chan struct{})
			if tc.later != nil {
				after := tc.after
				if after == 0 {
					after = 1500 * time.Millisecond
				}
				go func() {
					defer close(done)
					time.Sleep(after)
					writeStatus(t, d.StatusFile, tc.later...)
				}()
			} else {
				close(done)
			}
			defer func() { <-done }()
			begin := time.Now()
			err := d.healthy(context.Background())
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("healthy: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("healthy: %v, want %q", err, tc.err)
			}
			if tc.later != nil && tc.err == "" && time.Since(begin) < 1500*time.Millisecond {
				t.Errorf("the gate passed after %v, before the check did", time.Since(begin))
			}
		})
	}
}
