package kmod

import "strings"

// match reports whether name matches the shell pattern, with the semantics
// of fnmatch(3) called with no flags, which is what modprobe uses for
// module aliases: '*' matches any run of bytes (including '/'), '?' any one
// byte, '[...]' a set ('!' or '^' negates, a-b ranges, [:class:] names), and
// '\' makes the next byte literal. A '[' without its closing ']' is a literal
// '['. Matching is by byte and runs in O(len(pattern)*len(name)) at worst:
// no input can make it blow up.
func match(pattern, name string) bool {
	px, nx := 0, 0
	// Where to resume after a mismatch: the last '*' seen and the next
	// name position it should swallow up to.
	starPx, starNx := -1, 0
	for px < len(pattern) || nx < len(name) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				starPx, starNx = px, nx+1
				px++
				continue
			case '?':
				if nx < len(name) {
					px++
					nx++
					continue
				}
			case '[':
				if nx < len(name) {
					ok, width := matchBracket(pattern[px:], name[nx])
					if width == 0 { // no closing ']': a literal '['
						if name[nx] == '[' {
							px++
							nx++
							continue
						}
					} else if ok {
						px += width
						nx++
						continue
					}
				}
			case '\\':
				lit, w := byte('\\'), 1
				if px+1 < len(pattern) {
					lit, w = pattern[px+1], 2
				}
				if nx < len(name) && name[nx] == lit {
					px += w
					nx++
					continue
				}
			default:
				if nx < len(name) && name[nx] == c {
					px++
					nx++
					continue
				}
			}
		}
		if starPx >= 0 && starNx <= len(name) {
			px, nx = starPx, starNx
			continue
		}
		return false
	}
	return true
}

// matchBracket matches b against the bracket expression at the start of p
// (p[0] == '['). It returns whether b is in the set and the width of the
// expression; width 0 means the expression is not closed.
func matchBracket(p string, b byte) (bool, int) {
	i := 1
	negate := false
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		negate = true
		i++
	}
	in := false
	first := true
	for i < len(p) {
		c := p[i]
		if c == ']' && !first {
			return in != negate, i + 1
		}
		first = false
		if c == '[' && i+1 < len(p) && p[i+1] == ':' {
			if end := strings.Index(p[i+2:], ":]"); end >= 0 {
				if classMatch(p[i+2:i+2+end], b) {
					in = true
				}
				i += 2 + end + 2
				continue
			}
		}
		if c == '\\' && i+1 < len(p) {
			i++
			c = p[i]
		}
		lo := c
		i++
		// A range, unless the '-' is the last byte before ']'.
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			hi := p[i+1]
			i += 2
			if hi == '\\' && i < len(p) {
				hi = p[i]
				i++
			}
			if lo <= b && b <= hi {
				in = true
			}
			continue
		}
		if b == lo {
			in = true
		}
	}
	return false, 0
}

func classMatch(class string, b byte) bool {
	isUpper := 'A' <= b && b <= 'Z'
	isLower := 'a' <= b && b <= 'z'
	isDigit := '0' <= b && b <= '9'
	switch class {
	case "alpha":
		return isUpper || isLower
	case "upper":
		return isUpper
	case "lower":
		return isLower
	case "digit":
		return isDigit
	case "alnum":
		return isUpper || isLower || isDigit
	case "xdigit":
		return isDigit || ('a' <= b && b <= 'f') || ('A' <= b && b <= 'F')
	case "space":
		return b == ' ' || ('\t' <= b && b <= '\r')
	case "blank":
		return b == ' ' || b == '\t'
	case "punct":
		return b > ' ' && b < 0x7f && !isUpper && !isLower && !isDigit
	case "print":
		return b >= ' ' && b < 0x7f
	case "graph":
		return b > ' ' && b < 0x7f
	case "cntrl":
		return b < ' ' || b == 0x7f
	}
	return false
}

// literalPrefix is the part of pattern before its first special byte: every
// name the pattern matches starts with it.
func literalPrefix(pattern string) string {
	if i := strings.IndexAny(pattern, "*?[\\"); i >= 0 {
		return pattern[:i]
	}
	return pattern
}
