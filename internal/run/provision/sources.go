// Package provision runs first-boot provisioning: it finds an Ignition
// config (kernel command line URL, QEMU fw_cfg, the image, the ESP),
// applies it once to the writable layer (/etc, /var, homes), records the
// result on STATE, and hands the config's services to the supervisor on
// every boot after.
package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"github.com/slateos/slate/internal/cmdline"
	"github.com/slateos/slate/internal/run/ignition"
)

// Where configs are looked for, first found wins.
const (
	// CmdlineKey names a config URL on the kernel command line.
	CmdlineKey = cmdline.IgnitionURL
	// FwCfgPath is QEMU's fw_cfg entry opt/com.coreos/config (the
	// qemu_fw_cfg module exposes it).
	FwCfgPath = "/sys/firmware/qemu_fw_cfg/by_name/opt/com.coreos/config/raw"
	// BakedPath is a config the spec bakes into the image.
	BakedPath = "/usr/lib/slate/config.ign"
	// ESPPath is a config dropped onto the ESP (a stick, by a person).
	ESPPath = "slate/config.ign"
)

// MaxConfig bounds a config's size: the one limit of validate, the
// build and the boot.
const MaxConfig = ignition.MaxConfig

// Config is a found config and where it came from.
type Config struct {
	Source string // "cmdline", "fw_cfg", "image", "esp"
	Where  string // URL or path
	Data   []byte
}

// Env is what Find looks at; the zero value of a field skips that source.
type Env struct {
	Cmdline string
	FwCfg   string
	Baked   string
	// ESP reads ESPPath from the ESP; nil skips it.
	ESP func() ([]byte, error)
	// Fetch reads a URL from the command line.
	Fetch func(ctx context.Context, u *url.URL) (io.ReadCloser, error)
	// NetWait bounds how long a URL is retried while the network comes up.
	NetWait time.Duration
	// Services are the names of the image's services: a config's unit
	// may not replace one (nor the updater, ignition.ReservedServices).
	Services []string
}

// URLFromCmdline returns ignition.config.url=, if given (the last one, by
// the kernel's rules, as everywhere slate reads the command line).
func URLFromCmdline(line string) string {
	return cmdline.Parse(line).Get(CmdlineKey)
}

// Find looks for a config; it returns nil, nil when there is none.
func Find(ctx context.Context, env Env) (*Config, error) {
	if raw := URLFromCmdline(env.Cmdline); raw != "" {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme == "" {
			return nil, fmt.Errorf("%s=%q: not a URL", CmdlineKey, raw)
		}
		if env.Fetch == nil {
			return nil, fmt.Errorf("%s=%s: no way to fetch it", CmdlineKey, raw)
		}
		data, err := fetchRetry(ctx, env, u)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: %w", CmdlineKey, raw, err)
		}
		return &Config{Source: "cmdline", Where: raw, Data: data}, nil
	}
	for _, f := range []struct{ source, path string }{{"fw_cfg", env.FwCfg}, {"image", env.Baked}} {
		if f.path == "" {
			continue
		}
		data, err := readLimited(f.path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read config from %s: %w", f.source, err)
		}
		return &Config{Source: f.source, Where: f.path, Data: data}, nil
	}
	if env.ESP != nil {
		data, err := env.ESP()
		if err == nil {
			return &Config{Source: "esp", Where: "/" + ESPPath, Data: data}, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read config from the ESP: %w", err)
		}
	}
	return nil, nil
}

func readLimited(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := readConfig(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return b, nil
}

// readConfig reads a whole config, refusing one larger than MaxConfig.
func readConfig(r io.Reader) ([]byte, error) { return ignition.ReadConfig(r) }

// fetchRetry fetches a config URL, retrying while the network comes up,
// for at most env.NetWait (default 2 minutes).
func fetchRetry(ctx context.Context, env Env, u *url.URL) ([]byte, error) {
	wait := env.NetWait
	if wait == 0 {
		wait = 2 * time.Minute
	}
	deadline := time.Now().Add(wait)
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		data, err := fetchOnce(ctx, env, u)
		if err == nil {
			return data, nil
		}
		if time.Now().Add(delay).After(deadline) {
			return nil, fmt.Errorf("gave up after %d attempts in %s: %w", attempt, wait, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func fetchOnce(ctx context.Context, env Env, u *url.URL) ([]byte, error) {
	rc, err := env.Fetch(ctx, u)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readConfig(rc)
}
