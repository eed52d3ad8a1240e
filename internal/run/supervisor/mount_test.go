package supervisor

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// A booted slate system: read-only root, STATE on /var, /etc overlay with
// its upper layer on /var.
const slateMountInfo = `22 1 254:2 / / ro,relatime - ext4 /dev/vda2 ro
23 22 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw,size=1000k
24 22 0:20 / /proc rw,nosuid,nodev,noexec - proc proc rw
25 22 0:21 / /sys rw,nosuid,nodev,noexec - sysfs sysfs rw
26 22 0:22 / /run rw,nosuid,nodev - tmpfs tmpfs rw,mode=755
27 22 254:4 / /var rw,relatime - ext4 /dev/vda4 rw
28 22 0:23 / /etc rw,relatime - overlay overlay rw,lowerdir=/etc,upperdir=/var/lib/slate/etc/upper,workdir=/var/lib/slate/etc/work
29 23 0:24 / /dev/pts rw,nosuid,noexec - devpts devpts rw,gid=5
30 27 254:5 / /var/with\040space rw - xfs /dev/vdb\0401 rw
31 22 254:6 / /mnt/ro ro - ext4 /dev/vdc ro
`

func TestParseMountInfo(t *testing.T) {
	got, err := parseMountInfo(strings.NewReader(slateMountInfo))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 {
		t.Fatalf("%d entries, want 10", len(got))
	}
	want := map[int]mountEntry{
		0: {id: 22, target: "/", fstype: "ext4", source: "/dev/vda2", rw: false},
		5: {id: 27, target: "/var", fstype: "ext4", source: "/dev/vda4", rw: true},
		6: {id: 28, target: "/etc", fstype: "overlay", source: "overlay", rw: true},
		8: {id: 30, target: "/var/with space", fstype: "xfs", source: "/dev/vdb 1", rw: true},
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], w)
		}
	}

	// Optional fields before the separator.
	opt, err := parseMountInfo(strings.NewReader("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n"))
	if err != nil || len(opt) != 1 || opt[0].target != "/mnt2" || opt[0].fstype != "ext3" || !opt[0].rw {
		t.Errorf("with optional fields: %+v, %v", opt, err)
	}

	// The real table of this machine parses.
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		if _, err := parseMountInfo(strings.NewReader(string(b))); err != nil {
			t.Errorf("/proc/self/mountinfo: %v", err)
		}
	}
}

func TestParseMountInfoErrors(t *testing.T) {
	for _, in := range []string{
		"22 1 254:2 / / ro\n",                        // no separator
		"22 1 254:2 / / ro - ext4\n",                 // no source
		"x 1 254:2 / / ro - ext4 /dev/vda2 ro\n",     // bad ID
		"22 1 254:2 / - ext4 /dev/vda2 ro\n",         // too few fields
		"22 1 254:2 / / ro - ext4 /dev/vda2 ro\n-\n", // malformed later line
	} {
		if m, err := parseMountInfo(strings.NewReader(in)); err == nil {
			t.Errorf("parseMountInfo(%q) = %+v, want an error", in, m)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:         "/plain",
		`/a\040b`:        "/a b",
		`/tab\011nl\012`: "/tab\tnl\n",
		`/back\134slash`: `/back\slash`,
		`/bad\09`:        `/bad\09`,
		`/end\04`:        `/end\04`,
		`\`:              `\`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnmountPlan(t *testing.T) {
	mounts, err := parseMountInfo(strings.NewReader(slateMountInfo))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range unmountPlan(mounts) {
		got = append(got, m.target)
	}
	// Last mounted first: the /etc overlay before /var, which holds its
	// upper layer; read-only and virtual filesystems and / are left alone.
	want := []string{"/var/with space", "/etc", "/var"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plan %q, want %q", got, want)
	}
	if p := unmountPlan(nil); len(p) != 0 {
		t.Errorf("plan of nothing: %v", p)
	}
}

func FuzzParseMountInfo(f *testing.F) {
	f.Add(slateMountInfo)
	f.Add("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw\n")
	f.Add("1 2 3 4 5 6 - \\0401 \\\n")
	f.Fuzz(func(t *testing.T, in string) {
		mounts, err := parseMountInfo(strings.NewReader(in))
		if err != nil {
			return
		}
		plan := unmountPlan(mounts)
		if len(plan) > len(mounts) {
			t.Fatalf("plan longer than the table")
		}
		for _, m := range plan {
			if m.target == "/" || !m.rw || virtualFS[m.fstype] {
				t.Fatalf("plan has %+v", m)
			}
		}
	})
}
