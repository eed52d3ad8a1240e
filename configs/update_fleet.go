package configs

import (
	"net"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"
)

// RebootLock reboots once a fleet's reboot lock is taken (update.lock);
// with a window, the lock is asked for only inside it.
const RebootLock = "lock"

// Defaults of the fleet settings.
const (
	DefaultLockPrefix = "coreos.com/updateengine" // locksmith's: its tools read the same document
	DefaultLockMax    = 1
	DefaultLockTTL    = Duration(30 * time.Minute)
	DefaultHaltAfter  = 1
	DefaultDialTime   = Duration(10 * time.Second)
)

// UpdateLock is update.lock: where the fleet's reboot lock lives. Exactly
// one of Etcd and FleetLock.
type UpdateLock struct {
	Etcd      *EtcdLock      `yaml:"etcd,omitempty" json:"etcd,omitempty"`
	FleetLock *FleetLockConf `yaml:"fleetlock,omitempty" json:"fleetlock,omitempty"`
}

// EtcdConn is how the machine reaches etcd. The files (CA, client
// certificate and key, password) are paths on the machine, read when the
// daemon starts, not host files baked into the image: the root image is
// public and must carry no secret. Deliver them with Ignition (for
// example under /etc/slate/etcd/).
type EtcdConn struct {
	// Endpoints are URLs (http://10.0.0.1:2379, https://...).
	Endpoints []string `yaml:"endpoints" json:"endpoints"`
	// Prefix of every key (default coreos.com/updateengine, locksmith's).
	Prefix string `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	// CA verifies the servers; Cert and Key are the client's (mutual TLS).
	CA   string `yaml:"ca,omitempty" json:"ca,omitempty"`
	Cert string `yaml:"cert,omitempty" json:"cert,omitempty"`
	Key  string `yaml:"key,omitempty" json:"key,omitempty"`
	// Username and the file holding its password (first line).
	Username     string   `yaml:"username,omitempty" json:"username,omitempty"`
	PasswordFile string   `yaml:"password_file,omitempty" json:"password_file,omitempty"`
	DialTimeout  Duration `yaml:"dial_timeout,omitempty" json:"dial_timeout,omitempty"`
}

// EtcdLock is update.lock.etcd: locksmith's semaphore. Its connection
// fields are EtcdConn's, written out (the spec's strict checker knows no
// inline structs); Conn returns them.
type EtcdLock struct {
	Endpoints    []string `yaml:"endpoints" json:"endpoints"`
	Prefix       string   `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	CA           string   `yaml:"ca,omitempty" json:"ca,omitempty"`
	Cert         string   `yaml:"cert,omitempty" json:"cert,omitempty"`
	Key          string   `yaml:"key,omitempty" json:"key,omitempty"`
	Username     string   `yaml:"username,omitempty" json:"username,omitempty"`
	PasswordFile string   `yaml:"password_file,omitempty" json:"password_file,omitempty"`
	DialTimeout  Duration `yaml:"dial_timeout,omitempty" json:"dial_timeout,omitempty"`
	// Group names a separate semaphore (locksmith's groups).
	Group string `yaml:"group,omitempty" json:"group,omitempty"`
	// Max holders when the semaphore is created (default 1); an existing
	// document keeps its own max (locksmithctl set-max changes it).
	Max int `yaml:"max,omitempty" json:"max,omitempty"`
	// TTL: a hold older than this may be taken over (default 30m).
	TTL Duration `yaml:"ttl,omitempty" json:"ttl,omitempty"`
}

// Conn is the lock's etcd connection.
func (e *EtcdLock) Conn() EtcdConn {
	return EtcdConn{Endpoints: e.Endpoints, Prefix: e.Prefix, CA: e.CA, Cert: e.Cert, Key: e.Key,
		Username: e.Username, PasswordFile: e.PasswordFile, DialTimeout: e.DialTimeout}
}

func (e *EtcdLock) setConn(c EtcdConn) {
	e.Endpoints, e.Prefix, e.CA, e.Cert, e.Key = c.Endpoints, c.Prefix, c.CA, c.Cert, c.Key
	e.Username, e.PasswordFile, e.DialTimeout = c.Username, c.PasswordFile, c.DialTimeout
}

// FleetLockConf is update.lock.fleetlock: a FleetLock server (Zincati's
// protocol).
type FleetLockConf struct {
	URL   string `yaml:"url" json:"url"`
	Group string `yaml:"group,omitempty" json:"group,omitempty"`
}

// UpdateReport is update.report: where machines report their state for
// fleet status and stop-the-line, when that is not lock.etcd's etcd.
type UpdateReport struct {
	Etcd *EtcdConn `yaml:"etcd,omitempty" json:"etcd,omitempty"`
}

// ReportEtcd is the etcd fleet reports go to: report.etcd, else
// lock.etcd's; nil without either.
func (u *Update) ReportEtcd() *EtcdConn {
	if u.Report != nil && u.Report.Etcd != nil {
		return u.Report.Etcd
	}
	if u.Lock != nil && u.Lock.Etcd != nil {
		c := u.Lock.Etcd.Conn()
		return &c
	}
	return nil
}

func (u *Update) setFleetDefaults() {
	if u.Lock != nil && u.Lock.Etcd != nil {
		e := u.Lock.Etcd
		c := e.Conn()
		c.setDefaults()
		e.setConn(c)
		if e.Max == 0 {
			e.Max = DefaultLockMax
		}
		if e.TTL == 0 {
			e.TTL = DefaultLockTTL
		}
	}
	if u.Report != nil && u.Report.Etcd != nil {
		u.Report.Etcd.setDefaults()
	}
	if u.HaltAfter == 0 {
		u.HaltAfter = DefaultHaltAfter
	}
}

