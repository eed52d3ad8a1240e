// Package cgroup is slate's use of cgroup v2: the /slate subtree under
// the cgroup2 mount, one leaf per service or container with its limits
// (memory.max, cpu.max, pids.max), starting a process directly in a leaf
// (CLONE_INTO_CGROUP), reading a leaf's use (memory, CPU time, PIDs, OOM
// kills), killing everything in it (cgroup.kill) and removing it.
//
// PID 1 stays in the root cgroup: cgroup v2 lets only the root hold
// processes beside children with controllers enabled ("no internal
// processes"), and runc, started by PID 1, must not land in a leaf it
// is about to put a container into.
//
// Every file of the cgroup filesystem is read with a bound and parsed
// without trusting its shape: the kernel writes them, but a test or a
// container runtime with write access may leave anything there.
package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/slateos/slate/configs"
	"golang.org/x/sys/unix"
)

// Mountpoint is where PID 1 mounts cgroup2.
const Mountpoint = "/sys/fs/cgroup"

// Parent is the folder under the mount that holds slate's leaves; a
// container's config.json names its leaf as linux.cgroupsPath
// "/slate/<name>".
const Parent = "slate"

// Controllers are the ones slate enables, those of them the kernel has.
var Controllers = []string{"cpu", "memory", "pids", "io"}

// cpuPeriod is cpu.max's period in microseconds (the kernel's default).
const cpuPeriod = 100000

// maxFile bounds every read of a cgroup file: the largest slate reads
// (cpu.stat, memory.events, cgroup.procs of a leaf) are far smaller; a
// cgroup.procs longer than that is cut and read as what fits.
const maxFile = 64 << 10

// Limits bound a leaf. Zero is no limit.
type Limits struct {
	// Memory is memory.max in bytes; memory.swap.max is then 0 too, so
	// the limit is not a limit on RAM only.
	Memory int64
	// CPUs is a share of CPUs ("0.5": half of one), as cpu.max.
	CPUs float64
	// PIDs is pids.max.
	PIDs int64
}

// Zero reports whether l limits nothing.
func (l Limits) Zero() bool { return l == Limits{} }

// Manager is slate's cgroup tree: Root is a cgroup2 folder (Mountpoint
// on a machine; a test's own subtree elsewhere) and the leaves are in
// Root/Parent.
type Manager struct {
	Root string
}

// New is the Manager of the machine's mount.
func New() *Manager { return &Manager{Root: Mountpoint} }

// IsCgroup2 reports whether dir is on a cgroup2 filesystem.
func IsCgroup2(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// Setup enables the Controllers the kernel has in Root's and Parent's
// subtree_control (creating Parent) and returns those enabled in both. A
// controller the kernel lacks, or refuses to enable, is left out rather
// than an error, each on its own so one cannot take the others with it: a
// leaf that needs it says so when its limit is written.
func (m *Manager) Setup() ([]string, error) {
	if !IsCgroup2(m.Root) {
		return nil, fmt.Errorf("%s is not a cgroup2 mount", m.Root)
	}
	avail, err := readList(filepath.Join(m.Root, "cgroup.controllers"))
	if err != nil {
		return nil, err
	}
	parent := filepath.Join(m.Root, Parent)
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup %s: %w", parent, err)
	}
	var enabled []string
	for _, c := range Controllers {
		if !slices.Contains(avail, c) {
			continue
		}
		if enable(m.Root, c) == nil && enable(parent, c) == nil {
			enabled = append(enabled, c)
		}
	}
	return enabled, nil
}

// enable writes "+ctrl" to dir's subtree_control.
func enable(dir, ctrl string) error {
	if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+"+ctrl); err != nil {
		return fmt.Errorf("enable the %s controller in %s: %w", ctrl, dir, err)
	}
	return nil
}

// Leaf is the cgroup of one unit, Root/Parent/name. Name must be one
// path element.
func (m *Manager) Leaf(name string) (*Leaf, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("cgroup name %q: not one path element", name)
	}
	return &Leaf{Path: filepath.Join(m.Root, Parent, name)}, nil
}

// ValidName reports whether name can name a leaf: one path element that
// cannot be taken for one of the kernel's interface files
// ("memory.max", "cgroup.procs": a prefix before a dot that names the
// core or a controller).
func ValidName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 255 || strings.ContainsAny(name, "/\x00\n") {
		return false
	}
	// The spec refuses the same names (configs.CgroupSafeName), so a unit
	// that builds can run.
	return configs.CgroupSafeName(name)
}

