package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode"

	"github.com/slateos/slate/internal/redact"
)

// FleetLock speaks Zincati's FleetLock protocol: POST /v1/pre-reboot
// takes a place before the reboot, POST /v1/steady-state gives it back
// once the machine is healthy. Both carry the header
// "fleet-lock-protocol: true" and {"client_params":{"id":...,"group":...}};
// only 200 is success.
type FleetLock struct {
	URL     string // the server's base URL
	Group   string // "default" when empty, as Zincati
	ID      string
	Client  *http.Client // nil: http.DefaultClient
	Report  Reporter
	Backoff Backoff
}

func (f *FleetLock) String() string { return "fleetlock " + strings.TrimSuffix(redact.URL(f.URL), "/") }

func (f *FleetLock) report(state string, kv ...any) {
	r := f.Report
	if r == nil {
		r = Console
	}
	r(state, append([]any{"lock", f.String()}, kv...)...)
}

// maxErrorBody bounds what is read (and shown) of a refusal.
const maxErrorBody = 2048

func (f *FleetLock) group() string {
	if f.Group == "" {
		return "default"
	}
	return f.Group
}

// call makes one request.
func (f *FleetLock) call(ctx context.Context, op string) error {
	body, _ := json.Marshal(map[string]any{"client_params": map[string]string{"id": f.ID, "group": f.group()}})
	u := strings.TrimSuffix(f.URL, "/") + "/v1/" + op
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("fleetlock %s: %w", redact.URL(u), err)
	}
	req.Header.Set("fleet-lock-protocol", "true")
	req.Header.Set("Content-Type", "application/json")
	c := f.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("fleetlock %s: %w", op, redactErr(err))
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	return fmt.Errorf("fleetlock %s: %s: %s", op, resp.Status, describeError(msg))
}

// describeError shows a FleetLock error body: {"kind":..,"value":..} as
// "kind: value", anything else as printable text, bounded.
func describeError(b []byte) string {
	var e struct {
		Kind  string `json:"kind"`
		Value string `json:"value"`
	}
	if json.Unmarshal(b, &e) == nil && e.Kind != "" {
		return Printable(e.Kind + ": " + e.Value)
	}
	if s := Printable(string(bytes.TrimSpace(b))); s != "" {
		return s
	}
	return "(no body)"
}

// Printable is s fit for a terminal: control characters (C0, DEL and
// C1, which carry terminal escapes) become spaces, and it is bounded. It
// is for what another machine or a server wrote.
func Printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// redactErr drops credentials from the URL a transport error names.
func redactErr(err error) error {
	return errors.New(redact.Message(err.Error()))
}

// Acquire calls pre-reboot until the server says 200.
func (f *FleetLock) Acquire(ctx context.Context) error {
	if f.ID == "" {
		return errors.New("reboot lock: this machine has no id (/etc/machine-id)")
	}
	f.report("locking", "id", f.ID, "group", f.group())
	var last string
	err := retry(ctx, f.Backoff, func() error { return f.call(ctx, "pre-reboot") }, func(err error) {
		if msg := err.Error(); msg != last {
			last = msg
			f.report("locking", "id", f.ID, "err", msg)
		}
	})
	if err == nil {
		f.report("locked", "id", f.ID)
	}
	return err
}

// Release calls steady-state until the server says 200 (it answers 200
// when nothing is held too).
func (f *FleetLock) Release(ctx context.Context) error {
	if f.ID == "" {
		return errors.New("reboot lock: this machine has no id (/etc/machine-id)")
	}
	var last string
	err := retry(ctx, f.Backoff, func() error { return f.call(ctx, "steady-state") }, func(err error) {
		if msg := err.Error(); msg != last {
			last = msg
			f.report("releasing", "id", f.ID, "err", msg)
		}
	})
	if err == nil {
		f.report("released", "id", f.ID)
	}
	return err
}
