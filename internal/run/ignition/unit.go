//lint:file-ignore ST1011 RestartSec, TimeoutStartSec and TimeoutStopSec are named after systemd's unit keys

package ignition

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/slateos/slate/configs"
)

// UnitDir is where Apply stores the contents of the units it accepted, as
// Ignition does, so that later boots can read them back with ParseUnit.
const UnitDir = "/etc/systemd/system"

// Unit is a systemd service unit translated into what slate's supervisor
// runs. slate has no systemd: only the directives listed on the fields are
// understood, and ParseUnit refuses every other one rather than dropping it.
type Unit struct {
	// Name is the unit name, with its ".service" suffix.
	Name string
	// Enabled is always true in a Plan: slate refuses units it would not run.
	Enabled     bool
	Description string
	// Type is "simple" (also for systemd's "exec") or "oneshot".
	Type string
	// ExecStart is the command line split into argv. ExecStart[0] is an
	// absolute path.
	ExecStart []string
	// Restart is configs.RestartNever, RestartAlways or RestartOnFailure;
	// systemd's default "no" is never.
	Restart string
	// Environment comes from Environment= lines, later lines win.
	Environment map[string]string
	// EnvironmentFiles are read by the supervisor when the service starts,
	// in order.
	EnvironmentFiles []EnvironmentFile
	// User runs the service as this user (name or number); empty is root.
	User string
	// WorkingDirectory is absolute; empty is "/".
	WorkingDirectory string
	// After orders the start after these units (ordering only).
	After []string
	// Requires names units that must be running first; when one of them
	// fails, this unit does not start.
	Requires []string
	// Before orders these units after this one (ordering only).
	Before []string
	// Wants names units pulled in with this one; as in systemd it does
	// not order them (slate starts every enabled unit anyway).
	Wants []string
	// ExecStartPre and ExecStartPost run to completion before and after
	// the main process starts; ExecStop runs when the service is stopped.
	ExecStartPre, ExecStartPost, ExecStop []ExecCommand
	// RestartSec is the wait before a restart (0: the supervisor's
	// backoff). TimeoutStartSec bounds ExecStartPre and ExecStartPost
	// (and a oneshot's ExecStart), TimeoutStopSec the wait from ExecStop
	// and SIGTERM to SIGKILL; 0 is the default, negative is "infinity".
	RestartSec, TimeoutStartSec, TimeoutStopSec time.Duration
	// RemainAfterExit keeps a oneshot unit "active" after it exited 0.
	RemainAfterExit bool
	// WantedBy is informational: slate starts every enabled unit.
	WantedBy []string
	// Contents is the unit file as given, stored under UnitDir by Apply.
	Contents string
}

// ExecCommand is one ExecStartPre=, ExecStartPost= or ExecStop= line.
type ExecCommand struct {
	Argv []string
	// IgnoreFailure is systemd's "-" prefix: a failure is logged only.
	IgnoreFailure bool
}

// EnvironmentFile is one EnvironmentFile= entry.
type EnvironmentFile struct {
	Path string
	// Optional is systemd's "-" prefix: a missing file is not an error.
	Optional bool
}

// ParseUnit translates the contents of the service unit name. Errors name
// the section and directive that slate does not support.
func ParseUnit(name, contents string) (Unit, error) {
	u := Unit{Name: name, Enabled: true, Type: "simple", Restart: configs.RestartNever, Contents: contents}
	if err := CheckUnitName(name); err != nil {
		return u, err
	}
	opts, err := unit.DeserializeOptions(strings.NewReader(contents))
	if err != nil {
		return u, fmt.Errorf("unit %q: %w", name, err)
	}
	haveService := false
	for _, o := range opts {
		// go-systemd keeps "\\\n" of continued lines; systemd joins them
		// with a space.
		val := strings.TrimSpace(strings.ReplaceAll(o.Value, "\\\n", " "))
		if err := u.set(o.Section, o.Name, val, &haveService); err != nil {
			return u, fmt.Errorf("[%s] %s: %w", o.Section, o.Name, err)
		}
	}
	if !haveService {
		return u, errors.New("no [Service] section: slate runs only services")
	}
	if len(u.ExecStart) == 0 {
		return u, errors.New("[Service] ExecStart is missing")
	}
	if u.RemainAfterExit && u.Type != "oneshot" {
		// systemd accepts it for simple services too, but slate's
		// supervisor only tracks it for oneshot ones.
		return u, errors.New("[Service] RemainAfterExit is supported only with Type=oneshot")
	}
	if err := u.check(); err != nil {
		return u, err
	}
	return u, nil
}

