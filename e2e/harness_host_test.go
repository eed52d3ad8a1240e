package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestServedPort: the port comes from slate serve's own line, after any
// other line; a server that exits without naming one is an error.
func TestServedPort(t *testing.T) {
	cases := []struct {
		name, out string
		want      int
		wantErr   string
	}{
		{"named", "serving /x on http://127.0.0.1:40123/\n", 40123, ""},
		{"after a warning", "level=warning msg=hm\nserving /x on http://127.0.0.1:8081/\nmore\n", 8081, ""},
		{"never named", "serve: /x is not a folder\n", 0, "without naming its port"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := servedPort(io.NopCloser(strings.NewReader(tc.out)), 10*time.Second)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("servedPort = %d, %v; want an error with %q", p, err, tc.wantErr)
				}
				return
			}
			if err != nil || p != tc.want {
				t.Fatalf("servedPort = %d, %v; want %d", p, err, tc.want)
			}
		})
	}
}

// TestChannelServer: two channels served at once each get a port their
// server holds and answers on.
func TestChannelServer(t *testing.T) {
	needBuild(t)
	a, b := newChannel(t), newChannel(t)
	if a.port == b.port {
		t.Fatalf("both channels on port %d", a.port)
	}
	for _, c := range []*channel{a, b} {
		resp, err := http.Get(c.hostURL() + "manifest.json")
		if err != nil {
			t.Fatalf("GET %s: %v", c.hostURL(), err)
		}
		resp.Body.Close()
		// an empty channel: the server answers, with nothing to serve
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %smanifest.json: %s, want 404 from an empty channel", c.hostURL(), resp.Status)
		}
	}
}