// Leaf is one unit's cgroup folder.
type Leaf struct {
	Path string
}

// Create makes the leaf (it may exist: a restart keeps it) and writes
// its limits; a zero limit writes "max", so a limit taken out of the
// spec is lifted at the next start. A limit whose controller is not
// enabled is an error naming it.
func (l *Leaf) Create(lim Limits) error {
	if err := os.Mkdir(l.Path, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create cgroup %s: %w", l.Path, err)
	}
	return l.SetLimits(lim)
}

// SetLimits writes lim to the leaf's files.
func (l *Leaf) SetLimits(lim Limits) error {
	type set struct {
		file, value string
		needed      bool // the limit is set: a missing file is an error
	}
	mem := "max"
	if lim.Memory > 0 {
		mem = strconv.FormatInt(lim.Memory, 10)
	}
	pids := "max"
	if lim.PIDs > 0 {
		pids = strconv.FormatInt(lim.PIDs, 10)
	}
	sets := []set{
		{"memory.max", mem, lim.Memory > 0},
		{"cpu.max", CPUMax(lim.CPUs), lim.CPUs > 0},
		{"pids.max", pids, lim.PIDs > 0},
	}
	if lim.Memory > 0 {
		sets = append(sets, set{"memory.swap.max", "0", false})
	} else {
		sets = append(sets, set{"memory.swap.max", "max", false})
	}
	for _, s := range sets {
		p := filepath.Join(l.Path, s.file)
		err := writeFile(p, s.value)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrNotExist) && !s.needed:
		case errors.Is(err, os.ErrNotExist):
			ctrl, _, _ := strings.Cut(s.file, ".")
			return fmt.Errorf("cgroup %s: %s limit set but the %s controller is not enabled (kernel or parent)", l.Path, s.file, ctrl)
		default:
			return fmt.Errorf("cgroup %s: write %s=%s: %w", l.Path, s.file, s.value, err)
		}
	}
	return nil
}

// CPUMax is cpu.max for a share of CPUs: "quota period" in µs, "max
// period" for no limit. A quota is at least 1000 µs (the kernel's
// minimum).
func CPUMax(cpus float64) string {
	if cpus <= 0 || math.IsNaN(cpus) || math.IsInf(cpus, 0) {
		return "max " + strconv.Itoa(cpuPeriod)
	}
	q := math.Round(cpus * cpuPeriod)
	if q > math.MaxInt32 {
		return "max " + strconv.Itoa(cpuPeriod)
	}
	return strconv.FormatInt(max(int64(q), 1000), 10) + " " + strconv.Itoa(cpuPeriod)
}

// Open opens the leaf's folder for SysProcAttr.CgroupFD
// (CLONE_INTO_CGROUP): the child is born in the leaf, so it never runs
// a moment, nor forks, outside its limits.
func (l *Leaf) Open() (*os.File, error) {
	f, err := os.OpenFile(l.Path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", l.Path, err)
	}
	return f, nil
}

// Attr returns a copy of attr (nil: a new one) that starts the process in
// the leaf, and the folder to close once the process has started.
func (l *Leaf) Attr(attr *syscall.SysProcAttr) (*syscall.SysProcAttr, *os.File, error) {
	f, err := l.Open()
	if err != nil {
		return nil, nil, err
	}
	var a syscall.SysProcAttr
	if attr != nil {
		a = *attr
	}
	a.UseCgroupFD, a.CgroupFD = true, int(f.Fd())
	return &a, f, nil
}

// Stats is what a leaf uses. A field whose file is missing (its
// controller is not enabled) is zero.
type Stats struct {
	// MemoryCurrent is memory.current, MemoryPeak memory.peak (since
	// the leaf was made), both in bytes.
	MemoryCurrent uint64 `json:"memory_current"`
	MemoryPeak    uint64 `json:"memory_peak,omitempty"`
	// CPUUsec is cpu.stat's usage_usec: CPU time of every process that
	// ran in the leaf since it was made.
	CPUUsec uint64 `json:"cpu_usec"`
	// PIDs is pids.current.
	PIDs uint64 `json:"pids"`
	// OOMKills is memory.events' oom_kill: processes of the leaf the OOM
	// killer has killed.
	OOMKills uint64 `json:"oom_kills"`
}

