package supervisor

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// maxEnvFile bounds an environment file read into PID 1's memory.
const maxEnvFile = 1 << 20

// parseEnvironmentFile reads KEY=VALUE assignments the way systemd's
// EnvironmentFile= does, so files written for units work unchanged:
//
//   - blank lines and lines whose first non-blank character is # or ; are
//     comments (a # later in a line is part of the value);
//   - whitespace around the key and the value is dropped, and an
//     "export " before the key is allowed;
//   - a value may be quoted, in whole or in parts: '...' keeps everything
//     as is, "..." takes \" \\ \$ and \` as escapes and joins a
//     backslash-newline; both may span lines;
//   - outside quotes a backslash keeps the next character, and a
//     backslash at the end of a line joins the next line.
//
// A later assignment of a key replaces an earlier one. Malformed lines are
// errors naming their line: a service started with half its settings is
// worse than one that reports why it did not start.
func parseEnvironmentFile(data string) (map[string]string, error) {
	vars := map[string]string{}
	line := 1
	i := 0
	for i < len(data) {
		// Start of a line: skip blanks, then comments.
		for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n') {
			if data[i] == '\n' {
				line++
			}
			i++
		}
		if i >= len(data) {
			break
		}
		if data[i] == '#' || data[i] == ';' {
			for i < len(data) && data[i] != '\n' {
				i++
			}
			continue
		}
		start := line
		eq := strings.IndexAny(data[i:], "=\n")
		if eq < 0 || data[i+eq] != '=' {
			return nil, fmt.Errorf("line %d: no '=' in an assignment", start)
		}
		k := strings.TrimSpace(data[i : i+eq])
		if rest, ok := strings.CutPrefix(k, "export"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			k = strings.TrimSpace(rest)
		}
		if !validEnvKey(k) {
			return nil, fmt.Errorf("line %d: %q is not a variable name", start, k)
		}
		i += eq + 1
		v, n, lines, err := envValueAt(data[i:])
		line += lines
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", start, k, err)
		}
		i += n
		vars[k] = v
	}
	return vars, nil
}

// envValueAt reads a value up to the end of its (possibly continued) line.
// It returns the value, the bytes consumed (not counting the ending
// newline) and the newlines consumed.
func envValueAt(s string) (string, int, int, error) {
	var b strings.Builder
	lines := 0
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	// pending holds unquoted blanks: kept only if more of the value
	// follows, so trailing blanks are dropped but inner ones are not.
	pending := ""
	flush := func() {
		b.WriteString(pending)
		pending = ""
	}
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\n':
			return finishValue(b.String(), i, lines)
		case c == '\r' && (i+1 == len(s) || s[i+1] == '\n'):
			i++ // CRLF files
		case c == ' ' || c == '\t' || c == '\r':
			pending += string(c)
			i++
		case c == '\'':
			flush()
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return "", 0, lines, errors.New("unterminated single quote")
			}
			q := s[i+1 : i+1+end]
			lines += strings.Count(q, "\n")
			b.WriteString(q)
			i += end + 2
		case c == '"':
			flush()
			i++
			closed := false
			for i < len(s) && !closed {
				switch c := s[i]; {
				case c == '"':
					closed = true
				case c == '\\' && i+1 < len(s):
					switch n := s[i+1]; n {
					case '"', '\\', '$', '`':
						b.WriteByte(n)
					case '\n':
						lines++
					default:
						b.WriteByte(c)
						b.WriteByte(n)
					}
					i++
				default:
					if c == '\n' {
						lines++
					}
					b.WriteByte(c)
				}
				i++
			}
			if !closed {
				return "", 0, lines, errors.New("unterminated double quote")
			}
		case c == '\\':
			flush()
			if i+1 < len(s) {
				if s[i+1] == '\n' {
					lines++
				} else {
					b.WriteByte(s[i+1])
				}
				i += 2
			} else {
				i++
			}
		default:
			flush()
			b.WriteByte(c)
			i++
		}
	}
	return finishValue(b.String(), i, lines)
}

func finishValue(v string, n, lines int) (string, int, int, error) {
	if strings.IndexByte(v, 0) >= 0 {
		return "", 0, lines, errors.New("value contains a NUL byte")
	}
	return v, n, lines, nil
}

// validEnvKey is the configs rule for variable names:
// [A-Za-z_][A-Za-z0-9_]*.
func validEnvKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && '0' <= c && c <= '9':
		default:
			return false
		}
	}
	return true
}

// readEnvironmentFiles merges the files of a service's EnvironmentFile in
// order into vars. A path with a leading "-" is skipped when it does not
// exist.
func readEnvironmentFiles(vars map[string]string, files []string) error {
	for _, f := range files {
		path, optional := strings.CutPrefix(f, "-")
		data, err := readLimited(path, maxEnvFile)
		if err != nil {
			if optional && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("environment file: %w", err)
		}
		kv, err := parseEnvironmentFile(string(data))
		if err != nil {
			return fmt.Errorf("environment file %s: %w", path, err)
		}
		for k, v := range kv {
			vars[k] = v
		}
	}
	return nil
}

// readLimited reads a whole file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
