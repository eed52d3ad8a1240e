package builder

import (
	"sort"

	"github.com/slateos/slate/version"
)

func versionString() string { return version.Version }

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func sortStrings(ss []string) { sort.Strings(ss) }
