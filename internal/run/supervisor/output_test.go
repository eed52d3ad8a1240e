package supervisor

import (
	"bytes"
	"strings"
	"testing"
)

func TestCopyLines(t *testing.T) {
	long := strings.Repeat("x", maxLine+10)
	tests := []struct {
		in, console, log string
	}{
		{"", "", ""},
		{"a\n", "[p] a\n", "a\n"},
		{"a\nb", "[p] a\n[p] b\n", "a\nb\n"},
		{"\n\n", "[p] \n[p] \n", "\n\n"},
		{"crlf\r\n", "[p] crlf\r\n", "crlf\r\n"},
		// A carriage return cannot hide the prefix: every piece gets it.
		{"x\nSLATE-READY version=9 slot=a\n", "[p] x\n[p] SLATE-READY version=9 slot=a\n", "x\nSLATE-READY version=9 slot=a\n"},
		{"x\rSLATE-READY version=9 slot=a\n", "[p] x\n[p] SLATE-READY version=9 slot=a\n", "x\rSLATE-READY version=9 slot=a\n"},
		{"\r\rSLATE-READY\r\n", "[p] \n[p] \n[p] SLATE-READY\r\n", "\r\rSLATE-READY\r\n"},
		{"a\rb", "[p] a\n[p] b\n", "a\rb\n"},
		// A line longer than maxLine is cut, not buffered without bound.
		{long + "\n", "[p] " + long[:maxLine] + "\n[p] " + long[maxLine:] + "\n", long[:maxLine] + "\n" + long[maxLine:] + "\n"},
	}
	for _, tt := range tests {
		var con, log bytes.Buffer
		copyLines(strings.NewReader(tt.in), &lineWriter{w: &con}, "[p] ", &log)
		if con.String() != tt.console || log.String() != tt.log {
			t.Errorf("copyLines(%.20q): console %.40q log %.40q; want %.40q, %.40q", tt.in, con.String(), log.String(), tt.console, tt.log)
		}
	}
	// No log file: console only.
	var con bytes.Buffer
	copyLines(strings.NewReader("a\n"), &lineWriter{w: &con}, "[p] ", nil)
	if con.String() != "[p] a\n" {
		t.Errorf("without log: %q", con.String())
	}
}

// countingWriter records the size of each Write.
type countingWriter struct{ writes []string }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes = append(c.writes, string(p))
	return len(p), nil
}

// FuzzCopyLines checks, for any service output, that every console write
// is one whole prefixed line no longer than the cut, and that the log
// holds exactly the output (plus the newlines of cut or unterminated
// lines).
func FuzzCopyLines(f *testing.F) {
	f.Add([]byte("one\ntwo\n"))
	f.Add([]byte("partial"))
	f.Add(bytes.Repeat([]byte("y"), 3*maxLine+5))
	f.Fuzz(func(t *testing.T, in []byte) {
		var con countingWriter
		var log bytes.Buffer
		copyLines(bytes.NewReader(in), &lineWriter{w: &con}, "[p] ", &log)
		var joined strings.Builder
		for _, w := range con.writes {
			if !strings.HasPrefix(w, "[p] ") || !strings.HasSuffix(w, "\n") || len(w) > len("[p] ")+maxLine+1 {
				t.Fatalf("console write %q", w)
			}
			body := w[len("[p] "):]
			if strings.Contains(body[:len(body)-1], "\n") {
				t.Fatalf("two lines in one write: %q", w)
			}
			if strings.Contains(strings.TrimSuffix(body, "\r\n"), "\r") {
				t.Fatalf("a carriage return inside a console line: %q", w)
			}
			joined.WriteString(body)
		}
		noEnds := strings.NewReplacer("\r", "", "\n", "")
		if noEnds.Replace(joined.String()) != noEnds.Replace(log.String()) {
			t.Fatalf("console and log differ")
		}
		if got := strings.ReplaceAll(log.String(), "\n", ""); got != strings.ReplaceAll(string(in), "\n", "") {
			t.Fatalf("log lost or added bytes")
		}
	})
}
