package configs

import "strings"

// CgroupReservedPrefixes are the prefixes (before the first '.') of the
// cgroup v2 interface files: the core's ("cgroup.procs") and each
// controller's ("memory.max", "cpu.weight"). A unit runs in a cgroup
// named like it, and a folder cannot take such a name.
var CgroupReservedPrefixes = []string{"cgroup", "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc", "irq"}

// cgroupNameHint says what CgroupSafeName refuses.
const cgroupNameHint = "a name may not start with cgroup., cpu., cpuset., io., memory., pids., hugetlb., rdma., misc. or irq. (the cgroup interface files' prefixes)"

// CgroupSafeName reports whether a unit name (a service's or a
// container's) cannot be taken for a cgroup interface file: "cpu.web",
// "memory.db" or "cgroup.x" can not name a unit's cgroup, "web.cpu" and
// "cpuweb" can. internal/run/cgroup checks leaf names with it.
func CgroupSafeName(name string) bool {
	pfx, _, ok := strings.Cut(name, ".")
	if !ok {
		return true
	}
	for _, r := range CgroupReservedPrefixes {
		if pfx == r {
			return false
		}
	}
	return true
}
