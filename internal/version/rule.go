package version

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// MaxLen bounds a slate version: it names boot entries
// (slate-<version>-<slot>+<tries>.conf on a FAT ESP), channel folders and
// console lines.
const MaxLen = 64

// Semantic versioning 2.0.0 without build metadata: no leading zeros in
// numbers, dot-separated prerelease identifiers of [0-9A-Za-z-].
var rule = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)` +
	`(-(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?$`)

// Check is the one rule of what a slate version is, for an image's spec
// (version:) and a channel's manifest alike: semver MAJOR.MINOR.PATCH with
// an optional -prerelease, at most MaxLen characters, and no +build
// metadata (it takes no part in ordering, so two builds could not be told
// apart as newer or older, and '+' separates the tries counter in a boot
// entry's name). Its errors start with the quoted version; callers put
// the field in front.
func Check(s string) error {
	switch {
	case s == "":
		return fmt.Errorf(`"" is not a semantic version MAJOR.MINOR.PATCH[-prerelease] (like 1.2.3 or 2.0.0-rc.1)`)
	case len(s) > MaxLen:
		return fmt.Errorf("%.16q... is %d characters; at most %d are allowed", s, len(s), MaxLen)
	case strings.Contains(s, "+"):
		return fmt.Errorf("%q must not carry +build metadata ('+' is not allowed: build metadata takes no part in ordering, and boot entries are named slate-<version>-<slot>+<tries>.conf)", s)
	case !rule.MatchString(s):
		return fmt.Errorf("%q is not a semantic version MAJOR.MINOR.PATCH[-prerelease] (like 1.2.3 or 2.0.0-rc.1)", s)
	}
	return nil
}

// Compare orders two versions by semver precedence and returns -1, 0 or
// +1. A version that fails Check sorts before every valid one (so it is
// never taken as the newest); two invalid ones compare as strings.
func Compare(a, b string) int {
	va, erra := parse(a)
	vb, errb := parse(b)
	switch {
	case erra != nil && errb != nil:
		return strings.Compare(a, b)
	case erra != nil:
		return -1
	case errb != nil:
		return 1
	}
	return va.Compare(vb)
}

func parse(s string) (*semver.Version, error) {
	if err := Check(s); err != nil {
		return nil, err
	}
	return semver.StrictNewVersion(s)
}
