package configs

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// User is an account of the image: a line in /etc/passwd and a locked
// password in /etc/shadow. Its primary group is GID (default: UID); when
// no group has that gid, a group named after the user is created with it.
type User struct {
	Name string `yaml:"name" json:"name"`
	// UID is required: ids fixed in the spec keep the owners of files on
	// STATE right across versions.
	UID int  `yaml:"uid" json:"uid"`
	GID *int `yaml:"gid,omitempty" json:"gid,omitempty"`
	// Home defaults to /nonexistent, Shell to /sbin/nologin: service
	// accounts log in nowhere. A user with SSHKeys defaults to
	// /home/NAME and the ssh section's shell instead.
	Home  string `yaml:"home,omitempty" json:"home,omitempty"`
	Shell string `yaml:"shell,omitempty" json:"shell,omitempty"`
	// SSHKeys are authorized_keys lines (ssh needs ssh.enable), written
	// to /etc/ssh/authorized_keys/NAME in the read-only root.
	SSHKeys []string `yaml:"ssh_keys,omitempty" json:"ssh_keys,omitempty"`
}

// Group is a group of the image, a line in /etc/group.
type Group struct {
	Name string `yaml:"name" json:"name"`
	GID  int    `yaml:"gid" json:"gid"`
}

// Accounts every image has.
var (
	BuiltinUsers = []User{{Name: "root", UID: 0, GID: intp(0), Home: "/root", Shell: "/sbin/nologin"}, {Name: "nobody", UID: 65534, GID: intp(65534), Home: "/nonexistent", Shell: "/sbin/nologin"}}
	// The usual system groups, with Debian's gids (wheel and docker as on
	// Flatcar and Fedora CoreOS, since Debian fixes no gid for them), so
	// that Ignition configs that add users to them work.
	BuiltinGroups = []Group{
		{Name: "root", GID: 0}, {Name: "daemon", GID: 1}, {Name: "bin", GID: 2}, {Name: "sys", GID: 3},
		{Name: "adm", GID: 4}, {Name: "tty", GID: 5}, {Name: "disk", GID: 6}, {Name: "wheel", GID: 10},
		{Name: "kmem", GID: 15}, {Name: "dialout", GID: 20}, {Name: "cdrom", GID: 24}, {Name: "sudo", GID: 27},
		{Name: "audio", GID: 29}, {Name: "video", GID: 44}, {Name: "plugdev", GID: 46}, {Name: "staff", GID: 50},
		{Name: "users", GID: 100}, {Name: "docker", GID: 999}, {Name: "nogroup", GID: 65534},
	}
)

// Defaults of a user.
const (
	DefaultUserHome  = "/nonexistent"
	DefaultUserShell = "/sbin/nologin"
)

func intp(i int) *int { return &i }

// account names as useradd takes them by default
var accountRe = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)

const (
	maxAccountName = 32
	// maxID leaves out 65535 ((uid_t)-1 for 16-bit calls) and 65534
	// (nobody); ids above 65535 work but confuse many tools.
	maxID = 65533
	// maxUserID keeps 65000 and up for slate's own accounts (SSHDUID):
	// a spec user can never collide with sshd, whether or not a later
	// version of the image enables ssh.
	maxUserID = SSHDUID - 1
)

// Accounts returns the image's users and groups: the built-in ones, then
// the spec's, with every user's gid set and the groups created for users
// whose gid no group has.
func (s *Spec) Accounts() ([]User, []Group) {
	users := append([]User(nil), BuiltinUsers...)
	sh, ssh := s.LoginShell()
	if ssh && s.SSH.PermitRootLogin {
		users[0].Shell = sh.Path
	}
	groups := append(append([]Group(nil), BuiltinGroups...), s.Groups...)
	hasGID := map[int]bool{}
	for _, g := range groups {
		hasGID[g.GID] = true
	}
	for _, u := range s.Users {
		if u.GID == nil {
			u.GID = intp(u.UID)
		}
		login := ssh && len(u.SSHKeys) > 0
		switch {
		case u.Home != "":
		case login:
			u.Home = "/home/" + u.Name
		default:
			u.Home = DefaultUserHome
		}
		switch {
		case u.Shell != "":
		case login:
			u.Shell = sh.Path
		default:
			u.Shell = DefaultUserShell
		}
		if !hasGID[*u.GID] {
			groups = append(groups, Group{Name: u.Name, GID: *u.GID})
			hasGID[*u.GID] = true
		}
		users = append(users, u)
	}
	if ssh {
		users = append(users, User{Name: SSHDUser, UID: SSHDUID, GID: intp(65534), Home: SSHDHome, Shell: "/usr/sbin/nologin"})
	}
	return users, groups
}

