package netconf

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// iface is one interface of a fake /sys/class/net tree; empty fields leave
// their file out.
type iface struct {
	name, typ, index, address  string
	device, wireless, phy80211 bool
}

// writeIface makes i's folder under netDir.
func writeIface(t *testing.T, netDir string, i iface) {
	t.Helper()
	d := filepath.Join(netDir, i.name)
	dirs := []string{d}
	if i.device {
		dirs = append(dirs, filepath.Join(d, "device"))
	}
	if i.wireless {
		dirs = append(dirs, filepath.Join(d, "wireless"))
	}
	if i.phy80211 {
		dirs = append(dirs, filepath.Join(d, "phy80211"))
	}
	for _, p := range dirs {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for file, v := range map[string]string{"type": i.typ, "ifindex": i.index, "address": i.address} {
		if v == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(d, file), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func fakeNet(t *testing.T, ifaces []iface) string {
	t.Helper()
	dir := t.TempDir()
	for _, i := range ifaces {
		writeIface(t, dir, i)
	}
	return dir
}

var (
	lo   = iface{name: "lo", typ: "772", index: "1", address: "00:00:00:00:00:00"}
	ens3 = iface{name: "ens3", typ: "1", index: "2", address: "52:54:00:12:34:56", device: true}
)

func TestWired(t *testing.T) {
	tests := []struct {
		name   string
		ifaces []iface
		want   []string // nil for an error
	}{
		{"qemu", []iface{lo, ens3}, []string{"ens3"}},
		{"lo with a device is not ethernet", []iface{{name: "lo", typ: "772", index: "1", device: true}, ens3}, []string{"ens3"}},
		{"virtual interfaces have no device", []iface{
			lo,
			{name: "veth0", typ: "1", index: "3"},
			{name: "br0", typ: "1", index: "4"},
			{name: "eth0", typ: "1", index: "5", device: true},
		}, []string{"eth0"}},
		{"wireless skipped", []iface{
			{name: "wlan0", typ: "1", index: "2", device: true, wireless: true},
			{name: "wlp2s0", typ: "1", index: "3", device: true, phy80211: true},
			{name: "enp1s0", typ: "1", index: "4", device: true},
		}, []string{"enp1s0"}},
		{"non-ethernet types skipped", []iface{
			{name: "ib0", typ: "32", index: "2", device: true},
			{name: "sit0", typ: "776", index: "3", device: true},
			{name: "eth0", typ: "1", index: "4", device: true},
		}, []string{"eth0"}},
		{"ifindex order, not name order", []iface{
			{name: "eth0", typ: "1", index: "12", device: true},
			{name: "eth1", typ: "1", index: "3", device: true},
			{name: "eth2", typ: "1", index: "7", device: true},
		}, []string{"eth1", "eth2", "eth0"}},
		{"ifindex compared as numbers", []iface{
			{name: "a", typ: "1", index: "10", device: true},
			{name: "b", typ: "1", index: "9", device: true},
		}, []string{"b", "a"}},
		{"same ifindex: name order", []iface{
			{name: "b", typ: "1", index: "2", device: true},
			{name: "a", typ: "1", index: "2", device: true},
		}, []string{"a", "b"}},
		{"unknown ifindex last, by name", []iface{
			{name: "eth9", typ: "1", device: true},
			{name: "eth5", typ: "1", index: "7", device: true},
			{name: "eth8", typ: "1", index: "junk", device: true},
			{name: "eth1", typ: "1", index: "900", device: true},
		}, []string{"eth5", "eth1", "eth8", "eth9"}},
		{"unknown type is taken as ethernet", []iface{{name: "eth0", index: "2", device: true}}, []string{"eth0"}},
		{"only lo", []iface{lo}, nil},
		{"only wireless", []iface{lo, {name: "wlan0", typ: "1", index: "2", device: true, wireless: true}}, nil},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Wired(fakeNet(t, tt.ifaces))
			if tt.want == nil {
				if err == nil || !strings.Contains(err.Error(), "no wired network interface") {
					t.Fatalf("Wired = %q, %v; want the error no wired network interface", got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("Wired = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := Wired(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("no error for a missing folder")
	}
}

func TestWaitWired(t *testing.T) {
	tests := []struct {
		name    string
		start   []iface
		later   bool          // ens3 appears after 300 ms
		wait    time.Duration // how long WaitWired polls
		timeout time.Duration // the context's; 0 is none
		want    []string
		wantErr error // matched with errors.Is; nil with want nil is any error
	}{
		{name: "there at once", start: []iface{lo, ens3}, wait: time.Second, want: []string{"ens3"}},
		{name: "appears during the wait", start: []iface{lo}, later: true, wait: 5 * time.Second, want: []string{"ens3"}},
		{name: "appears after the wait", start: []iface{lo}, later: true, wait: 50 * time.Millisecond},
		{name: "never appears", start: []iface{lo}, wait: 600 * time.Millisecond},
		{name: "no wait", start: []iface{lo}},
		{name: "context ends first", start: []iface{lo}, wait: time.Minute, timeout: 300 * time.Millisecond, wantErr: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fakeNet(t, tt.start)
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			done := make(chan struct{})
			defer func() { <-done }()
			go func() {
				defer close(done)
				if !tt.later {
					return
				}
				time.Sleep(300 * time.Millisecond)
				// Made aside and renamed in, as the kernel shows an
				// interface whole.
				stage := t.TempDir()
				writeIface(t, stage, ens3)
				if err := os.Rename(filepath.Join(stage, "ens3"), filepath.Join(dir, "ens3")); err != nil {
					t.Error(err)
				}
			}()
			t0 := time.Now()
			got, err := WaitWired(ctx, dir, tt.wait)
			took := time.Since(t0)
			switch {
			case tt.want != nil:
				if err != nil || !slices.Equal(got, tt.want) {
					t.Fatalf("WaitWired = %q, %v; want %q", got, err, tt.want)
				}
				if tt.later && took < 300*time.Millisecond {
					t.Errorf("WaitWired returned after %v, before the interface appeared", took)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("WaitWired = %q, %v; want %v", got, err, tt.wantErr)
				}
				if took > tt.timeout+2*time.Second {
					t.Errorf("WaitWired took %v after the context ended at %v", took, tt.timeout)
				}
			default:
				if err == nil || !strings.Contains(err.Error(), "no wired network interface") {
					t.Fatalf("WaitWired = %q, %v; want the error no wired network interface", got, err)
				}
				if took < tt.wait {
					t.Errorf("WaitWired gave up after %v, before its wait of %v", took, tt.wait)
				}
				if took > tt.wait+2*time.Second {
					t.Errorf("WaitWired took %v, its wait is %v", took, tt.wait)
				}
			}
		})
	}

	t.Run("context already ended", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := WaitWired(ctx, fakeNet(t, []iface{lo}), time.Minute); !errors.Is(err, context.Canceled) {
			t.Fatalf("WaitWired error = %v, want context.Canceled", err)
		}
		// An interface that is there is found even so.
		if got, err := WaitWired(ctx, fakeNet(t, []iface{lo, ens3}), time.Minute); err != nil || !slices.Equal(got, []string{"ens3"}) {
			t.Fatalf("WaitWired = %q, %v; want ens3", got, err)
		}
	})
}

func TestMACOf(t *testing.T) {
	dir := fakeNet(t, []iface{
		lo,
		ens3,
		{name: "eth1", typ: "1", index: "3", address: "0a:1b:2c:3d:4e:5f", device: true},
		{name: "noaddr", typ: "1", index: "4", device: true},
	})
	tests := []struct {
		name, dir, mac, want string
	}{
		{"colons", dir, "52:54:00:12:34:56", "ens3"},
		{"hyphens", dir, "52-54-00-12-34-56", "ens3"},
		{"upper case colons", dir, "0A:1B:2C:3D:4E:5F", "eth1"},
		{"upper case hyphens", dir, "0A-1B-2C-3D-4E-5F", "eth1"},
		{"mixed", dir, "0a-1B:2c-3D:4e-5F", "eth1"},
		{"no such address", dir, "52:54:00:12:34:57", ""},
		{"short", dir, "52:54:00:12:34", ""},
		{"BOOTIF prefix kept", dir, "01-52-54-00-12-34-56", ""},
		{"no separators", dir, "525400123456", ""},
		{"missing folder", filepath.Join(dir, "missing"), "52:54:00:12:34:56", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MACOf(tt.dir, tt.mac); got != tt.want {
				t.Errorf("MACOf(%q) = %q, want %q", tt.mac, got, tt.want)
			}
		})
	}
}
