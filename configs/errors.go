package configs

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a spec. Path is a JSON path into the spec
// ("$.disk.root", "$.services[1].name"); "$" is the document as a whole.
// Line and Column are 1-based and 0 when unknown (for example for a field
// that is missing, or when the spec was built in code). Error() shows the
// line only; the message of a YAML syntax error names the column.
type Error struct {
	File   string
	Path   string
	Line   int
	Column int
	Msg    string
}

// Error reads like a compiler message, so that editors can jump to it:
//
//	configs/default.yaml:12: $.disk.root: "12XB" is not a size
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is what Parse, Validate and CheckFiles return when more than one
// field is wrong: every problem, sorted by path. errors.As with an *Error
// target finds the first one.
type ErrorList []*Error

// Error puts one problem on each line.
func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As and errors.Is look at each problem.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// collector gathers the problems of one check.
type collector struct {
	errs ErrorList
}

func (c *collector) add(path, format string, args ...any) {
	c.errs = append(c.errs, &Error{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// err returns nil, the single *Error, or the sorted ErrorList.
func (c *collector) err() error {
	switch len(c.errs) {
	case 0:
		return nil
	case 1:
		return c.errs[0]
	}
	slices.SortStableFunc(c.errs, func(a, b *Error) int { return comparePaths(a.Path, b.Path) })
	return c.errs
}

// comparePaths orders paths as a reader expects: numbers inside brackets
// by value, so that $.services[2] comes before $.services[10].
func comparePaths(a, b string) int {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			na, ra := digitRun(a)
			nb, rb := digitRun(b)
			// Compare by length first (no leading zeros in indexes), then text.
			if c := len(na) - len(nb); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = ra, rb
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func digitRun(s string) (run, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	n := strings.TrimLeft(s[:i], "0")
	return n, s[i:]
}

// key appends a mapping key to a JSON path: .name for plain keys, ["x y"]
// for anything else so the path stays unambiguous.
func key(path, k string) string {
	if plainKey(k) {
		return path + "." + k
	}
	return path + "[" + strconv.Quote(k) + "]"
}

// index appends a sequence index to a JSON path.
func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && (isDigit(c) || c == '-'):
		default:
			return false
		}
	}
	return true
}
