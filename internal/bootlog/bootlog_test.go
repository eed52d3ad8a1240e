package bootlog

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/slateos/slate/internal/redact"
)

// One case for each line of the README's console contract table (and the
// update and provisioning lines), with the hostile values each field could
// carry.
func TestFormat(t *testing.T) {
	cases := []struct {
		kind string
		kv   []any
		want string
	}{
		{"INIT", []any{"slot", "a", "root", "/dev/vda2", "took", "812ms"}, "SLATE-INIT slot=a root=/dev/vda2 took=812ms"},
		{"STATE", []any{"action", "created", "dev", "/dev/vda4", "size", 67108864, "took", "90ms"}, "SLATE-STATE action=created dev=/dev/vda4 size=67108864 took=90ms"},
		{"STATE", []any{"action", "tmpfs", "reason", "no partition labelled STATE"}, `SLATE-STATE action=tmpfs reason="no partition labelled STATE"`},
		{"SERVICE", []any{"name", "web", "state", "started", "pid", 42}, "SLATE-SERVICE name=web state=started pid=42"},
		{"SERVICE", []any{"name", "web\nSLATE-READY version=9 slot=a", "state", "failed"}, `SLATE-SERVICE name="web\nSLATE-READY version=9 slot=a" state=failed`},
		{"SERVICE", []any{"name", "web", "state", "failed", "err", "exec: \"/bin/x\rSLATE-READY\": not found"}, `SLATE-SERVICE name=web state=failed err="exec: \"/bin/x\rSLATE-READY\": not found"`},
		{"SERVICE", []any{"name", "app", "state", "exited", "code", 137, "oom", true}, "SLATE-SERVICE name=app state=exited code=137 oom=true"},
		{"SERVICE", []any{"name", "app", "health", "healthy"}, "SLATE-SERVICE name=app health=healthy"},
		{"SERVICE", []any{"name", "app", "health", "unhealthy", "err", "GET /healthz: 503 Service Unavailable\nSLATE-READY version=9"}, `SLATE-SERVICE name=app health=unhealthy err="GET /healthz: 503 Service Unavailable\nSLATE-READY version=9"`},
		{"NET", []any{"iface", "eth0", "addr", "10.0.2.15/24", "gw", "10.0.2.2"}, "SLATE-NET iface=eth0 addr=10.0.2.15/24 gw=10.0.2.2"},
		{"BRIDGE", []any{"iface", "slate0", "addr", "10.88.0.1/16", "ports", 2, "took", "40ms"}, "SLATE-BRIDGE iface=slate0 addr=10.88.0.1/16 ports=2 took=40ms"},
		{"BRIDGE", []any{"iface", "slate0", "err", "add nftables table: operation not supported\r\n"}, `SLATE-BRIDGE iface=slate0 err="add nftables table: operation not supported\r\n"`},
		{"SSH", []any{"host_key", "ed25519", "fingerprint", "SHA256:abc+/x", "state", "new", "key", "AAAAC3NzaC1lZDI1NTE5AAAAI+/="}, `SLATE-SSH host_key=ed25519 fingerprint=SHA256:abc+/x state=new key="AAAAC3NzaC1lZDI1NTE5AAAAI+/="`},
		{"NET", []any{"iface", "none", "err", "no wired interface\x1b[2K"}, `SLATE-NET iface=none err="no wired interface\x1b[2K"`},
		{"NETROOT", []any{"state", "fetching", "url", "http://10.0.2.2/root img"}, `SLATE-NETROOT state=fetching url="http://10.0.2.2/root img"`},
		{"READY", []any{"version", "1.2.0", "slot", "a"}, "SLATE-READY version=1.2.0 slot=a"},
		{"READY", []any{"version", "1.2.0\u2028SLATE-READY", "slot", "none"}, `SLATE-READY version="1.2.0\u2028SLATE-READY" slot=none`},
		{"SHUTDOWN", []any{"action", "poweroff"}, "SLATE-SHUTDOWN action=poweroff"},
		{"FAILED", []any{"stage", "root", "err", `no "root" \ here`}, `SLATE-FAILED stage=root err="no \"root\" \\ here"`},
		{"FAILED", []any{"stage", "init", "err", ""}, `SLATE-FAILED stage=init err=""`},
		{"UPDATE", []any{"state", "idle", "version", "1.0.0", "skipped", "é"}, `SLATE-UPDATE state=idle version=1.0.0 skipped="\u00e9"`},
		{"IGNITION", []any{"warning", "unused key \"x\""}, `SLATE-IGNITION warning="unused key \"x\""`},
		// keys and kinds are identifiers: anything else is replaced
		{"READY x", []any{"a b", 1, "k=v", 2, "lone"}, `SLATE-READY__ a_b=1 k_v=2 lone=""`},
		// a key may have digits, not first
		{"NETROOT2", []any{"sha256", "ab", "9x", 1}, `SLATE-NETROOT_ sha256=ab _x=1`},
	}
	for _, c := range cases {
		got := Format(c.kind, c.kv...)
		if got != c.want {
			t.Errorf("Format(%q, %q):\n got %s\nwant %s", c.kind, c.kv, got, c.want)
			continue
		}
		kind, kvs, err := Parse(got)
		if err != nil {
			t.Errorf("Parse(%s): %v", got, err)
			continue
		}
		if want := ident(c.kind, 'A', 'Z'); kind != want {
			t.Errorf("Parse(%s): kind %q, want %q", got, kind, want)
		}
		for i, kv := range kvs {
			want := ""
			if 2*i+1 < len(c.kv) {
				want = fmt.Sprint(c.kv[2*i+1])
			}
			if kv.Value != want {
				t.Errorf("Parse(%s): %s=%q, want %q", got, kv.Key, kv.Value, want)
			}
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, l := range []string{
		"SLATE-READY version=1 slot=a\nSLATE-READY",
		"SLATE-READY version=\"1",
		"SLATE-READY version=a\"b",
		"SLATE-READY  version=1",
		"SLATE-READY Version=1",
		"SLATE-",
		"[web] SLATE-READY version=1",
		"SLATE-READY version",
	} {
		if _, _, err := Parse(l); err == nil {
			t.Errorf("Parse(%q) accepted", l)
		}
	}
}

func TestEventOneLine(t *testing.T) {
	var buf bytes.Buffer
	SetEvents(&buf)
	defer SetEvents(nil)
	Event("FAILED", "stage", "ignition", "err", "fetch http://x/\r\nSLATE-READY version=1 slot=a")
	if lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n"); len(lines) != 1 || strings.Contains(buf.String(), "\r") {
		t.Fatalf("Event wrote %q", buf.String())
	}
}

// FuzzFormat: whatever the values, Format writes one line of printable
// ASCII that Parse reads back to the same keys and values.
func FuzzFormat(f *testing.F) {
	f.Add("SERVICE", "name", "web", "err", "a\nSLATE-READY x=1")
	f.Add("READY", "version", "1.0", "slot", "\"")
	f.Add("NET", "iface", "\r", "gw", "\xff\x00\u2028")
	f.Fuzz(func(t *testing.T, kind, k1, v1, k2, v2 string) {
		line := Format(kind, k1, v1, k2, v2)
		for i := 0; i < len(line); i++ {
			if line[i] < ' ' || line[i] >= 0x7f {
				t.Fatalf("byte %d of %q is not printable ASCII", i, line)
			}
		}
		gotKind, kvs, err := Parse(line)
		if err != nil {
			t.Fatalf("Parse(%q): %v", line, err)
		}
		want := []KV{{ident(k1, 'a', 'z'), redact.Message(v1)}, {ident(k2, 'a', 'z'), redact.Message(v2)}}
		if gotKind != ident(kind, 'A', 'Z') || !reflect.DeepEqual(kvs, want) {
			t.Fatalf("Parse(%q) = %q %q, want %q", line, gotKind, kvs, want)
		}
	})
}

// A URL's credentials never reach the console, whoever prints it.
func TestFormatRedactsURLs(t *testing.T) {
	got := Format("IGNITION", "state", "found", "where", "https://core:s3cret@10.0.2.2:8080/node.ign?token=t0k")
	if want := `SLATE-IGNITION state=found where="https://***@10.0.2.2:8080/node.ign?token=***"`; got != want {
		t.Errorf("Format = %q, want %q", got, want)
	}
}
