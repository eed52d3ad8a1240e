package configs

import (
	"slices"
	"strings"
)

// DependencyCycle is the one check for service dependency cycles, used by
// the spec's validation and by the supervisor (which also sees Ignition
// units and targets): the shortest chain of dependencies from start back
// to start, as start, what it waits for, ..., start; nil when start is on
// no cycle. deps lists what a node waits for (after and requires alike).
func DependencyCycle[T comparable](start T, deps func(T) []T) []T {
	// Breadth first from start's dependencies back to start.
	prev := map[T]T{}
	var queue []T
	for _, d := range deps(start) {
		if _, seen := prev[d]; !seen {
			prev[d] = start
			queue = append(queue, d)
		}
	}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == start {
			cycle := []T{start}
			for p := prev[start]; p != start; p = prev[p] {
				cycle = append(cycle, p)
			}
			cycle = append(cycle, start)
			// Built backwards from start: reversed, each waits for the next.
			slices.Reverse(cycle)
			return cycle
		}
		for _, d := range deps(cur) {
			if _, seen := prev[d]; !seen {
				prev[d] = cur
				queue = append(queue, d)
			}
		}
	}
	return nil
}

// CycleText names a cycle the same way wherever it is reported:
// "dependency cycle: a -> b -> a".
func CycleText(names []string) string {
	return "dependency cycle: " + strings.Join(names, " -> ")
}