// ShadowHash is the password field of u's /etc/shadow line: "!" (locked)
// for every account, except "*" (no password works, but the account is
// not locked) for those that log in with ssh keys, since sshd refuses
// every key of a locked account: users with keys, and root when
// ssh.permit_root_login allows it (its keys come from Ignition).
func (s *Spec) ShadowHash(u User) string {
	if !s.SSHEnabled() {
		return "!"
	}
	if len(u.SSHKeys) > 0 || (u.UID == 0 && s.SSH.PermitRootLogin) {
		return "*"
	}
	return "!"
}

func checkAccountName(n string) string {
	switch {
	case n == "":
		return "required: an account name like web"
	case len(n) > maxAccountName:
		return fmt.Sprintf("%d characters; at most %d are allowed", len(n), maxAccountName)
	case !accountRe.MatchString(n):
		return fmt.Sprintf("%q is not an account name: lowercase letters, digits, '_' and '-', starting with a letter or '_'", n)
	}
	return ""
}

func checkID(id int) string {
	if id < 1 || id > maxID {
		return fmt.Sprintf("%d is out of range: 1 to %d (0 is root, 65534 nobody)", id, maxID)
	}
	return ""
}

func checkUID(id int) string {
	if id < 1 || id > maxUserID {
		return fmt.Sprintf("%d is out of range: 1 to %d (0 is root, %d and up are slate's: %d is sshd, 65534 nobody)", id, maxUserID, maxUserID+1, SSHDUID)
	}
	return ""
}

// validateAccounts checks users and groups: names and ids unique among
// themselves and the built-in accounts, and each user's group possible.
func (s *Spec) validateAccounts(c *collector) {
	gNames := map[string]string{}
	gIDs := map[int]string{}
	for _, g := range BuiltinGroups {
		gNames[g.Name], gIDs[g.GID] = "a built-in group", "a built-in group"
	}
	for i, g := range s.Groups {
		gp := index("$.groups", i)
		if msg := checkAccountName(g.Name); msg != "" {
			c.add(key(gp, "name"), "%s", msg)
		} else if by, dup := gNames[g.Name]; dup {
			c.add(key(gp, "name"), "group %q is already %s", g.Name, by)
		} else {
			gNames[g.Name] = "at " + gp
		}
		if msg := checkID(g.GID); msg != "" {
			c.add(key(gp, "gid"), "%s", msg)
		} else if by, dup := gIDs[g.GID]; dup {
			c.add(key(gp, "gid"), "gid %d is already %s", g.GID, by)
		} else {
			gIDs[g.GID] = "taken by group " + g.Name
		}
	}
	uNames := map[string]string{}
	uIDs := map[int]string{}
	for _, u := range BuiltinUsers {
		uNames[u.Name], uIDs[u.UID] = "a built-in user", "taken by the built-in user "+u.Name
	}
	if s.SSHEnabled() {
		uNames[SSHDUser] = "the built-in user of OpenSSH's privilege separation (ssh.enable)"
	}
	for i, u := range s.Users {
		up := index("$.users", i)
		nameOK := false
		if msg := checkAccountName(u.Name); msg != "" {
			c.add(key(up, "name"), "%s", msg)
		} else if by, dup := uNames[u.Name]; dup {
			c.add(key(up, "name"), "user %q is already %s", u.Name, by)
		} else {
			uNames[u.Name] = "at " + up
			nameOK = true
		}
		if msg := checkUID(u.UID); msg != "" {
			c.add(key(up, "uid"), "required: %s", msg)
		} else if by, dup := uIDs[u.UID]; dup {
			c.add(key(up, "uid"), "uid %d is already %s", u.UID, by)
		} else {
			uIDs[u.UID] = "taken by user " + u.Name
		}
		gid := u.UID
		if u.GID != nil {
			gid = *u.GID
		}
		if _, ok := gIDs[gid]; !ok && u.GID != nil && checkID(gid) != "" {
			c.add(key(up, "gid"), "%s", checkID(gid))
		} else if !ok {
			// a group named after the user will be created with this gid
			if by, dup := gNames[u.Name]; dup && nameOK {
				c.add(key(up, "gid"), "no group has gid %d, and the group slate would create for it, %q, is already %s; declare the group in groups or give the user its gid", gid, u.Name, by)
			}
			gNames[u.Name] = "the group of user " + u.Name
			gIDs[gid] = "the group of user " + u.Name
		}
		for _, f := range []struct{ name, v string }{{"home", u.Home}, {"shell", u.Shell}} {
			if f.v == "" {
				continue
			}
			if msg := absPath(f.v); msg != "" {
				c.add(key(up, f.name), "%s", msg)
			} else if hasSpaceOrControl(f.v) || containsColon(f.v) {
				c.add(key(up, f.name), "%q: no whitespace, control characters or ':' in an /etc/passwd field", f.v)
			}
		}
	}
}

