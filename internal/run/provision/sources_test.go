package provision

import (
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFindOrder(t *testing.T) {
	dir := t.TempDir()
	fw := filepath.Join(dir, "fw")
	baked := filepath.Join(dir, "baked")
	os.WriteFile(fw, []byte("fw"), 0o644)
	os.WriteFile(baked, []byte("baked"), 0o644)
	fetch := func(ctx context.Context, u *url.URL) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader("url:" + u.String())), nil
	}
	esp := func() ([]byte, error) { return []byte("esp"), nil }
	noESP := func() ([]byte, error) { return nil, os.ErrNotExist }
	cases := []struct {
		name string
		env  Env
		want string // data, "" for none
	}{
		{"cmdline first", Env{Cmdline: "ro ignition.config.url=http://h/c.ign", FwCfg: fw, Baked: baked, ESP: esp, Fetch: fetch}, "url:http://h/c.ign"},
		{"fw_cfg next", Env{Cmdline: "ro", FwCfg: fw, Baked: baked, ESP: esp}, "fw"},
		{"image next", Env{FwCfg: filepath.Join(dir, "none"), Baked: baked, ESP: esp}, "baked"},
		{"esp last", Env{FwCfg: filepath.Join(dir, "none"), Baked: filepath.Join(dir, "none"), ESP: esp}, "esp"},
		{"none", Env{FwCfg: filepath.Join(dir, "none"), ESP: noESP}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Find(context.Background(), c.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.want == "" {
				if cfg != nil {
					t.Fatalf("found %+v", cfg)
				}
				return
			}
			if cfg == nil || string(cfg.Data) != c.want {
				t.Fatalf("got %+v, want %q", cfg, c.want)
			}
		})
	}
}

func TestFindRetriesThenGivesUp(t *testing.T) {
	calls := 0
	env := Env{
		Cmdline: "ignition.config.url=http://10.0.2.2/x.ign",
		NetWait: 3 * time.Second,
		Fetch: func(ctx context.Context, u *url.URL) (io.ReadCloser, error) {
			calls++
			if calls < 3 {
				return nil, errors.New("network is unreachable")
			}
			return io.NopCloser(strings.NewReader("ok")), nil
		},
	}
	cfg, err := Find(context.Background(), env)
	if err != nil || string(cfg.Data) != "ok" || calls != 3 {
		t.Fatalf("retry: %+v %v calls=%d", cfg, err, calls)
	}
	env.Fetch = func(ctx context.Context, u *url.URL) (io.ReadCloser, error) { return nil, errors.New("down") }
	t0 := time.Now()
	if _, err := Find(context.Background(), env); err == nil || !strings.Contains(err.Error(), "gave up") {
		t.Fatalf("unreachable: %v", err)
	}
	if time.Since(t0) > 5*time.Second {
		t.Fatal("the wait for the network is not bounded")
	}
	if _, err := Find(context.Background(), Env{Cmdline: "ignition.config.url=::nope"}); err == nil {
		t.Fatal("accepted a bad URL")
	}
}

func FuzzURLFromCmdline(f *testing.F) {
	f.Add("ro ignition.config.url=http://x/y quiet")
	f.Fuzz(func(t *testing.T, s string) {
		u := URLFromCmdline(s)
		if u != "" && !strings.Contains(s, CmdlineKey+"=") {
			t.Fatalf("%q from %q", u, s)
		}
	})
}

func TestURLFromCmdline(t *testing.T) {
	cases := []struct{ in, want string }{
		{"ro ignition.config.url=http://a/c.ign", "http://a/c.ign"},
		// the last one wins, as for the kernel, init and PID 1
		{"ignition.config.url=http://a/1 ignition.config.url=http://b/2", "http://b/2"},
		{"xignition.config.url=http://a/1", ""},
		{"ignition.config.urls=http://a/1", ""},
		{`ignition.config.url="http://a/c.ign"`, "http://a/c.ign"},
	}
	for _, c := range cases {
		if got := URLFromCmdline(c.in); got != c.want {
			t.Errorf("URLFromCmdline(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
