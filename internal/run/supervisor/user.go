package supervisor

import (
	"fmt"
	"slices"
	"syscall"

	"github.com/slateos/slate/internal/accounts"
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
// text of a passwd file (accounts.LookupUser: malformed lines are skipped
// as the C library does). A number no entry has is that uid and gid.
func findUser(passwd, user string) (*account, error) {
	if u, ok := accounts.LookupUser(passwd, user); ok {
		return &account{name: u.Name, home: u.Home, uid: u.UID, gid: u.GID}, nil
	}
	if id, ok := accounts.ParseID(user); ok {
		return &account{uid: id, gid: id}, nil
	}
	return nil, fmt.Errorf("no such user")
}

// memberOf lists the gids of the groups that name user as a member in the
// text of a group file.
func memberOf(group, user string) []uint32 { return accounts.MemberOf(group, user) }
