package supervisor

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
)

// maxLine is where a line without a newline is cut, so a service that
// writes without newlines cannot grow PID 1's memory.
const maxLine = 4096

// lineWriter serialises whole lines to the console so that lines of
// different services and SLATE- lines never interleave.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// writeLine writes b, which ends in a newline, in one Write call. A console
// that fails (no reader on a serial port, a closed pipe in a test) must not
// stop the supervisor, so errors are dropped.
func (l *lineWriter) writeLine(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(b)
}

// copyLines copies r line by line: each line with prefix to the console and
// as is to log (when not nil). A last line without a newline gets one.
//
// A carriage return ends a line on the console too: a terminal returns to
// the start of the line there, so "\rSLATE-READY ..." would show, and a
// reader that drops \r would see, text that does not start with the
// prefix. Each piece between carriage returns is written as its own
// prefixed line (a \r\n line end is kept as it is).
func copyLines(r io.Reader, console *lineWriter, prefix string, log io.Writer) {
	br := bufio.NewReaderSize(r, maxLine)
	buf := make([]byte, 0, len(prefix)+maxLine+2)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			body, end := line, []byte("\n")
			switch {
			case bytes.HasSuffix(body, []byte("\r\n")):
				body, end = body[:len(body)-2], []byte("\r\n")
			case bytes.HasSuffix(body, []byte("\n")):
				body = body[:len(body)-1]
			}
			for {
				piece, more, cut := bytes.Cut(body, []byte("\r"))
				buf = append(append(buf[:0], prefix...), piece...)
				if !cut {
					console.writeLine(append(buf, end...))
					break
				}
				console.writeLine(append(buf, '\n'))
				body = more
			}
			if log != nil {
				buf = append(buf[:0], line...)
				if buf[len(buf)-1] != '\n' {
					buf = append(buf, '\n')
				}
				_, _ = log.Write(buf)
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}