func (e *EtcdConn) setDefaults() {
	if e.Prefix == "" {
		e.Prefix = DefaultLockPrefix
	}
	if e.DialTimeout == 0 {
		e.DialTimeout = DefaultDialTime
	}
}

var groupRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// checkFleet validates reboot: lock, update.lock, update.report and
// halt_after.
func (u *Update) checkFleet(c *collector, p string) {
	switch {
	case u.Reboot == RebootLock && u.Lock == nil:
		c.add(p+".lock", "required by reboot: lock: give lock.etcd or lock.fleetlock")
	case u.Reboot != RebootLock && u.Lock != nil:
		c.add(p+".reboot", "a lock section needs reboot: lock")
	}
	if u.Reboot == RebootLock && u.Window != "" {
		if _, _, err := ParseWindow(u.Window); err != nil {
			c.add(p+".window", "%v", err)
		}
	}
	if u.HaltAfter < 0 {
		c.add(p+".halt_after", "%d: at least 1", u.HaltAfter)
	}
	if u.Lock != nil {
		checkLock(c, p+".lock", u.Lock)
	}
	if u.Report != nil {
		if u.Report.Etcd == nil {
			c.add(p+".report.etcd", "required in a report section")
		} else {
			CheckEtcdConn(c.add, p+".report.etcd", u.Report.Etcd, true)
		}
	}
}

func checkLock(c *collector, p string, l *UpdateLock) {
	switch {
	case l.Etcd == nil && l.FleetLock == nil:
		c.add(p, "give etcd or fleetlock")
		return
	case l.Etcd != nil && l.FleetLock != nil:
		c.add(p, "give etcd or fleetlock, not both")
		return
	}
	if e := l.Etcd; e != nil {
		ep := p + ".etcd"
		conn := e.Conn()
		CheckEtcdConn(c.add, ep, &conn, true)
		if e.Group != "" && !groupRe.MatchString(e.Group) {
			c.add(ep+".group", "%q: letters, digits, '.', '_' and '-', at most 63", e.Group)
		}
		if e.Max < 0 || e.Max > 1000 {
			c.add(ep+".max", "%d: between 1 and 1000", e.Max)
		}
		if e.TTL != 0 && e.TTL.D() < time.Minute {
			c.add(ep+".ttl", "%s is too short: at least 1m (a reboot and a health check must fit)", e.TTL)
		}
	}
	if f := l.FleetLock; f != nil {
		fp := p + ".fleetlock"
		if u, err := url.Parse(f.URL); f.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			c.add(fp+".url", "%q is not an http or https URL of a FleetLock server", f.URL)
		}
		if f.Group != "" && !groupRe.MatchString(f.Group) {
			c.add(fp+".group", "%q: letters, digits, '.', '_' and '-', at most 63", f.Group)
		}
	}
}

// CheckEtcdConn validates an etcd connection; add is called with the JSON
// path and the message of each problem. machine: the files are paths on
// the machine (absolute, and secrets not in the public root); the command
// line checks its flags with machine false (paths on this computer).
func CheckEtcdConn(add func(path, format string, args ...any), p string, e *EtcdConn, machine bool) {
	if len(e.Endpoints) == 0 {
		add(p+".endpoints", "required: the URLs of etcd, like http://10.0.0.1:2379")
	}
	for i, ep := range e.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" && u.Path != "/" {
			add(index(p+".endpoints", i), "%q is not an etcd URL: write http://HOST:PORT or https://HOST:PORT", ep)
			continue
		}
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			add(index(p+".endpoints", i), "%q has no port (etcd's is 2379)", ep)
		}
		if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
			switch {
			case e.PasswordFile != "" || e.Username != "":
				add(index(p+".endpoints", i), "%q is plain http: the password would cross the network in the clear; write https:// (only a loopback address may be http with a password)", ep)
			case e.Cert != "" || e.Key != "":
				add(index(p+".endpoints", i), "%q is plain http: a client certificate is only presented over TLS; write https://", ep)
			}
		}
	}
	if strings.HasPrefix(e.Prefix, "/") || strings.HasSuffix(e.Prefix, "/") || strings.Contains(e.Prefix, "//") {
		add(p+".prefix", "%q: write it without a leading or trailing slash, like coreos.com/updateengine", e.Prefix)
	}
	for _, f := range []struct {
		name, path string
		secret     bool
	}{{"ca", e.CA, false}, {"cert", e.Cert, false}, {"key", e.Key, true}, {"password_file", e.PasswordFile, true}} {
		switch {
		case f.path == "" || !machine:
		case !path.IsAbs(f.path) || path.Clean(f.path) != f.path:
			add(p+"."+f.name, "%q: write an absolute, clean path on the machine (delivered by Ignition, like /etc/slate/etcd/%s)", f.path, f.name)
		case f.secret && (strings.HasPrefix(f.path, "/usr/") || strings.HasPrefix(f.path, "/lib/")):
			add(p+"."+f.name, "%q is in the image's root, which is public: deliver secrets with Ignition, under /etc or /var", f.path)
		}
	}
	if (e.Cert == "") != (e.Key == "") {
		add(p+".key", "give cert and key together")
	}
	if (e.Username == "") != (e.PasswordFile == "") {
		add(p+".password_file", "give username and password_file together")
	}
	if e.DialTimeout != 0 && (e.DialTimeout.D() < time.Second || e.DialTimeout.D() > 5*time.Minute) {
		add(p+".dial_timeout", "%s is out of range: between 1s and 5m", e.DialTimeout)
	}
}

// loopbackHost reports whether host (a URL's, without the port) is this
// machine: localhost, 127.0.0.0/8 or ::1.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
