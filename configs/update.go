package configs

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
)

// Reboot policies after an update is staged.
const (
	RebootImmediate = "immediate"
	RebootWindow    = "window"
	RebootOff       = "off"
)

// Update configures the updater daemon. A spec with an update section
// brings the network up (DHCP).
type Update struct {
	// Channel is the URL of the channel folder (http or https).
	Channel string `yaml:"channel" json:"channel"`
	// PublicKey is the host path of the channel's update.pub; it is baked
	// into the root and every payload is checked against it. The
	// one-key form of PublicKeys; give one or the other.
	PublicKey string `yaml:"public_key,omitempty" json:"public_key,omitempty"`
	// PublicKeys are host paths of the public keys this image trusts: a
	// version signed by any of them is accepted. Two during a key
	// rotation (old and new); a key left out is revoked for machines
	// running this image.
	PublicKeys []string `yaml:"public_keys,omitempty" json:"public_keys,omitempty"`
	// CheckInterval between checks (default 1h), with up to 10% jitter.
	CheckInterval Duration `yaml:"check_interval,omitempty" json:"check_interval,omitempty"`
	// Reboot is immediate (default), window, lock (once the fleet's
	// reboot lock is taken, see Lock) or off (stage only).
	Reboot string `yaml:"reboot,omitempty" json:"reboot,omitempty"`
	// Window is the daily reboot window "HH:MM-HH:MM" (UTC), for reboot:
	// window, or with reboot: lock, when the lock may be taken.
	Window string `yaml:"window,omitempty" json:"window,omitempty"`
	// Lock is the fleet's reboot lock, for reboot: lock.
	Lock *UpdateLock `yaml:"lock,omitempty" json:"lock,omitempty"`
	// Report sends this machine's state to an etcd of its own (lock.etcd's
	// is used without it) for fleet status and stop-the-line.
	Report *UpdateReport `yaml:"report,omitempty" json:"report,omitempty"`
	// HaltAfter: a version that this many machines of the fleet reported
	// as failed is not applied until resumed (default 1; needs an etcd).
	HaltAfter int    `yaml:"halt_after,omitempty" json:"halt_after,omitempty"`
	Health    Health `yaml:"health,omitempty" json:"health"`
	// Timeouts bound the updater's network waits.
	Timeouts UpdateTimeouts `yaml:"timeouts,omitempty" json:"timeouts,omitzero"`
	// Metrics is the host:port the daemon serves Prometheus metrics on
	// (http, /metrics), like 127.0.0.1:9100; empty: none. See
	// checkMetrics.
	Metrics string `yaml:"metrics,omitempty" json:"metrics,omitempty"`
}

// UpdateTimeouts bound the updater's network waits; zero is the default
// (connect 10s, header 30s, idle 60s).
type UpdateTimeouts struct {
	// Connect bounds a TCP connect and TLS handshake.
	Connect Duration `yaml:"connect,omitempty" json:"connect,omitempty"`
	// Header bounds the wait for a response's headers.
	Header Duration `yaml:"header,omitempty" json:"header,omitempty"`
	// Idle bounds the wait for the next byte of a download; a stalled
	// download is resumed from where it stopped.
	Idle Duration `yaml:"idle,omitempty" json:"idle,omitempty"`
}

// Health decides when a new version is good enough to keep.
type Health struct {
	// Services must be running, without a restart, for Hold after
	// SLATE-READY (default: every simple service whose restart is not
	// never).
	Services []string `yaml:"services,omitempty" json:"services,omitempty"`
	// Hold is how long they must stay up (default 30s).
	Hold Duration `yaml:"hold,omitempty" json:"hold,omitempty"`
	// Commands must exit 0 (each within 30 s) once Hold has passed.
	Commands []HealthCommand `yaml:"commands,omitempty" json:"commands,omitempty"`
}

// HealthCommand is one check command.
type HealthCommand struct {
	Command string   `yaml:"command" json:"command"`
	Args    []string `yaml:"args,omitempty" json:"args,omitempty"`
}

// Defaults of the update section.
const (
	DefaultCheckInterval = Duration(time.Hour)
	DefaultHealthHold    = Duration(30 * time.Second)
)

// Duration is a Go duration written as a string ("1h", "90s").
type Duration time.Duration