// directives name, for a field of the spec's service, the unit's
// directive that sets it.
var directives = map[string]string{
	"name": "unit name", "command": "[Service] ExecStart", "args": "[Service] ExecStart",
	"env": "[Service] Environment", "restart": "[Service] Restart", "type": "[Service] Type",
	"user": "[Service] User", "working_directory": "[Service] WorkingDirectory",
	"environment_file": "[Service] EnvironmentFile",
}

// check runs the one validation of a service (configs.CheckService, as
// the spec and PID 1 do) on the service the unit becomes, so that a
// config PID 1 would refuse is refused before anything is applied.
func (u *Unit) check() error {
	svc := configs.Service{
		Name: strings.TrimSuffix(u.Name, ".service"), Command: u.ExecStart[0], Args: u.ExecStart[1:],
		Env: u.Environment, Restart: u.Restart, Type: u.Type, User: u.User, WorkingDirectory: u.WorkingDirectory,
	}
	for _, f := range u.EnvironmentFiles {
		p := f.Path
		if f.Optional {
			p = "-" + p
		}
		svc.EnvironmentFile = append(svc.EnvironmentFile, p)
	}
	var bad []string
	for _, p := range configs.CheckService(svc) {
		field := p.Field
		if i := strings.IndexAny(field, ".["); i >= 0 {
			field = field[:i]
		}
		bad = append(bad, directives[field]+": "+p.Msg)
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// set applies one directive.
func (u *Unit) set(section, key, val string, haveService *bool) error {
	switch section {
	case "Unit":
		switch key {
		case "Description":
			u.Description = val
		case "Documentation":
			// informational
		case "After":
			u.After = appendList(u.After, val)
		case "Requires":
			u.Requires = appendList(u.Requires, val)
		case "Before":
			u.Before = appendList(u.Before, val)
		case "Wants":
			u.Wants = appendList(u.Wants, val)
		default:
			return errors.New("is not supported")
		}
	case "Service":
		*haveService = true
		return u.setService(key, val)
	case "Install":
		switch key {
		case "WantedBy":
			u.WantedBy = appendList(u.WantedBy, val)
		default:
			return errors.New("is not supported")
		}
	default:
		return errors.New("section is not supported")
	}
	return nil
}

func (u *Unit) setService(key, val string) error {
	switch key {
	case "Type":
		switch val {
		case "simple", "exec", "":
			u.Type = "simple"
		case "oneshot":
			u.Type = "oneshot"
		default:
			//lint:ignore ST1005 Type= is the unit file's key, spelt as systemd spells it
			return fmt.Errorf("Type=%s is not supported (simple, exec or oneshot)", val)
		}
	case "ExecStart":
		if val == "" { // an empty assignment resets the list
			u.ExecStart = nil
			return nil
		}
		if u.ExecStart != nil {
			return errors.New("only one ExecStart is supported")
		}
		argv, err := splitCommand(val)
		if err != nil {
			return err
		}
		u.ExecStart = argv
	case "Restart":
		switch val {
		case "no", "":
			u.Restart = configs.RestartNever
		case "always":
			u.Restart = configs.RestartAlways
		case "on-failure":
			u.Restart = configs.RestartOnFailure
		default:
			//lint:ignore ST1005 Restart= is the unit file's key, spelt as systemd spells it
			return fmt.Errorf("Restart=%s is not supported (no, always or on-failure)", val)
		}
	case "Environment":
		if val == "" {
			u.Environment = nil
			return nil
		}
		words, err := splitWords(val, false)
		if err != nil {
			return err
		}
		for _, w := range words {
			k, v, ok := strings.Cut(w, "=")
			if !ok || !validEnvName(k) {
				return fmt.Errorf("%q is not NAME=value", w)
			}
			if u.Environment == nil {
				u.Environment = map[string]string{}
			}
			u.Environment[k] = v
		}
	case "EnvironmentFile":
		if val == "" {
			u.EnvironmentFiles = nil
			return nil
		}
		ef := EnvironmentFile{Path: val}
		if strings.HasPrefix(val, "-") {
			ef = EnvironmentFile{Path: val[1:], Optional: true}
		}
		if !path.IsAbs(ef.Path) {
			return fmt.Errorf("%q is not an absolute path", ef.Path)
		}
		u.EnvironmentFiles = append(u.EnvironmentFiles, ef)
	case "ExecStartPre", "ExecStartPost", "ExecStop":
		list := map[string]*[]ExecCommand{"ExecStartPre": &u.ExecStartPre, "ExecStartPost": &u.ExecStartPost, "ExecStop": &u.ExecStop}[key]
		if val == "" {
			*list = nil
			return nil
		}
		c := ExecCommand{}
		if strings.HasPrefix(val, "-") {
			c.IgnoreFailure, val = true, val[1:]
		}
		argv, err := splitCommand(val)
		if err != nil {
			return err
		}
		c.Argv = argv
		*list = append(*list, c)
	case "RestartSec", "TimeoutStartSec", "TimeoutStopSec", "TimeoutSec":
		d, err := parseTimespan(val)
		if err != nil {
			return err
		}
		switch key {
		case "RestartSec":
			if d < 0 {
				return errors.New("infinity is not a restart delay")
			}
			u.RestartSec = d
		case "TimeoutStartSec":
			u.TimeoutStartSec = d
		case "TimeoutStopSec":
			u.TimeoutStopSec = d
		default: // TimeoutSec sets both
			u.TimeoutStartSec, u.TimeoutStopSec = d, d
		}
	case "User":
		if val == "" || strings.ContainsAny(val, " \t:/") {
			return fmt.Errorf("%q is not a user name or number", val)
		}
		u.User = val
	case "WorkingDirectory":
		if !path.IsAbs(val) {
			return fmt.Errorf("%q is not an absolute path (\"-\" and \"~\" are not supported)", val)
		}
		u.WorkingDirectory = val
	case "RemainAfterExit":
		b, err := parseBool(val)
		if err != nil {
			return err
		}
		u.RemainAfterExit = b
	default:
		return errors.New("is not supported")
	}
	return nil
}

// appendList adds the space-separated unit names of val; an empty value
// resets the list, as in systemd.
func appendList(list []string, val string) []string {
	if val == "" {
		return nil
	}
	return append(list, strings.Fields(val)...)
}

// timeUnits are systemd.time(7)'s time span units.
var timeUnits = map[string]time.Duration{
	"us": time.Microsecond, "usec": time.Microsecond, "ms": time.Millisecond, "msec": time.Millisecond,
	"": time.Second, "s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
}

// parseTimespan reads a systemd time span ("90", "1min 30s", "500ms",
// "infinity"); a bare number is seconds and infinity is -1.
func parseTimespan(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "infinity" {
		return -1, nil
	}
	if s == "" {
		return 0, errors.New("empty time span")
	}
	var total time.Duration
	rest := s
	for rest != "" {
		rest = strings.TrimLeft(rest, " \t")
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("%q is not a time span (like 90, 1min 30s or 500ms)", s)
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a time span: %w", s, err)
		}
		rest = strings.TrimLeft(rest[i:], " \t")
		j := 0
		for j < len(rest) && (rest[j] >= 'a' && rest[j] <= 'z') {
			j++
		}
		unit, ok := timeUnits[rest[:j]]
		if !ok {
			return 0, fmt.Errorf("%q: unknown time unit %q", s, rest[:j])
		}
		rest = rest[j:]
		if n*float64(unit) > float64(365*24*time.Hour) {
			return 0, fmt.Errorf("%q is longer than a year; use infinity", s)
		}
		total += time.Duration(n * float64(unit))
	}
	return total, nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "yes", "y", "true", "t", "on":
		return true, nil
	case "0", "no", "n", "false", "f", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean", s)
}

func validEnvName(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range k {
		if c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}

// splitCommand splits an ExecStart= value into argv following
// systemd.service(5) "Command lines", for the subset slate runs: no prefix
// characters ("-", "@", ":", "+", "!"), an absolute executable, no ";"
// command separator and no variable expansion ("$$" is a literal "$").
func splitCommand(s string) ([]string, error) {
	if s != "" && strings.ContainsRune("-@:+!|", rune(s[0])) {
		return nil, fmt.Errorf("prefix %q is not supported", s[:1])
	}
	argv, err := splitWords(s, true)
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	if !path.IsAbs(argv[0]) {
		return nil, fmt.Errorf("executable %q is not an absolute path", argv[0])
	}
	return argv, nil
}

// splitWords splits s on whitespace outside quotes, as systemd's
// extract_first_word does for command lines and Environment=: single and
// double quotes group text (anywhere in a word, and are removed), C-style
// escapes are decoded inside and outside quotes, "%%" is "%" and other
// specifiers are refused. With command set, "$$" is "$", any other "$" is
// refused (slate does not expand variables) and a bare ";" word (the
// command separator) is refused.
func splitWords(s string, command bool) ([]string, error) {
	if !utf8.ValidString(s) {
		return nil, errors.New("not valid UTF-8")
	}
	if strings.IndexByte(s, 0) >= 0 { // an argument cannot hold one
		return nil, errors.New("contains a NUL byte")
	}
	var words []string
	var w strings.Builder
	inWord, start := false, 0
	quote := byte(0)
	end := func(i int) error {
		if command && s[start:i] == ";" {
			return errors.New("multiple commands separated by \";\" are not supported")
		}
		words = append(words, w.String())
		w.Reset()
		inWord = false
		return nil
	}
	for i := 0; i < len(s); {
		c := s[i]
		if quote == 0 && isSpace(c) {
			if inWord {
				if err := end(i); err != nil {
					return nil, err
				}
			}
			i++
			continue
		}
		if !inWord {
			inWord, start = true, i
		}
		switch {
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
			i++
		case quote != 0 && c == quote:
			quote = 0
			i++
		case c == '\\':
			r, n, err := unescape(s[i:])
			if err != nil {
				return nil, err
			}
			w.WriteString(r)
			i += n
		case c == '%':
			if i+1 >= len(s) || s[i+1] != '%' {
				return nil, fmt.Errorf("specifier at offset %d is not supported (write %%%% for %%)", i)
			}
			w.WriteByte('%')
			i += 2
		case c == '$' && command:
			if i+1 >= len(s) || s[i+1] != '$' {
				return nil, fmt.Errorf("variable expansion at offset %d is not supported (write $$ for $)", i)
			}
			w.WriteByte('$')
			i += 2
		default:
			w.WriteByte(c)
			i++
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		if err := end(len(s)); err != nil {
			return nil, err
		}
	}
	return words, nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

var simpleEscapes = map[byte]string{'a': "\a", 'b': "\b", 'f': "\f", 'n': "\n", 'r': "\r", 't': "\t", 'v': "\v",
	'\\': "\\", '"': "\"", '\'': "'", 's': " ", ' ': " ", ';': ";"}

// unescape decodes the C-style escape at the start of s (s[0] is '\\') and
// returns its text and length, as systemd's cunescape does.
func unescape(s string) (string, int, error) {
	if len(s) < 2 {
		return "", 0, errors.New("trailing backslash")
	}
	if r, ok := simpleEscapes[s[1]]; ok {
		return r, 2, nil
	}
	switch c := s[1]; {
	case c == 'x':
		if len(s) < 4 {
			return "", 0, errors.New("short \\x escape")
		}
		v, err := strconv.ParseUint(s[2:4], 16, 8)
		if err != nil || v == 0 {
			return "", 0, fmt.Errorf("bad escape %q", s[:4])
		}
		return string([]byte{byte(v)}), 4, nil
	case c >= '0' && c <= '7':
		if len(s) < 4 {
			return "", 0, errors.New("short octal escape")
		}
		v, err := strconv.ParseUint(s[1:4], 8, 16)
		if err != nil || v == 0 || v > 0377 {
			return "", 0, fmt.Errorf("bad escape %q", s[:4])
		}
		return string([]byte{byte(v)}), 4, nil
	case c == 'u' || c == 'U':
		n := 4
		if c == 'U' {
			n = 8
		}
		if len(s) < 2+n {
			return "", 0, fmt.Errorf("short \\%c escape", c)
		}
		v, err := strconv.ParseUint(s[2:2+n], 16, 32)
		if err != nil || v == 0 || !utf8.ValidRune(rune(v)) {
			return "", 0, fmt.Errorf("bad escape %q", s[:2+n])
		}
		return string(rune(v)), 2 + n, nil
	}
	return "", 0, fmt.Errorf("unknown escape %q", s[:2])
}

// ReservedServices are services of every image that a config's unit may
// not replace: slate's own updater (system.UpdaterService).
var ReservedServices = []string{"slate-updated"}

// maxServiceName and serviceNameRe are slate's service-name rules
// (configs: $.services[].name); a unit becomes the service named like it
// without ".service".
const maxServiceName = 63

var serviceNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)

// CheckUnitName checks a unit name against systemd's unit-name rules
// (at most 255 bytes of [A-Za-z0-9:_.\-@], a non-empty name before the
// suffix) and, since slate runs the unit as a service named like it, the
// spec's service-name rules: lowercase letters, digits, '_', '.' and '-',
// starting with a letter or digit, at most 63 characters. A name that
// passes can be printed on the console and named in a file.
func CheckUnitName(name string) error {
	if len(name) > 255 {
		return fmt.Errorf("unit name of %d bytes: systemd allows at most 255", len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(":_.-\\@", c) >= 0) {
			return fmt.Errorf("unit name %q: byte %#02x at offset %d is not allowed in a unit name", name, c, i)
		}
	}
	base, ok := strings.CutSuffix(name, ".service")
	if !ok {
		return fmt.Errorf("unit %q: slate runs only service units (name ending in .service)", name)
	}
	if strings.Contains(base, "@") {
		return fmt.Errorf("unit %q: template units are not supported", name)
	}
	if len(base) > maxServiceName {
		return fmt.Errorf("unit %q: the service name is %d characters; at most %d are allowed", name, len(base), maxServiceName)
	}
	if !serviceNameRe.MatchString(base) {
		return fmt.Errorf("unit %q: %q is not a valid service name: lowercase letters, digits, '_', '.' and '-', starting with a letter or digit", name, base)
	}
	return nil
}

// WellKnownTargets are the systemd targets a unit may name in After=,
// Before=, Requires= and Wants= although slate has no such unit, with
// what they mean on slate (see the supervisor's targets):
// network-online.target is reached once DHCP has a lease (or gave up, or
// there is no DHCP), the others when the services start;
// multi-user.target and default.target once every service not ordered
// after them has started.
var WellKnownTargets = map[string]bool{
	"network-online.target": true, "network.target": true, "network-pre.target": true,
	"multi-user.target": true, "default.target": true, "basic.target": true,
	"sysinit.target": true, "local-fs.target": true,
}
