package configs

import (
	"errors"
	"strings"
	"testing"
)

func TestUpdateMetrics(t *testing.T) {
	base := "name: u\nversion: 1.0.0\nupdate:\n  channel: http://x/y\n  public_key: k\n"
	for _, addr := range []string{"127.0.0.1:9100", "[::1]:9100", ":9100", "mgmt.example.com:9100", "10.0.0.5:65535"} {
		s, err := Parse([]byte(base+"  metrics: \""+addr+"\"\n"), "u.yaml")
		if err != nil || s.Update.Metrics != addr {
			t.Errorf("metrics %q: %v", addr, err)
		}
	}
	for _, tc := range []struct{ addr, msg string }{
		{"127.0.0.1", "not host:port"},
		{"127.0.0.1:", "must be a number from 1 to 65535"},
		{"127.0.0.1:0", "must be a number from 1 to 65535"},
		{"127.0.0.1:65536", "must be a number from 1 to 65535"},
		{"127.0.0.1:http", "must be a number"},
		{"127.0.0.1:09100", "must be a number"},
		{"a b:9100", "not an address or a name"},
		{"http://127.0.0.1:9100", "not host:port"},
	} {
		_, err := Parse([]byte(base+"  metrics: \""+tc.addr+"\"\n"), "u.yaml")
		var e *Error
		if !errors.As(err, &e) || !strings.Contains(err.Error(), "$.update.metrics") || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("metrics %q: err = %v, want $.update.metrics and %q", tc.addr, err, tc.msg)
		}
	}
}
