package supervisor

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// account is what a service's User resolves to.
type account struct {
	name     string // "" for a numeric uid that /etc/passwd does not list
	home     string
	uid, gid uint32
	groups   []uint32 // supplementary groups, the primary one first
}

// credential is what the child process switches to before exec.
func (a *account) credential() *syscall.Credential {
	return &syscall.Credential{Uid: a.uid, Gid: a.gid, Groups: a.groups}
}

// lookupUser resolves user, a name or a numeric uid, in the passwd and
// group files of the running root. Both files are read at every start, as
// provisioning may add users after boot. A numeric uid that passwd does
// not list runs with the same number as its group and no other groups.
func lookupUser(user, passwdFile, groupFile string) (*account, error) {
	pw, err := readLimited(passwdFile, maxEnvFile)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", user, err)
	}
	a, err := findUser(string(pw), user)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w in %s", user, err, passwdFile)
	}
	a.groups = []uint32{a.gid}
	if a.name == "" {
		return a, nil
	}
	gr, err := readLimited(groupFile, maxEnvFile)
	if err != nil {
		return nil, fmt.Errorf("groups of user %q: %w", user, err)
	}
	for _, g := range memberOf(string(gr), a.name) {
		if !slices.Contains(a.groups, g) {
			a.groups = append(a.groups, g)
		}
	}
	return a, nil
}

// findUser finds user by name, else by uid when it is a number, in the
// text of a passwd file (name:password:uid:gid:gecos:home:shell).
// Malformed lines are skipped as the C library does.
func findUser(passwd, user string) (*account, error) {
	numeric, numErr := strconv.ParseUint(user, 10, 32)
	var byUID *account
	for line := range strings.Lines(passwd) {
		f := strings.Split(strings.TrimRight(line, "\r\n"), ":")
		if len(f) < 4 || f[0] == "" || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], "+") || strings.HasPrefix(f[0], "-") {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		a := &account{name: f[0], uid: uint32(uid), gid: uint32(gid)}
		if len(f) > 5 {
			a.home = f[5]
		}
		if f[0] == user {
			return a, nil
		}
		if numErr == nil && byUID == nil && uid == numeric {
			byUID = a
		}
	}
	if byUID != nil {
		return byUID, nil
	}
	if numErr == nil {
		return &account{uid: uint32(numeric), gid: uint32(numeric)}, nil
	}
	return nil, fmt.Errorf("no such user")
}

// memberOf lists the gids of the groups that name user as a member in the
// text of a group file (name:password:gid:member,member).
func memberOf(group, user string) []uint32 {
	var gids []uint32
	for line := range strings.Lines(group) {
		f := strings.Split(strings.TrimRight(line, "\r\n"), ":")
		if len(f) < 4 || f[0] == "" || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], "+") || strings.HasPrefix(f[0], "-") {
			continue
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		if slices.Contains(strings.Split(f[3], ","), user) {
			gids = append(gids, uint32(gid))
		}
	}
	return gids
}
