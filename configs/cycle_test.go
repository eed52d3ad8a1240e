package configs

import (
	"slices"
	"testing"
)

// TestDependencyCycleShared is the table of the one cycle check the spec's
// validation and the supervisor share.
func TestDependencyCycleShared(t *testing.T) {
	for _, tc := range []struct {
		name  string
		deps  map[string][]string
		start string
		want  []string
		text  string
	}{
		{"no deps", map[string][]string{"a": nil}, "a", nil, ""},
		{"chain", map[string][]string{"a": {"b"}, "b": {"c"}}, "a", nil, ""},
		{"self", map[string][]string{"a": {"a"}}, "a", []string{"a", "a"}, "dependency cycle: a -> a"},
		{"two", map[string][]string{"a": {"b"}, "b": {"a"}}, "a", []string{"a", "b", "a"}, "dependency cycle: a -> b -> a"},
		{"shortest of two", map[string][]string{"a": {"b", "c"}, "b": {"d"}, "d": {"a"}, "c": {"a"}}, "a",
			[]string{"a", "c", "a"}, "dependency cycle: a -> c -> a"},
		{"behind a cycle, not on it", map[string][]string{"a": {"b"}, "b": {"c"}, "c": {"b"}}, "a", nil, ""},
		{"on it from b", map[string][]string{"a": {"b"}, "b": {"c"}, "c": {"b"}}, "b", []string{"b", "c", "b"}, "dependency cycle: b -> c -> b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := DependencyCycle(tc.start, func(n string) []string { return tc.deps[n] })
			if !slices.Equal(got, tc.want) {
				t.Fatalf("DependencyCycle = %v, want %v", got, tc.want)
			}
			if got != nil && CycleText(got) != tc.text {
				t.Errorf("CycleText = %q, want %q", CycleText(got), tc.text)
			}
		})
	}
}