func containsColon(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return true
		}
	}
	return false
}

// validateServiceUsers refuses a service user the image does not have: the
// supervisor would fail to start the service at every boot.
func (s *Spec) validateServiceUsers(c *collector) {
	users, _ := s.Accounts()
	known := map[string]bool{}
	var names []string
	for _, u := range users {
		known[u.Name], known[strconv.Itoa(u.UID)] = true, true
		names = append(names, u.Name)
	}
	for i, svc := range s.Services {
		if svc.User == "" || known[svc.User] || badUser(svc.User) {
			continue
		}
		c.add(key(index("$.services", i), "user"), "no user %q in the image's /etc/passwd (it has %s); declare it in users", svc.User, strings.Join(names, ", "))
	}
}

// Owner resolves a file's owner and group to ids in the image's accounts.
// Empty is root for both: the group is not the owner's primary group, so
// that a file is shared with a group only when the spec says so.
func (s *Spec) Owner(f File) (uid, gid int, err error) {
	users, groups := s.Accounts()
	if f.Owner != "" {
		u, ok := findUser(users, f.Owner)
		if !ok {
			return 0, 0, fmt.Errorf("no user %q in the image's /etc/passwd", f.Owner)
		}
		uid = u.UID
	}
	if f.Group != "" {
		g, ok := findGroup(groups, f.Group)
		if !ok {
			return 0, 0, fmt.Errorf("no group %q in the image's /etc/group", f.Group)
		}
		gid = g.GID
	}
	return uid, gid, nil
}

func findUser(users []User, n string) (User, bool) {
	for _, u := range users {
		if u.Name == n || strconv.Itoa(u.UID) == n {
			return u, true
		}
	}
	return User{}, false
}

func findGroup(groups []Group, n string) (Group, bool) {
	for _, g := range groups {
		if g.Name == n || strconv.Itoa(g.GID) == n {
			return g, true
		}
	}
	return Group{}, false
}

// validateFileOwners refuses owners the image does not have.
func (s *Spec) validateFileOwners(c *collector) {
	users, groups := s.Accounts()
	for i, f := range s.Root.Files {
		fp := index("$.root.files", i)
		if f.Owner != "" {
			if _, ok := findUser(users, f.Owner); !ok {
				c.add(key(fp, "owner"), "no user %q in the image's /etc/passwd; declare it in users", f.Owner)
			}
		}
		if f.Group != "" {
			if _, ok := findGroup(groups, f.Group); !ok {
				c.add(key(fp, "group"), "no group %q in the image's /etc/group; declare it in groups", f.Group)
			}
		}
	}
}
