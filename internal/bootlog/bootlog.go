// Package bootlog sets up logging for slate's init and PID 1: logrus to
// the console and to the kernel log (/dev/kmsg), and the SLATE-... lines
// of the serial console contract, which tests, CI and people read.
package bootlog

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/internal/redact"
)

var (
	mu      sync.Mutex
	console io.Writer = os.Stdout
	events  io.Writer // where Event lines go; console when nil
	kmsg    io.Writer
	tag     = "slate"
)

// Setup sends logrus output to w (the console) and, when /dev/kmsg can be
// opened, to the kernel log with the given tag.
func Setup(w io.Writer, name string) {
	mu.Lock()
	defer mu.Unlock()
	console = w
	tag = name
	if f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
		kmsg = f
	}
	logrus.SetOutput(w)
	logrus.SetFormatter(&logrus.TextFormatter{
		DisableColors:   true,
		FullTimestamp:   true,
		TimestampFormat: "15:04:05.000",
	})
	logrus.AddHook(kmsgHook{})
}

// SetEvents sends Event lines to w instead of the log output.
func SetEvents(w io.Writer) {
	mu.Lock()
	defer mu.Unlock()
	events = w
}

type kmsgHook struct{}

func (kmsgHook) Levels() []logrus.Level { return logrus.AllLevels }

func (kmsgHook) Fire(e *logrus.Entry) error {
	mu.Lock()
	w := kmsg
	mu.Unlock()
	if w == nil {
		return nil
	}
	prio := 6
	switch e.Level {
	case logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel:
		prio = 3
	case logrus.WarnLevel:
		prio = 4
	case logrus.DebugLevel, logrus.TraceLevel:
		prio = 7
	}
	msg := e.Message
	for k, v := range e.Data {
		msg += fmt.Sprintf(" %s=%v", k, v)
	}
	// One write per record: /dev/kmsg takes one record per write.
	// The kernel prints records of error level on the console as they
	// are: no newline, carriage return or other control character may
	// reach it raw, or a message could start a line of its own there.
	msg = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == 0x2028 || r == 0x2029 || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, msg)
	_, _ = fmt.Fprintf(w, "<%d>%s: %s\n", prio, tag, msg)
	return nil
}

// Event prints one contract line, "SLATE-<kind> k=v ...", to the console
// and the kernel log. See Format for how values are written.
func Event(kind string, kv ...any) {
	line := Format(kind, kv...)
	mu.Lock()
	w, k := console, kmsg
	if events != nil {
		w = events
	}
	mu.Unlock()
	_, _ = io.WriteString(w, line+"\n")
	if k != nil {
		_, _ = fmt.Fprintf(k, "<5>%s: %s\n", tag, line)
	}
}

// Format renders a contract line without printing it: "SLATE-<KIND>"
// followed by " key=value" for each pair of kv. It is the only writer of
// SLATE- lines, so that one rule keeps them parseable whatever the values
// hold (a unit name, an error message, a URL):
//
//   - the kind is upper-case letters and '_', keys are lower-case letters
//     and '_' (anything else is replaced by '_': they are fixed names in
//     slate's code, never input);
//   - a value is written bare when it is non-empty printable ASCII without
//     space, '"', '\' or '='; any other value is written as a Go quoted
//     string with only ASCII in it (strconv.QuoteToASCII): newlines,
//     carriage returns, other control characters, quotes, backslashes and
//     non-ASCII characters are escaped (\n, \r, \x1b, \", \\, \u2028).
//
// So a line is always one line of printable ASCII, and Parse reads back
// exactly the values given. A lone last key gets the value "".
func Format(kind string, kv ...any) string {
	var b strings.Builder
	b.WriteString("SLATE-")
	b.WriteString(ident(kind, 'A', 'Z'))
	for i := 0; i < len(kv); i += 2 {
		b.WriteByte(' ')
		b.WriteString(ident(fmt.Sprint(kv[i]), 'a', 'z'))
		b.WriteByte('=')
		v := ""
		if i+1 < len(kv) {
			// A URL's credentials and tokens never reach the console,
			// whichever package prints it.
			v = redact.Message(fmt.Sprint(kv[i+1]))
		}
		b.WriteString(quote(v))
	}
	return b.String()
}

// ident keeps a kind to [A-Z_]+, a key to [a-z_][a-z0-9_]* (sha256,
// mib_s).
func ident(s string, lo, hi byte) string {
	if s == "" {
		return "_"
	}
	b := []byte(s)
	for i, c := range b {
		if !identByte(c, i, lo, hi) {
			b[i] = '_'
		}
	}
	return string(b)
}

// identByte: a key (lo 'a') may have digits after its first byte.
func identByte(c byte, i int, lo, hi byte) bool {
	return c >= lo && c <= hi || c == '_' || lo == 'a' && i > 0 && c >= '0' && c <= '9'
}

// bare reports whether v can be written without quotes.
func bare(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == '=' {
			return false
		}
	}
	return true
}

func quote(v string) string {
	if bare(v) {
		return v
	}
	return strconv.QuoteToASCII(v)
}

// KV is one key and value of a contract line.
type KV struct{ Key, Value string }

// Parse reads a line written by Format: its kind and its keys and values
// in order. It is strict: anything Format would not write is an error
// naming the byte at fault.
func Parse(line string) (kind string, kvs []KV, err error) {
	rest, ok := strings.CutPrefix(line, "SLATE-")
	if !ok {
		return "", nil, fmt.Errorf("contract line %.40q: does not start with SLATE-", line)
	}
	n := identLen(rest, 'A', 'Z')
	if n == 0 {
		return "", nil, fmt.Errorf("contract line %.40q: no kind after SLATE-", line)
	}
	kind, rest = rest[:n], rest[n:]
	for rest != "" {
		at := len(line) - len(rest)
		if rest[0] != ' ' {
			return "", nil, fmt.Errorf("contract line: byte %d: want a space, got %q", at, rest[0])
		}
		rest = rest[1:]
		n := identLen(rest, 'a', 'z')
		if n == 0 || n >= len(rest) || rest[n] != '=' {
			return "", nil, fmt.Errorf("contract line: byte %d: want key=value", at+1)
		}
		key := rest[:n]
		rest = rest[n+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return "", nil, fmt.Errorf("contract line: byte %d: value of %s: %w", len(line)-len(rest), key, err)
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			end := strings.IndexByte(rest, ' ')
			if end < 0 {
				end = len(rest)
			}
			val = rest[:end]
			if !bare(val) {
				return "", nil, fmt.Errorf("contract line: byte %d: value of %s must be quoted", len(line)-len(rest), key)
			}
			rest = rest[end:]
		}
		kvs = append(kvs, KV{key, val})
	}
	return kind, kvs, nil
}

func identLen(s string, lo, hi byte) int {
	i := 0
	for i < len(s) && identByte(s[i], i, lo, hi) {
		i++
	}
	return i
}

// Since formats a duration in milliseconds for contract lines.
func Since(t time.Time) string { return fmt.Sprintf("%dms", time.Since(t).Milliseconds()) }
