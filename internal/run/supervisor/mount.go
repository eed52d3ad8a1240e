package supervisor

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// mountEntry is one line of /proc/self/mountinfo, the fields shutdown needs.
type mountEntry struct {
	id     int
	target string
	fstype string
	source string
	rw     bool // the mount (not the superblock) is read-write
}

// parseMountInfo reads a mountinfo file (proc(5)): "36 35 98:0 /mnt1 /mnt2
// rw,noatime master:1 - ext3 /dev/root rw,errors=continue". Lines that do
// not have that shape are an error: a shutdown that misreads the mount
// table could leave a filesystem mounted read-write.
func parseMountInfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		fields := strings.Fields(line)
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 6 || sep < 0 || len(fields) < sep+3 {
			return nil, fmt.Errorf("mountinfo line %d: malformed: %q", n, line)
		}
		id, err := strconv.Atoi(fields[0])
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: mount ID %q: %w", n, fields[0], err)
		}
		out = append(out, mountEntry{
			id:     id,
			target: unescapeMount(fields[4]),
			fstype: fields[sep+1],
			source: unescapeMount(fields[sep+2]),
			rw:     hasOption(fields[5], "rw"),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

func hasOption(opts, want string) bool {
	for o := range strings.SplitSeq(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// unescapeMount undoes the kernel's octal escapes of space, tab, newline
// and backslash (\040, \011, \012, \134) in mountinfo paths. Anything else
// is left as is.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			v := (s[i+1]-'0')*64 + (s[i+2]-'0')*8 + (s[i+3] - '0')
			b.WriteByte(v)
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// virtualFS are filesystems with nothing to flush: leaving them mounted at
// power-off loses nothing, and unmounting /proc or /dev would break the
// rest of the shutdown.
var virtualFS = map[string]bool{
	"proc": true, "sysfs": true, "devtmpfs": true, "devpts": true, "tmpfs": true,
	"ramfs": true, "cgroup": true, "cgroup2": true, "securityfs": true,
	"debugfs": true, "tracefs": true, "pstore": true, "efivarfs": true,
	"bpf": true, "mqueue": true, "hugetlbfs": true, "configfs": true,
	"fusectl": true, "binfmt_misc": true, "autofs": true, "rpc_pipefs": true,
	"nsfs": true, "selinuxfs": true,
}

// unmountPlan is what shutdown unmounts, in order: every read-write mount
// of a real filesystem except /, last mounted first, so that the /etc
// overlay (whose upper layer lives on /var) goes before /var. The root is
// remounted read-only separately.
func unmountPlan(mounts []mountEntry) []mountEntry {
	var plan []mountEntry
	for i := len(mounts) - 1; i >= 0; i-- {
		m := mounts[i]
		if m.rw && m.target != "/" && !virtualFS[m.fstype] {
			plan = append(plan, m)
		}
	}
	return plan
}
