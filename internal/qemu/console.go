package qemu

import (
	"bytes"
	"strings"
)

// maxLine bounds a console line: a guest that prints without newlines must not
// make the harness hold an ever growing partial line.
const maxLine = 64 << 10

// lineSplitter turns the serial byte stream, cut anywhere, into lines with
// every \r removed (firmware and kernels end lines with \r\n).
type lineSplitter struct {
	partial []byte
}

// write consumes p and returns the lines it completed.
func (s *lineSplitter) write(p []byte) []string {
	var out []string
	for len(p) > 0 {
		room := maxLine - len(s.partial)
		i := bytes.IndexByte(p, '\n')
		switch {
		case i >= 0 && i <= room:
			s.partial = append(s.partial, p[:i]...)
			p = p[i+1:]
			out = append(out, s.take())
		case len(p) < room:
			s.partial = append(s.partial, p...)
			p = nil
		default: // the line reaches maxLine: cut it there
			s.partial = append(s.partial, p[:room]...)
			p = p[room:]
			out = append(out, s.take())
		}
	}
	return out
}

// flush returns the unterminated last line, if any.
func (s *lineSplitter) flush() (string, bool) {
	if len(s.partial) == 0 {
		return "", false
	}
	return s.take(), true
}

func (s *lineSplitter) take() string {
	l := strings.ReplaceAll(string(s.partial), "\r", "")
	s.partial = s.partial[:0]
	return l
}
