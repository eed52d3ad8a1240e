package updater

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// The control API: HTTP over a unix socket that only root can reach.
//
//	GET  /v1/status
//	POST /v1/check
//	POST /v1/apply?source=FOLDER|URL
//	POST /v1/rollback
//
// Every answer is a Status as JSON; a failed operation answers 409 with
// {"error": "..."} beside the status.

type answer struct {
	Status
	Error string `json:"error,omitempty"`
}

func (d *Daemon) serve() (*http.Server, error) {
	if err := os.MkdirAll(filepath.Dir(SocketPath), 0o755); err != nil {
		return nil, err
	}
	_ = os.Remove(SocketPath)
	l, err := net.Listen("unix", SocketPath)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(SocketPath, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return srv, nil
}

// Handler is the control API.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, err error) {
		a := answer{Status: d.Status()}
		code := http.StatusOK
		if err != nil {
			a.Error, code = Redact(err.Error()), http.StatusConflict
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(a)
	}
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { reply(w, nil) })
	// A client that hangs up cancels its request (r.Context()): an
	// abandoned check must not go on holding the update.
	mux.HandleFunc("POST /v1/check", func(w http.ResponseWriter, r *http.Request) {
		reply(w, d.Check(r.Context()))
	})
	mux.HandleFunc("POST /v1/apply", func(w http.ResponseWriter, r *http.Request) {
		src := r.URL.Query().Get("source")
		if src == "" {
			reply(w, errors.New("apply: no source given"))
			return
		}
		reply(w, d.ApplyFrom(r.Context(), src))
	})
	mux.HandleFunc("POST /v1/rollback", func(w http.ResponseWriter, r *http.Request) { reply(w, d.Rollback()) })
	return mux
}

// Client talks to the daemon of this machine.
type Client struct {
	Socket string
	// Timeout bounds one call; zero: OpTimeout(op).
	Timeout time.Duration
}

// OpTimeout is how long the client waits for an answer to op: status
// answers at once, a rollback is a rename on the ESP, a check or apply
// may download a root over a slow link.
func OpTimeout(op string) time.Duration {
	switch op {
	case "status":
		return 5 * time.Second
	case "rollback":
		return time.Minute
	default:
		return time.Hour
	}
}

// Do calls one control operation ("status", "check", "apply", "rollback").
// When no answer comes within the timeout, the request is dropped, which
// cancels it in the daemon.
func (c Client) Do(ctx context.Context, op string, source string) (*Status, error) {
	sock := c.Socket
	if sock == "" {
		sock = SocketPath
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = OpTimeout(op)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", sock)
		},
	}}
	method, path := http.MethodPost, "/v1/"+op
	if op == "status" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://slate"+path, nil)
	if err != nil {
		return nil, err
	}
	if source != "" {
		q := req.URL.Query()
		q.Set("source", source)
		req.URL.RawQuery = q.Encode()
	}
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("the updater did not answer %s within %s; the request was cancelled (see slate update status)", op, timeout)
		}
		return nil, fmt.Errorf("reach the updater at %s (is this a slate system with updates configured?): %w", sock, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("the updater did not answer %s within %s; the request was cancelled (see slate update status)", op, timeout)
		}
		return nil, fmt.Errorf("read the updater's answer: %w", err)
	}
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("updater answered %s: %s", resp.Status, b)
	}
	if a.Error != "" {
		return &a.Status, errors.New(a.Error)
	}
	return &a.Status, nil
}
