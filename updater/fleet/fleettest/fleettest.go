// Package fleettest runs a real etcd inside a test process, for the
// tests of fleet coordination (the lock, reports, the CLI). Never linked
// into a program.
package fleettest

import (
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// StartEtcd starts a single-member etcd on loopback, its data in a
// temporary folder, stopped when the test ends; it returns the client URL
// and the server (to enable auth, for one).
func StartEtcd(t testing.TB) (string, *embed.Etcd) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(cfg.Dir, "etcd.log")}
	// Port 0: the kernel picks the ports as etcd listens (a single
	// member never dials its own peer URL, so the advertised :0 is never
	// used); Clients[0].Addr() says where the clients' port ended up.
	loop := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{loop}, []url.URL{loop}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{loop}, []url.URL{loop}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd did not become ready")
	}
	return "http://" + e.Clients[0].Addr().String(), e
}

// ClosedPort is the URL of a loopback port nobody listens on.
func ClosedPort(t testing.TB) string {
	u := freeURL(t)
	return u.String()
}

func freeURL(t testing.TB) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}
