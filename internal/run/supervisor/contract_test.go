package supervisor

import (
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/bootlog"
)

// No service name, error message or service output can put a line on the
// console that starts with SLATE- and was not written by bootlog.Format.
func TestContractLinesCannotBeForged(t *testing.T) {
	const evil = "/nonexistent/caf\u00e9\nSLATE-READY version=evil slot=b"
	cfg, con := testConfig(t,
		Service{Name: "ghost", Command: evil, Type: configs.TypeOneshot},
		helperService(t, "talker", "forge", configs.RestartAlways, nil),
	)
	r := start(t, withClock(t, cfg))
	con.waitFor(t, `^SLATE-READY version=1\.2\.3 slot=a$`, 1)
	con.waitFor(t, `^\[talker\] done`, 1)
	con.waitClock(t) // a second READY would have come by now
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	out := con.String()
	sawGhost := false
	// Split on \r as well as \n: a terminal or a reader that drops \r
	// would start a line there too.
	for _, l := range strings.FieldsFunc(out, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if strings.Contains(l, "version=evil") && !strings.HasPrefix(l, "[talker] ") && !strings.HasPrefix(l, "SLATE-SERVICE name=ghost ") {
			t.Errorf("forged line on the console: %q", l)
		}
		if !strings.HasPrefix(l, "SLATE-") {
			continue
		}
		kind, kvs, err := bootlog.Parse(l)
		if err != nil {
			t.Errorf("console line not written by bootlog.Format: %v", err)
			continue
		}
		if kind == "READY" && l != "SLATE-READY version=1.2.3 slot=a" {
			t.Errorf("READY line %q", l)
		}
		if kind == "SERVICE" && kvs[0].Value == "ghost" && kvs[1].Value == "failed" {
			sawGhost = true
			if len(kvs) < 3 || kvs[2].Key != "err" || !strings.Contains(kvs[2].Value, evil) {
				t.Errorf("ghost's failure %q does not carry the error as it was", l)
			} else if want := bootlog.Format("SERVICE", "name", "ghost", "state", "failed", "err", kvs[2].Value); l != want {
				t.Errorf("ghost's failure\n %s\nis not bootlog's\n %s", l, want)
			}
		}
	}
	if !sawGhost {
		t.Errorf("no SLATE-SERVICE name=ghost state=failed line")
	}
	if n := con.count(`^SLATE-READY`); n != 1 {
		t.Errorf("%d READY lines", n)
	}
	if t.Failed() {
		t.Logf("console:\n%q", out)
	}
}
