package accounts

import (
	"strings"
	"testing"
)

func TestMerge(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		kind                 Kind
		image, machine, want string
		changed              bool
	}{
		{"nothing new", PasswdFile,
			"root:x:0:0:root:/root:/sbin/nologin\n",
			"root:x:0:0:root:/root:/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/sh\n",
			"root:x:0:0:root:/root:/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/sh\n", false},
		{"new image users appended, the image's entries win", PasswdFile,
			"root:x:0:0:root:/root:/bin/sh\nbob:x:1001:1001:bob:/home/bob:/bin/sh\nsshd:x:65000:65534:sshd:/run/sshd:/usr/sbin/nologin\n",
			"# kept\nroot:x:0:0:root:/root:/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/sh\n",
			"# kept\nroot:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001:bob:/home/bob:/bin/sh\nsshd:x:65000:65534:sshd:/run/sshd:/usr/sbin/nologin\n", true},
		{"group members the machine added stay", GroupFile,
			"root:x:0:\nwheel:x:10:\ndata:x:2000:web\nsshd-new:x:3000:\n",
			"root:x:0:\nwheel:x:10:alice\ndata:x:2000:alice,web\nalice:x:1000:\n",
			"root:x:0:\nwheel:x:10:alice\ndata:x:2000:web,alice\nalice:x:1000:\nsshd-new:x:3000:\n", true},
		{"shadow: a password set on the machine stays, the image's ! and * follow the image", ShadowFile,
			"root:*::0:99999:7:::\nweb:!::0:99999:7:::\nbob:*::0:99999:7:::\n",
			"root:!::0:99999:7:::\nweb:$6$salt$hash:19000:0:99999:7:::\nbob:!::0:99999:7:::\nalice:*::0:99999:7:::\n",
			"root:*::0:99999:7:::\nweb:$6$salt$hash:19000:0:99999:7:::\nbob:*::0:99999:7:::\nalice:*::0:99999:7:::\n", true},
		{"shadow: a locked root stays locked when the image locks it again", ShadowFile,
			"root:!::0:99999:7:::\n", "root:*::0:99999:7:::\n", "root:!::0:99999:7:::\n", true},
		{"a machine's duplicate and junk lines are left alone", PasswdFile,
			"root:x:0:0:root:/root:/bin/sh\n",
			"root:x:0:0:root:/root:/sbin/nologin\nroot:x:0:0:dup:/:/x\n+compat\n\n",
			"root:x:0:0:root:/root:/bin/sh\nroot:x:0:0:dup:/:/x\n+compat\n\n", true},
		{"an empty machine file takes the image's", PasswdFile, "root:x:0:0:root:/root:/sbin/nologin\n", "", "root:x:0:0:root:/root:/sbin/nologin\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, changed := Merge(tc.kind, []byte(tc.image), []byte(tc.machine))
			if string(out) != tc.want || changed != tc.changed {
				t.Errorf("got (changed %v)\n%s\nwant (changed %v)\n%s", changed, out, tc.changed, tc.want)
			}
			// merging again changes nothing
			if again, ch := Merge(tc.kind, []byte(tc.image), out); ch || string(again) != string(out) {
				t.Errorf("not idempotent:\n%s", again)
			}
		})
	}
}

func FuzzMerge(f *testing.F) {
	f.Add([]byte("root:x:0:0:root:/root:/bin/sh\n"), []byte("root:x:0:0::/:/x\nalice:x:1000:1000::/home/alice:/bin/sh\n"))
	f.Add([]byte("wheel:x:10:\n"), []byte("wheel:x:10:a,,b\n#c\n"))
	f.Fuzz(func(t *testing.T, image, machine []byte) {
		for _, k := range []Kind{PasswdFile, GroupFile, ShadowFile} {
			out, _ := Merge(k, image, machine)
			// every image entry is there, and every machine name too
			for _, l := range strings.Split(string(image), "\n") {
				if fs := Fields(l); len(fs) > 1 && !strings.Contains(string(out), fs[0]+":") {
					t.Fatalf("%q lost in %q", fs[0], out)
				}
			}
		}
	})
}
