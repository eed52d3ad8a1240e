package configs

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// Size is a number of bytes. In YAML it is written as a whole number of
// bytes ("1048576") or with a binary unit: "4GiB", "256MiB", "1.5GiB". The
// one-letter units K, M, G and T are powers of 1024 too, as for dd, truncate
// and qemu-img, because disk sizes are always meant that way. "GB" and its
// kin are rejected: half the tools read them as powers of 1000, and a disk
// that is 7% smaller than intended fails late and confusingly.
type Size int64

// Binary size units.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

var sizeUnits = map[string]Size{
	"": 1, "b": 1,
	"k": KiB, "kib": KiB,
	"m": MiB, "mib": MiB,
	"g": GiB, "gib": GiB,
	"t": TiB, "tib": TiB,
}

// maxSizeText bounds the number part, so that a hostile spec cannot make
// the parser work on a million digits.
const maxSizeText = 64

// ParseSize reads a size written as in the spec. It accepts 0; the spec
// itself does not (see Size.UnmarshalYAML).
func ParseSize(s string) (Size, error) {
	bad := func(why string) (Size, error) {
		return 0, fmt.Errorf("%q is not a size: %s", s, why)
	}
	t := strings.TrimSpace(s)
	if t == "" {
		return bad("empty")
	}
	if len(t) > maxSizeText {
		return bad("too long")
	}
	if t[0] == '-' {
		return bad("negative")
	}
	// Split the number from the unit.
	i := 0
	for i < len(t) && (isDigit(t[i]) || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	mult, ok := sizeUnits[strings.ToLower(unit)]
	if !ok {
		switch strings.ToLower(unit) {
		case "kb", "mb", "gb", "tb":
			return bad(fmt.Sprintf("%q is ambiguous (1000 or 1024?); write %siB or %s for powers of 1024",
				unit, unit[:1], unit[:1]))
		}
		return bad(fmt.Sprintf("unknown unit %q; use a whole number of bytes or K, M, G, T, KiB, MiB, GiB, TiB (powers of 1024)", unit))
	}
	whole, frac, hasDot := strings.Cut(num, ".")
	if whole == "" || (hasDot && frac == "") || strings.Contains(frac, ".") {
		return bad("expected a number like 512MiB, 1.5GiB or 1048576")
	}
	// Exact arithmetic: whole.frac × unit must be a whole number of bytes.
	n, ok := new(big.Int).SetString(whole+frac, 10)
	if !ok {
		return bad("expected a number")
	}
	n.Mul(n, big.NewInt(int64(mult)))
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil)
	q, r := new(big.Int).QuoRem(n, den, new(big.Int))
	if r.Sign() != 0 {
		return bad("not a whole number of bytes")
	}
	if !q.IsInt64() {
		return bad(fmt.Sprintf("larger than the largest size (%d bytes)", int64(math.MaxInt64)))
	}
	return Size(q.Int64()), nil
}

// String writes the size with the largest binary unit that divides it
// exactly ("4GiB", "1536MiB"), or in bytes; ParseSize reads it back.
func (s Size) String() string {
	if s <= 0 {
		return strconv.FormatInt(int64(s), 10)
	}
	for _, u := range []struct {
		n    Size
		name string
	}{{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if s%u.n == 0 {
			return strconv.FormatInt(int64(s/u.n), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// Bytes is the size as a plain integer.
func (s Size) Bytes() int64 { return int64(s) }

// MarshalYAML writes the readable form.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

// UnmarshalYAML reads a scalar with ParseSize. An explicit 0 is an error:
// 0 means "not set" and would silently become the default.
func (s *Size) UnmarshalYAML(node ast.Node) error {
	text, null, err := scalarText(node, "a size like 4GiB or 256MiB")
	if err != nil || null {
		return err
	}
	v, err := ParseSize(text)
	if err != nil {
		return &valueError{node: node, msg: err.Error()}
	}
	if v == 0 {
		return &valueError{node: node, msg: "a size of 0 is not allowed; leave the field out to get the default"}
	}
	*s = v
	return nil
}

// valueError is a scalar that did not parse; Parse turns it into an *Error
// with the node's path and position.
type valueError struct {
	node ast.Node
	msg  string
}

func (e *valueError) Error() string { return e.msg }

// scalarText returns the source text of a scalar node (unquoted), or null
// for an empty value. Other nodes are an error that says what was expected.
func scalarText(node ast.Node, want string) (text string, null bool, err error) {
	for {
		switch n := node.(type) {
		case *ast.TagNode:
			node = n.Value
			continue
		case *ast.AnchorNode:
			node = n.Value
			continue
		}
		break
	}
	if node == nil {
		return "", true, nil
	}
	switch node.(type) {
	case *ast.NullNode:
		return "", true, nil
	case *ast.StringNode, *ast.IntegerNode, *ast.FloatNode, *ast.LiteralNode:
		if tk := node.GetToken(); tk != nil {
			return tk.Value, false, nil
		}
	}
	return "", false, &valueError{node: node, msg: fmt.Sprintf("expected %s, found %s", want, nodeKind(node))}
}

// nodeKind names a YAML node for error messages.
func nodeKind(node ast.Node) string {
	switch node.Type() {
	case ast.MappingType, ast.MappingValueType:
		return "a mapping"
	case ast.SequenceType:
		return "a list"
	case ast.BoolType:
		return "true/false"
	case ast.AliasType:
		return "an alias"
	case ast.NullType:
		return "null"
	}
	return "a " + node.Type().YAMLName()
}
