package updater

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/slateos/slate/internal/bootlog"
	"github.com/slateos/slate/updater/payload"
)

// Metrics are the daemon's Prometheus metrics (update.metrics), in a
// registry of their own: nothing else in the process registers into it,
// and tests read it without a global. Every method is safe on a nil
// *Metrics and from any goroutine.
type Metrics struct {
	reg         *prometheus.Registry
	info        *prometheus.GaugeVec
	state       *prometheus.GaugeVec
	available   *prometheus.GaugeVec
	lastCheck   prometheus.Gauge
	lastSuccess prometheus.Gauge
	checks      prometheus.Counter
	failures    *prometheus.CounterVec
	lockWait    prometheus.Histogram
	wave        prometheus.Gauge

	mu        sync.Mutex
	states    map[string]bool // every state shown, for the one-hot gauge
	availVer  string
	lastState string
}

// states the one-hot gauge always has, so a dashboard sees zeros rather
// than missing series; a state reported later (a new one) is added.
var knownStates = []string{"idle", "checking", "downloading", "verifying", "staged", "trial", "blessed", "failed", "unhealthy", "rollback", "rebooting", "waiting", "paused"}

// failureReason bounds the reason label of slate_update_failures_total:
// a trust reason of a check (payload.Reason*), "error" for any other
// failed check (network, disk, a bad payload), "unhealthy" for a health
// check of a new version that failed.
func failureReason(err error) string {
	if r := payload.ReasonOf(err); r != "" {
		return r
	}
	return "error"
}

// NewMetrics makes the metrics of a daemon running version in slot.
func NewMetrics(version, slot string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "slate_update_info", Help: "The running version and slot (always 1).",
		}, []string{"version", "slot"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "slate_update_state", Help: "The updater's state (1 for the current one, 0 for the others), as in slate update status.",
		}, []string{"state"}),
		available: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "slate_update_available_version_info", Help: "The version the channel offers, from the last verified top manifest (always 1).",
		}, []string{"version"}),
		lastCheck: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "slate_update_last_check_timestamp_seconds", Help: "When the last check of the channel ended (Unix time).",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "slate_update_last_check_success", Help: "1 if the last check of the channel succeeded (including a wait for a rollout wave), 0 if it failed.",
		}),
		checks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "slate_update_checks_total", Help: "Checks of the channel (periodic and asked for).",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slate_update_failures_total", Help: "Failures by reason: channel-expired, channel-rollback, channel-no-expiry, bad-signature, unhealthy, error.",
		}, []string{"reason"}),
		lockWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "slate_update_lock_wait_seconds", Help: "How long the machine waited for the fleet's reboot lock.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8), // 1s to about 4.5h
		}),
		wave: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "slate_update_rollout_wave", Help: "This machine's rollout wave (1-based) for the version the channel offers; 0 before any.",
		}),
		states: map[string]bool{},
	}
	m.reg.MustRegister(m.info, m.state, m.available, m.lastCheck, m.lastSuccess, m.checks, m.failures, m.lockWait, m.wave,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.info.WithLabelValues(version, slot).Set(1)
	for _, r := range []string{payload.ReasonExpired, payload.ReasonRollback, payload.ReasonNoExpiry, payload.ReasonSignature, "unhealthy", "error"} {
		m.failures.WithLabelValues(r)
	}
	for _, s := range knownStates {
		m.states[s] = true
		m.state.WithLabelValues(s).Set(0)
	}
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// LockWait records how long the machine waited for a reboot lock, for the
// reboot lock's code to call once it has the lock (or gave up).
func (m *Metrics) LockWait(d time.Duration) {
	if m == nil {
		return
	}
	m.lockWait.Observe(d.Seconds())
}

func (m *Metrics) setState(state string) {
	if m == nil || state == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if state == m.lastState {
		return
	}
	m.states[state] = true
	for s := range m.states {
		v := 0.0
		if s == state {
			v = 1
		}
		m.state.WithLabelValues(s).Set(v)
	}
	m.lastState = state
}

// reported follows the daemon's reports: the state, and failed health
// checks (failed checks are counted by checked).
func (m *Metrics) reported(state string) {
	if m == nil {
		return
	}
	m.setState(state)
	if state == "unhealthy" {
		m.failures.WithLabelValues("unhealthy").Inc()
	}
}

// checked records the end of a check of the channel.
func (m *Metrics) checked(at time.Time, err error) {
	if m == nil {
		return
	}
	m.checks.Inc()
	m.lastCheck.Set(float64(at.UnixNano()) / 1e9)
	if err != nil {
		m.lastSuccess.Set(0)
		m.failures.WithLabelValues(failureReason(err)).Inc()
	} else {
		m.lastSuccess.Set(1)
	}
}

func (m *Metrics) availableVersion(v string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v == m.availVer {
		return
	}
	m.available.Reset()
	m.available.WithLabelValues(v).Set(1)
	m.availVer = v
}

func (m *Metrics) rolloutWave(w int) {
	if m == nil {
		return
	}
	m.wave.Set(float64(w))
}

// metrics are the daemon's metrics, made on first use.
func (d *Daemon) metrics() *Metrics {
	d.metricsOnce.Do(func() { d.metricsReg = NewMetrics(d.Version, d.Slot) })
	return d.metricsReg
}

// Metrics are the daemon's metrics: the fleet's lock code feeds
// Metrics().LockWait.
func (d *Daemon) Metrics() *Metrics { return d.metrics() }

// metricsRetry is how long the metrics server waits before it tries to
// bind its address again (the address may come up after the daemon, with
// DHCP).
var metricsRetry = 30 * time.Second

// serveMetrics serves the metrics on addr (update.metrics) until ctx ends.
// It never fails the daemon: a bind failure is a console line, and the
// bind is tried again every metricsRetry.
//
//	SLATE-UPDATE metrics=listening addr=127.0.0.1:9100
//	SLATE-UPDATE metrics=failed addr=127.0.0.1:9100 err="listen tcp ...: address already in use"
func (d *Daemon) serveMetrics(ctx context.Context, addr string) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", d.metrics().Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	failed := ""
	for {
		var lc net.ListenConfig
		l, err := lc.Listen(ctx, "tcp", addr)
		if err == nil {
			bootlog.Event("UPDATE", "metrics", "listening", "addr", l.Addr().String())
			failed = ""
			err = srv.Serve(l)
			if errors.Is(err, http.ErrServerClosed) || ctx.Err() != nil {
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		if msg := err.Error(); msg != failed {
			// once per distinct error, not every retry
			bootlog.Event("UPDATE", "metrics", "failed", "addr", addr, "err", msg)
			failed = msg
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(metricsRetry):
		}
	}
}
