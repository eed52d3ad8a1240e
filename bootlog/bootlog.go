// Package bootlog sets up logging for slate's init and PID 1: logrus to
// the console and to the kernel log (/dev/kmsg), and the SLATE-... lines
// of the serial console contract, which tests, CI and people read.
package bootlog

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
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
	_, _ = fmt.Fprintf(w, "<%d>%s: %s\n", prio, tag, strings.ReplaceAll(msg, "\n", " "))
	return nil
}

// Event prints one contract line, "SLATE-<kind> k=v ...", to the console
// and the kernel log. Values with spaces or quotes are quoted.
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

// Format renders a contract line without printing it.
func Format(kind string, kv ...any) string {
	var b strings.Builder
	b.WriteString("SLATE-")
	b.WriteString(kind)
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteByte(' ')
		fmt.Fprintf(&b, "%v=", kv[i])
		b.WriteString(quote(fmt.Sprint(kv[i+1])))
	}
	return b.String()
}

func quote(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\"=") {
		return v
	}
	return fmt.Sprintf("%q", v)
}

// Since formats a duration in milliseconds for contract lines.
func Since(t time.Time) string { return fmt.Sprintf("%dms", time.Since(t).Milliseconds()) }
