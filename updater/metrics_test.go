package updater

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/internal/bootlog"
)

// scrape reads the metrics as Prometheus does, keeping the lines of
// slate_ metrics.
func scrape(t *testing.T, h http.Handler) map[string]string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("scrape: %s %s", res.Status, res.Header.Get("Content-Type"))
	}
	got := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "slate_") {
			i := strings.LastIndexByte(line, ' ')
			got[line[:i]] = line[i+1:]
		}
	}
	if _, ok := got["go_goroutines"]; !ok && !strings.Contains(string(b), "go_goroutines") {
		t.Error("no Go runtime metrics")
	}
	return got
}

func wantMetrics(t *testing.T, step string, got map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		g, err1 := strconv.ParseFloat(got[k], 64)
		w, err2 := strconv.ParseFloat(v, 64)
		if err1 != nil || err2 != nil || g != w {
			t.Errorf("%s: %s = %q, want %q", step, k, got[k], v)
		}
	}
}

// The metrics after a wait for a wave, a failed check, an expired channel
// and a lock wait.
func TestMetrics(t *testing.T) {
	bootlog.SetEvents(io.Discard)
	defer bootlog.SetEvents(nil)
	c := newWaveChannel(t, "34%:0h,100%:1h")
	var late string
	for i := 0; late == ""; i++ {
		if id := fmt.Sprintf("m-%d", i); Place(id, "1.1.0") >= 0.34 {
			late = id
		}
	}
	clk := &clock{t: t0.Add(time.Minute)}
	d := machine(t, c, late, clk)
	h := d.Metrics().Handler()

	wantMetrics(t, "start", scrape(t, h), map[string]string{
		`slate_update_info{slot="a",version="1.0.0"}`: "1",
		`slate_update_checks_total`:                   "0",
		`slate_update_rollout_wave`:                   "0",
		`slate_update_state{state="idle"}`:            "0",
		`slate_update_failures_total{reason="error"}`: "0",
		`slate_update_lock_wait_seconds_count`:        "0",
	})

	if err := d.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantMetrics(t, "wait", scrape(t, h), map[string]string{
		`slate_update_checks_total`:                              "1",
		`slate_update_last_check_success`:                        "1",
		`slate_update_last_check_timestamp_seconds`:              fmt.Sprint(clk.t.Unix()),
		`slate_update_rollout_wave`:                              "2",
		`slate_update_state{state="waiting"}`:                    "1",
		`slate_update_state{state="checking"}`:                   "0",
		`slate_update_available_version_info{version="1.1.0"}`:   "1",
		`slate_update_failures_total{reason="error"}`:            "0",
		`slate_update_failures_total{reason="channel-expired"}`:  "0",
		`slate_update_info{slot="a",version="1.0.0"}`:            "1",
		`slate_update_failures_total{reason="bad-signature"}`:    "0",
		`slate_update_failures_total{reason="channel-rollback"}`: "0",
	})

	d.Config.Channel = "http://127.0.0.1:1/stable/" // refused
	clk.t = clk.t.Add(time.Minute)
	if err := d.Check(context.Background()); err == nil {
		t.Fatal("a refused channel checked fine")
	}
	wantMetrics(t, "failure", scrape(t, h), map[string]string{
		`slate_update_checks_total`:                   "2",
		`slate_update_last_check_success`:             "0",
		`slate_update_last_check_timestamp_seconds`:   fmt.Sprint(clk.t.Unix()),
		`slate_update_failures_total{reason="error"}`: "1",
		`slate_update_state{state="failed"}`:          "1",
		`slate_update_state{state="waiting"}`:         "0",
	})

	d.Config.Channel = c.dir
	clk.t = t0.Add(8 * 24 * time.Hour) // past the week's expiry
	if err := d.Check(context.Background()); err == nil {
		t.Fatal("an expired channel checked fine")
	}
	wantMetrics(t, "expired", scrape(t, h), map[string]string{
		`slate_update_checks_total`:                             "3",
		`slate_update_failures_total{reason="channel-expired"}`: "1",
		`slate_update_failures_total{reason="error"}`:           "1",
	})

	d.Metrics().LockWait(90 * time.Second)
	wantMetrics(t, "lock wait", scrape(t, h), map[string]string{
		`slate_update_lock_wait_seconds_count`:            "1",
		`slate_update_lock_wait_seconds_sum`:              "90",
		`slate_update_lock_wait_seconds_bucket{le="64"}`:  "0",
		`slate_update_lock_wait_seconds_bucket{le="256"}`: "1",
	})
	var nilMetrics *Metrics
	nilMetrics.LockWait(time.Second) // safe before the daemon has any
}

// The server: a bind failure is a console line and the daemon goes on;
// once the address is free it is bound and serves /metrics.
func TestMetricsServer(t *testing.T) {
	var console syncBuffer
	bootlog.SetEvents(&console)
	defer bootlog.SetEvents(nil)
	old := metricsRetry
	metricsRetry = 50 * time.Millisecond
	defer func() { metricsRetry = old }()

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := busy.Addr().String()
	d := &Daemon{Version: "1.0.0", Slot: "b"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.serveMetrics(ctx, addr); close(done) }()
	waitLine := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(console.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q on the console:\n%s", want, console.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitLine("SLATE-UPDATE metrics=failed addr=" + addr + " err=")
	time.Sleep(200 * time.Millisecond) // several retries
	if n := strings.Count(console.String(), "metrics=failed"); n != 1 {
		t.Errorf("%d failure lines for one error, want 1", n)
	}
	busy.Close()
	waitLine("SLATE-UPDATE metrics=listening addr=" + addr + "\n")
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), `slate_update_info{slot="b",version="1.0.0"} 1`) {
		t.Errorf("served:\n%s", b)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the metrics server did not stop with its context")
	}
}
