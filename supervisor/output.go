package supervisor

import (
	"bufio"
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
func copyLines(r io.Reader, console *lineWriter, prefix string, log io.Writer) {
	br := bufio.NewReaderSize(r, maxLine)
	buf := make([]byte, 0, len(prefix)+maxLine+1)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			buf = append(append(buf[:0], prefix...), line...)
			if buf[len(buf)-1] != '\n' {
				buf = append(buf, '\n')
			}
			console.writeLine(buf)
			if log != nil {
				_, _ = log.Write(buf[len(prefix):])
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}
