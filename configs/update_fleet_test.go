package configs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUpdateFleet(t *testing.T) {
	base := "name: u\nversion: 1.0.0\nupdate:\n  channel: http://x/y\n  public_key: k\n"
	lock := base + "  reboot: lock\n  lock:\n    etcd:\n      endpoints: [http://10.0.2.2:2379]\n"
	s, err := Parse([]byte(lock), "u.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := s.Update.Lock.Etcd
	if e.Prefix != DefaultLockPrefix || e.Max != 1 || e.TTL.D() != 30*time.Minute || e.DialTimeout.D() != 10*time.Second || s.Update.HaltAfter != 1 {
		t.Errorf("defaults: %+v halt_after %d", e, s.Update.HaltAfter)
	}
	if r := s.Update.ReportEtcd(); r == nil || r.Endpoints[0] != "http://10.0.2.2:2379" {
		t.Errorf("reports go to lock.etcd's etcd without report.etcd: %+v", r)
	}
	tls := base + "  reboot: lock\n  lock:\n    etcd:\n      endpoints: [https://10.0.2.2:2379]\n"
	full := tls + "      prefix: fleet/prod\n      group: db\n      max: 2\n      ttl: 10m\n      ca: /etc/slate/etcd/ca.pem\n      cert: /etc/slate/etcd/cert.pem\n      key: /etc/slate/etcd/key.pem\n      username: slate\n      password_file: /etc/slate/etcd/password\n  window: 02:00-04:00\n"
	if s, err := Parse([]byte(full), "u.yaml"); err != nil || s.Update.Lock.Etcd.Max != 2 || s.Update.Lock.Etcd.Group != "db" {
		t.Errorf("full lock section: %v", err)
	}
	fl := base + "  reboot: lock\n  lock:\n    fleetlock:\n      url: http://10.0.2.2:8080\n      group: web\n"
	if s, err := Parse([]byte(fl), "u.yaml"); err != nil || s.Update.Lock.FleetLock.Group != "web" || s.Update.ReportEtcd() != nil {
		t.Errorf("fleetlock: %v", err)
	}
	rep := base + "  report:\n    etcd:\n      endpoints: [https://etcd:2379]\n  halt_after: 3\n"
	if s, err := Parse([]byte(rep), "u.yaml"); err != nil || s.Update.ReportEtcd().Prefix != DefaultLockPrefix || s.Update.HaltAfter != 3 {
		t.Errorf("report: %v", err)
	}
	// a password to an etcd on this machine never leaves it: http is
	// fine there
	for _, ep := range []string{"http://127.0.0.1:2379", "http://127.3.4.5:2379", "http://[::1]:2379", "http://localhost:2379"} {
		y := base + "  reboot: lock\n  lock:\n    etcd:\n      endpoints: [\"" + ep + "\"]\n      username: slate\n      password_file: /etc/slate/etcd/password\n      cert: /etc/c.pem\n      key: /etc/k.pem\n"
		if _, err := Parse([]byte(y), "u.yaml"); err != nil {
			t.Errorf("%s with a password: %v", ep, err)
		}
	}
	bad := []struct{ body, path, msg string }{
		{base + "  reboot: lock\n", "$.update.lock", "required by reboot: lock"},
		{base + "  lock:\n    fleetlock:\n      url: http://x:1\n", "$.update.reboot", "needs reboot: lock"},
		{base + "  reboot: lock\n  lock: {}\n", "$.update.lock", "give etcd or fleetlock"},
		{lock + "    fleetlock:\n      url: http://x:1\n", "$.update.lock", "not both"},
		{base + "  reboot: lock\n  lock:\n    etcd: {prefix: x}\n", "$.update.lock.etcd.endpoints", "required"},
		{base + "  reboot: lock\n  lock:\n    etcd:\n      endpoints: [10.0.0.1:2379]\n", "$.update.lock.etcd.endpoints[0]", "not an etcd URL"},
		{base + "  reboot: lock\n  lock:\n    etcd:\n      endpoints: [http://10.0.0.1]\n", "$.update.lock.etcd.endpoints[0]", "no port"},
		{lock + "      prefix: /coreos.com\n", "$.update.lock.etcd.prefix", "leading or trailing slash"},
		{lock + "      group: a/b\n", "$.update.lock.etcd.group", "letters"},
		{lock + "      max: -1\n", "$.update.lock.etcd.max", "between 1 and 1000"},
		{lock + "      ttl: 10s\n", "$.update.lock.etcd.ttl", "too short"},
		{lock + "      ca: certs/ca.pem\n", "$.update.lock.etcd.ca", "absolute"},
		{lock + "      cert: /etc/c.pem\n      key: /usr/lib/slate/key.pem\n", "$.update.lock.etcd.key", "public"},
		{lock + "      cert: /etc/c.pem\n", "$.update.lock.etcd.key", "together"},
		{lock + "      username: slate\n", "$.update.lock.etcd.password_file", "together"},
		{lock + "      username: slate\n      password_file: /etc/slate/etcd/password\n", "$.update.lock.etcd.endpoints[0]", "password would cross the network in the clear"},
		{base + "  reboot: lock\n  lock:\n    etcd:\n      endpoints: [https://10.0.0.1:2379, http://etcd.example:2379]\n      username: slate\n      password_file: /etc/slate/etcd/password\n", "$.update.lock.etcd.endpoints[1]", "in the clear"},
		{lock + "      cert: /etc/c.pem\n      key: /etc/k.pem\n", "$.update.lock.etcd.endpoints[0]", "only presented over TLS"},
		{base + "  report:\n    etcd:\n      endpoints: [http://10.0.0.1:2379]\n      username: slate\n      password_file: /etc/p\n", "$.update.report.etcd.endpoints[0]", "in the clear"},
		{lock + "  window: 25:00-01:00\n", "$.update.window", "not a window"},
		{base + "  reboot: lock\n  lock:\n    fleetlock:\n      url: ftp://x\n", "$.update.lock.fleetlock.url", "FleetLock"},
		{base + "  report: {}\n", "$.update.report.etcd", "required"},
		{base + "  halt_after: -2\n", "$.update.halt_after", "at least 1"},
	}
	for _, b := range bad {
		_, err := Parse([]byte(b.body), "u.yaml")
		var ce *Error
		var cl ErrorList
		if !errors.As(err, &ce) && !errors.As(err, &cl) {
			t.Errorf("%q: accepted (%v)", b.body, err)
			continue
		}
		if !strings.Contains(err.Error(), b.path) || !strings.Contains(err.Error(), b.msg) {
			t.Errorf("%q: error %q does not name %s / %q", b.body, err, b.path, b.msg)
		}
	}
}
