package configs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUpdateSection(t *testing.T) {
	base := "name: u\nversion: 1.0.0\nservices:\n  - name: web\n    command: /usr/bin/web\n  - name: once\n    command: /usr/bin/once\n    restart: never\n"
	ok := base + "update:\n  channel: http://10.0.2.2:8080/stable\n  public_key: update.pub\n"
	s, err := Parse([]byte(ok), "u.yaml")
	if err != nil {
		t.Fatal(err)
	}
	u := s.Update
	if u.CheckInterval.D() != time.Hour || u.Reboot != RebootImmediate || u.Health.Hold.D() != 30*time.Second {
		t.Errorf("defaults: %+v", u)
	}
	if len(u.Health.Services) != 1 || u.Health.Services[0] != "web" {
		t.Errorf("default health services %v, want [web]", u.Health.Services)
	}
	if u.Timeouts != (UpdateTimeouts{}) {
		t.Errorf("timeouts %+v, want zero (the updater's defaults)", u.Timeouts)
	}
	if s, err := Parse([]byte(ok+"  timeouts:\n    header: 5s\n    idle: 2m\n"), "u.yaml"); err != nil || s.Update.Timeouts.Header.D() != 5*time.Second || s.Update.Timeouts.Idle.D() != 2*time.Minute {
		t.Errorf("timeouts: %v %+v", err, s)
	}
	if !s.Network.DHCP {
		t.Error("an update section must bring the network up")
	}
	bad := []struct{ body, path, msg string }{
		{"update:\n  public_key: k\n", "$.update.channel", "required"},
		{"update:\n  channel: ftp://x/y\n  public_key: k\n", "$.update.channel", "not an http"},
		{"update:\n  channel: http://x/y\n", "$.update.public_key", "required"},
		{"update:\n  channel: http://x/y\n  public_key: k\n  check_interval: 1s\n", "$.update.check_interval", "too short"},
		{"update:\n  channel: http://x/y\n  public_key: k\n  check_interval: soon\n", "$.update.check_interval", "not a duration"},
		{"update:\n  channel: http://x/y\n  public_key: k\n  reboot: later\n", "$.update.reboot", "reboot policy"},
		{"update:\n  channel: http://x/y\n  public_key: k\n  reboot: window\n  window: 25:00-02:00\n", "$.update.window", "not a window"},
		{"update:\n  channel: http://x/y\n  public_key: k\n  window: 01:00-02:00\n", "$.update.window", "needs reboot: window"},
		{"update:\n  channel: http://x/y\n  public_key: k\n  health:\n    services: [db]\n", "$.update.health.services[0]", "not a service"},
		{"update:\n  channel: http://x/y\n  public_key: k\n  health:\n    commands:\n      - command: check\n", "$.update.health.commands[0].command", "absolute"},
		{"update:\n  channel: http://x/y\n  public_key: k\n  colour: red\n", "$.update.colour", ""},
		{"update:\n  channel: http://x/y\n  public_key: k\n  timeouts:\n    idle: 100ms\n", "$.update.timeouts.idle", "between 1s and 1h"},
		{"update:\n  channel: http://x/y\n  public_key: k\n  timeouts:\n    connect: 2h\n", "$.update.timeouts.connect", "between 1s and 1h"},
		{"update:\n  channel: http://x/y\n  public_key: k\n  timeouts:\n    wait: 1s\n", "$.update.timeouts.wait", ""},
	}
	for _, b := range bad {
		_, err := Parse([]byte(base+b.body), "u.yaml")
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%q: accepted (%v)", b.body, err)
			continue
		}
		if !strings.Contains(err.Error(), b.path) || !strings.Contains(err.Error(), b.msg) {
			t.Errorf("%q: error %q does not name %s / %q", b.body, err, b.path, b.msg)
		}
	}
	s, err = Parse([]byte(ok), "u.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s.Dir = t.TempDir()
	if err := s.CheckFiles(); err == nil || !strings.Contains(err.Error(), "$.update.public_key") {
		t.Errorf("missing public key file: %v", err)
	}
}

func TestParseWindow(t *testing.T) {
	for _, c := range []struct {
		w        string
		from, to int
	}{
		{"02:00-04:30", 120, 270},
		{"08:09-09:08", 8*60 + 9, 9*60 + 8}, // leading zeros are not octal
		{"19:59-23:00", 19*60 + 59, 23 * 60},
		{"00:00-23:59", 0, 23*60 + 59},
	} {
		if f, to, err := ParseWindow(c.w); err != nil || f != c.from || to != c.to {
			t.Errorf("%s: %d %d %v, want %d %d", c.w, f, to, err, c.from, c.to)
		}
	}
	if _, _, err := ParseWindow("22:00-02:00"); err != nil {
		t.Errorf("a window over midnight: %v", err)
	}
	for _, w := range []string{"", "2:00-4:00", "02:00-02:00", "24:00-01:00", "02:00"} {
		if _, _, err := ParseWindow(w); err == nil {
			t.Errorf("accepted %q", w)
		}
	}
}
