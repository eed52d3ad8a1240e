package configs

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// Mode is a Unix permission mode (with the setuid, setgid and sticky bits),
// 0 when not set. It is always read as octal, quoted or not, with or without
// a leading 0 or 0o: "0755", 755 and 0o755 are all rwxr-xr-x. Nobody means
// decimal 755 for a mode, and YAML 1.1 and 1.2 disagree about 0755.
type Mode uint32

// MaxMode is the largest mode: every permission bit plus setuid, setgid and
// sticky.
const MaxMode Mode = 0o7777

// ParseMode reads a mode in octal.
func ParseMode(s string) (Mode, error) {
	t := strings.TrimSpace(s)
	digits := t
	if len(digits) > 2 && digits[0] == '0' && (digits[1] == 'o' || digits[1] == 'O') {
		digits = digits[2:]
	}
	if digits == "" || strings.Trim(digits, "01234567") != "" {
		return 0, fmt.Errorf("%q is not a mode: use octal digits 0-7, like \"0644\" or \"0755\"", s)
	}
	// Leading zeros are fine ("00755"); more than four significant digits
	// cannot fit.
	sig := strings.TrimLeft(digits, "0")
	if len(sig) > 4 {
		return 0, fmt.Errorf("%q is not a mode: larger than %#o", s, MaxMode)
	}
	v, err := strconv.ParseUint("0"+sig, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a mode: %w", s, err)
	}
	return Mode(v), nil
}

// String writes the mode as four octal digits ("0755").
func (m Mode) String() string { return fmt.Sprintf("%04o", uint32(m)) }

// FileMode converts to Go's fs.FileMode, moving setuid, setgid and sticky
// to Go's own bits (they are not the Unix bits in fs.FileMode).
func (m Mode) FileMode() fs.FileMode {
	fm := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		fm |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		fm |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}

// MarshalYAML writes the mode as a quoted octal string, which every YAML
// reader takes the same way.
func (m Mode) MarshalYAML() (any, error) { return m.String(), nil }

// UnmarshalYAML reads a scalar with ParseMode. An explicit 0 is an error:
// 0 means "keep the host mode", not "no permissions".
func (m *Mode) UnmarshalYAML(node ast.Node) error {
	text, null, err := scalarText(node, `an octal mode like "0644"`)
	if err != nil || null {
		return err
	}
	v, err := ParseMode(text)
	if err != nil {
		return &valueError{node: node, msg: err.Error()}
	}
	if v == 0 {
		return &valueError{node: node, msg: "mode 0 is not allowed; leave the field out to keep the host file's mode"}
	}
	*m = v
	return nil
}