// Stats reads the leaf's use.
func (l *Leaf) Stats() (Stats, error) {
	var st Stats
	if _, err := os.Stat(l.Path); err != nil {
		return st, fmt.Errorf("cgroup %s: %w", l.Path, err)
	}
	var errs []error
	single := func(file string, dst *uint64) {
		b, err := readFile(filepath.Join(l.Path, file))
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if err == nil {
			*dst, err = ParseValue(b)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
		}
	}
	keyed := func(file, key string, dst *uint64) {
		b, err := readFile(filepath.Join(l.Path, file))
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		var m map[string]uint64
		if err == nil {
			m, err = ParseKeyed(b)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			return
		}
		*dst = m[key]
	}
	single("memory.current", &st.MemoryCurrent)
	single("memory.peak", &st.MemoryPeak)
	single("pids.current", &st.PIDs)
	keyed("cpu.stat", "usage_usec", &st.CPUUsec)
	keyed("memory.events", "oom_kill", &st.OOMKills)
	if len(errs) > 0 {
		return st, fmt.Errorf("cgroup %s: %w", l.Path, errors.Join(errs...))
	}
	return st, nil
}

// OOMKills is memory.events' oom_kill alone (0 when there is none).
func (l *Leaf) OOMKills() uint64 {
	b, err := readFile(filepath.Join(l.Path, "memory.events"))
	if err != nil {
		return 0
	}
	m, _ := ParseKeyed(b)
	return m["oom_kill"]
}

// PIDs lists the processes in the leaf (cgroup.procs).
func (l *Leaf) PIDs() ([]int, error) {
	b, err := readFile(filepath.Join(l.Path, "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", l.Path, err)
	}
	return ParsePIDs(b)
}

// Populated reports whether a process is in the leaf (or below it).
func (l *Leaf) Populated() (bool, error) {
	b, err := readFile(filepath.Join(l.Path, "cgroup.events"))
	if err != nil {
		return false, fmt.Errorf("cgroup %s: %w", l.Path, err)
	}
	m, err := ParseKeyed(b)
	if err != nil {
		return false, fmt.Errorf("cgroup %s: cgroup.events: %w", l.Path, err)
	}
	return m["populated"] != 0, nil
}

// Kill SIGKILLs every process in the leaf and below (cgroup.kill, Linux
// 5.14; on an older kernel each PID of cgroup.procs). It returns at once;
// Remove waits for the leaf to empty.
func (l *Leaf) Kill() error {
	err := writeFile(filepath.Join(l.Path, "cgroup.kill"), "1")
	if err == nil || errors.Is(err, os.ErrNotExist) && !exists(l.Path) {
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cgroup %s: kill: %w", l.Path, err)
	}
	pids, err := l.PIDs()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	return nil
}

// Remove removes the leaf and the cgroups below it (runc may leave
// none; a test's may), waiting up to wait for their processes to be
// gone: a cgroup with processes cannot be removed. A leaf that does not
// exist is removed.
func (l *Leaf) Remove(wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := removeTree(l.Path)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", l.Path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeTree rmdirs dir's child cgroups depth first, then dir (the
// interface files are not removed: rmdir of the cgroup takes them).
func removeTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return unix.Rmdir(dir)
}

// ParseValue parses a one-value file: a decimal number, "max" as the
// largest uint64.
func ParseValue(b []byte) (uint64, error) {
	s := string(bytes.TrimSpace(b))
	if s == "max" {
		return math.MaxUint64, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not a number: %q", clip(s))
	}
	return v, nil
}

// ParseKeyed parses a flat keyed file ("key value" lines: cpu.stat,
// memory.events, cgroup.events). A line that is not a key and a number
// is an error; at most maxKeys keys are kept.
func ParseKeyed(b []byte) (map[string]uint64, error) {
	const maxKeys = 256
	m := map[string]uint64{}
	for n, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"key value\", have %q", n+1, clip(line))
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: not a number: %q", n+1, clip(f[0]), clip(f[1]))
		}
		if len(m) >= maxKeys {
			return nil, fmt.Errorf("more than %d keys", maxKeys)
		}
		m[f[0]] = v
	}
	return m, nil
}

// ParsePIDs parses cgroup.procs: one PID a line.
func ParsePIDs(b []byte) ([]int, error) {
	var pids []int
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		pid, err := strconv.Atoi(line)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("line %d: not a PID: %q", n+1, clip(line))
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// readList reads a space-separated list (cgroup.controllers).
func readList(path string) ([]string, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxFile))
}

// writeFile writes one value in one write(2), as cgroup files want.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// clip bounds a value quoted in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