// D is the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String is Go's format.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(node ast.Node) error {
	text, null, err := scalarText(node, `a duration like "1h" or "90s"`)
	if err != nil || null {
		return err
	}
	v, err := time.ParseDuration(strings.TrimSpace(text))
	if err != nil {
		return &valueError{node: node, msg: fmt.Sprintf("%q is not a duration: write a number with a unit, like 90s, 30m or 1h", text)}
	}
	if v <= 0 {
		return &valueError{node: node, msg: fmt.Sprintf("%q: a duration must be positive", text)}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the Go format.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes the Go format as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a string in Go format or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration: want a string like \"1h\": %w", err)
	}
	*d = Duration(n)
	return nil
}

var windowRe = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$`)

// ParseWindow reads "HH:MM-HH:MM" into minutes after midnight.
func ParseWindow(w string) (from, to int, err error) {
	m := windowRe.FindStringSubmatch(w)
	if m == nil {
		return 0, 0, fmt.Errorf("%q is not a window: write HH:MM-HH:MM (UTC), like 02:00-04:00", w)
	}
	// strconv, not fmt.Sscan: Sscan reads "08" and "09" as an octal
	// prefix and stops at the 8, which made 08:00 midnight
	n := make([]int, 4)
	for i := range n {
		n[i], _ = strconv.Atoi(m[i+1]) // two digits, checked by windowRe
	}
	from, to = n[0]*60+n[1], n[2]*60+n[3]
	if from == to {
		return 0, 0, fmt.Errorf("%q is an empty window", w)
	}
	return from, to, nil
}

func (u *Update) setDefaults(svcs []Service) {
	if u.CheckInterval == 0 {
		u.CheckInterval = DefaultCheckInterval
	}
	if u.Reboot == "" {
		u.Reboot = RebootImmediate
	}
	if u.Health.Hold == 0 {
		u.Health.Hold = DefaultHealthHold
	}
	u.setFleetDefaults()
	if u.Health.Services == nil {
		for _, s := range svcs {
			// a oneshot finishes: it is never "up"
			if s.Restart != RestartNever && s.Type != TypeOneshot {
				u.Health.Services = append(u.Health.Services, s.Name)
			}
		}
	}
}

func (u *Update) validate(c *collector, p string, svcs []Service, containers []Container) {
	switch ch, err := url.Parse(u.Channel); {
	case u.Channel == "":
		c.add(p+".channel", "required: the URL of the channel folder, like http://updates.example.com/stable")
	case err != nil || (ch.Scheme != "http" && ch.Scheme != "https") || ch.Host == "":
		c.add(p+".channel", "%q is not an http or https URL", u.Channel)
	}
	switch {
	case u.PublicKey != "" && len(u.PublicKeys) > 0:
		c.add(p+".public_keys", "give public_key or public_keys, not both")
	case u.PublicKey == "" && len(u.PublicKeys) == 0:
		c.add(p+".public_key", "required: the path of the channel's update.pub (slate keygen writes it), or public_keys: a list of them")
	case len(u.PublicKeys) > maxTrustedKeys:
		c.add(p+".public_keys", "%d keys: at most %d", len(u.PublicKeys), maxTrustedKeys)
	}
	for i, k := range u.PublicKeys {
		if k == "" {
			c.add(index(p+".public_keys", i), "empty path")
		}
	}
	if u.CheckInterval != 0 && u.CheckInterval.D() < 10*time.Second {
		c.add(p+".check_interval", "%s is too short: at least 10s", u.CheckInterval)
	}
	switch u.Reboot {
	case "", RebootImmediate, RebootOff:
		if u.Window != "" {
			c.add(p+".window", "a window needs reboot: window or lock")
		}
	case RebootWindow:
		if _, _, err := ParseWindow(u.Window); err != nil {
			c.add(p+".window", "%v", err)
		}
	case RebootLock: // checkFleet
	default:
		c.add(p+".reboot", "%q is not a reboot policy: use immediate, window, lock or off", u.Reboot)
	}
	u.checkFleet(c, p)
	for _, f := range []struct {
		name string
		d    Duration
	}{{"connect", u.Timeouts.Connect}, {"header", u.Timeouts.Header}, {"idle", u.Timeouts.Idle}} {
		if f.d != 0 && (f.d.D() < time.Second || f.d.D() > time.Hour) {
			c.add(p+".timeouts."+f.name, "%s is out of range: between 1s and 1h", f.d)
		}
	}
	checkMetrics(c, p+".metrics", u.Metrics)
	names := map[string]bool{}
	for _, s := range svcs {
		names[s.Name] = true
	}
	for _, con := range containers {
		names[con.Name] = true
	}
	for i, s := range u.Health.Services {
		if !names[s] {
			c.add(index(p+".health.services", i), "%q is not a service or container of this spec", s)
		}
	}
	for i, hc := range u.Health.Commands {
		if !strings.HasPrefix(hc.Command, "/") {
			c.add(index(p+".health.commands", i)+".command", "%q: write an absolute path", hc.Command)
		}
	}
}

// checkMetrics checks update.metrics: a host (an address or a name, may be
// empty for every address) and a port, as net.Listen takes them. The
// metrics are unauthenticated: the README says to keep them on loopback
// or a management network.
func checkMetrics(c *collector, p, addr string) {
	if addr == "" {
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		c.add(p, "%q is not host:port (like 127.0.0.1:9100): %v", addr, err)
		return
	}
	if strings.ContainsAny(host, " /\\") {
		c.add(p, "%q: the host %q is not an address or a name", addr, host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] == '0' || port[0] == '+' {
		c.add(p, "%q: the port %q must be a number from 1 to 65535", addr, port)
	}
}

// maxTrustedKeys matches payload.MaxTrustedKeys.
const maxTrustedKeys = 16

// KeyFiles returns the paths of the trusted public keys with the JSON path
// of each: public_key is the one-element form of public_keys.
func (u *Update) KeyFiles() (paths, fields []string) {
	if u.PublicKey != "" {
		return []string{u.PublicKey}, []string{"$.update.public_key"}
	}
	for i, k := range u.PublicKeys {
		paths = append(paths, k)
		fields = append(fields, index("$.update.public_keys", i))
	}
	return paths, fields
}

// ParsePublicKeys reads the trusted keys the update section names, in
// order, and refuses anything but ed25519 public keys (PKIX PEM, as slate
// keygen writes update.pub): a private key named here would be copied into
// every root, and the root image is public. Each error names its field.
func (s *Spec) ParsePublicKeys() ([]ed25519.PublicKey, error) {
	c := &collector{}
	keys := s.parseKeys(c)
	if err := c.err(); err != nil {
		return nil, err
	}
	return keys, nil
}

func (s *Spec) parseKeys(c *collector) []ed25519.PublicKey {
	if s.Update == nil {
		return nil
	}
	var keys []ed25519.PublicKey
	seen := map[string]string{}
	paths, fields := s.Update.KeyFiles()
	for i, rel := range paths {
		host := s.Path(rel)
		ks, err := readPublicKeys(host)
		if err != nil {
			c.add(fields[i], "%s: %v", host, err)
			continue
		}
		for _, k := range ks {
			if f, dup := seen[string(k)]; dup {
				c.add(fields[i], "%s: the same key as %s", host, f)
				continue
			}
			seen[string(k)] = fields[i]
			keys = append(keys, k)
		}
	}
	if len(keys) > maxTrustedKeys {
		c.add("$.update.public_keys", "%d keys: at most %d", len(keys), maxTrustedKeys)
	}
	return keys
}

// readPublicKeys reads one key file: one or more PEM "PUBLIC KEY" blocks
// holding ed25519 keys, nothing else.
func readPublicKeys(path string) ([]ed25519.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errors.New("does not exist")
		}
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, errors.New("is not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10+1))
	if err != nil {
		return nil, err
	}
	if len(data) > 64<<10 {
		return nil, errors.New("is larger than 64 KiB: not a public key file")
	}
	if bytes.Contains(data, []byte("PRIVATE KEY-----")) {
		return nil, errors.New("is a private key: name the public key (update.pub) here; the root image is public and would carry the private key to everyone")
	}
	var keys []ed25519.PublicKey
	rest := data
	for n := 1; len(bytes.TrimSpace(rest)) > 0; n++ {
		block, r := pem.Decode(rest)
		if block == nil {
			if n == 1 {
				return nil, errors.New("is not a PEM public key (want a \"PUBLIC KEY\" block, as slate keygen writes update.pub)")
			}
			return nil, fmt.Errorf("has data after PEM block %d that is not PEM", n-1)
		}
		rest = r
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("PEM block %d is %q, want \"PUBLIC KEY\"", n, block.Type)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d is not a PKIX public key: %w", n, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("PEM block %d is a %T key, want ed25519", n, k)
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, errors.New("is empty: want a PEM public key")
	}
	return keys, nil
}
