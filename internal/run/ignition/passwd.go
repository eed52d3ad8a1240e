package ignition

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"

	"github.com/slateos/slate/internal/accounts"
)

// db is one colon-separated account file (/etc/passwd, group, shadow,
// gshadow) of the tree, parsed and edited by package accounts (lines
// slate does not touch stay as they were), with what it takes to write it
// back the way it was.
type db struct {
	*accounts.File
	name   string // tree name, "etc/passwd"
	exists bool
	mode   os.FileMode
	uid    int
	gid    int
}

func loadDB(t tree, name string, mode os.FileMode) (*db, error) {
	d := &db{File: &accounts.File{}, name: name, mode: mode}
	data, err := t.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return nil, err
	}
	st, err := t.Lstat(name)
	if err != nil {
		return nil, err
	}
	d.exists, d.mode = true, st.Mode().Perm()
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		d.uid, d.gid = int(sys.Uid), int(sys.Gid)
	}
	d.File = accounts.Parse(data)
	return d, nil
}

func (d *db) save(t tree) error {
	if !d.Changed {
		return nil
	}
	if err := writeAtomic(t, d.name, d.Bytes(), d.mode, d.uid, d.gid); err != nil {
		return fmt.Errorf("writing /%s: %w", d.name, err)
	}
	return nil
}

// freeID picks an id that neither a nor b uses (b may be nil): for system
// accounts the highest free one in 100..999, as useradd -r does, otherwise
// the lowest free one from 1000.
func freeID(system bool, a, b *db) (int, error) {
	free := func(id int) bool { return !a.Used(id) && (b == nil || !b.Used(id)) }
	if system {
		for id := 999; id >= 100; id-- {
			if free(id) {
				return id, nil
			}
		}
	} else {
		for id := 1000; id < 60000; id++ {
			if free(id) {
				return id, nil
			}
		}
	}
	return 0, errors.New("no free id left")
}

// accounts adds groups, then users, to the account files under the tree,
// then creates homes and writes SSH keys.
func (a *applier) accounts(groups []Group, users []User) error {
	if len(groups) == 0 && len(users) == 0 {
		return nil
	}
	t := a.t
	passwd, err := loadDB(t, "etc/passwd", 0o644)
	if err != nil {
		return fmt.Errorf("ignition: %w", err)
	}
	group, err := loadDB(t, "etc/group", 0o644)
	if err != nil {
		return fmt.Errorf("ignition: %w", err)
	}
	shadow, err := loadDB(t, "etc/shadow", 0o600)
	if err != nil {
		return fmt.Errorf("ignition: %w", err)
	}
	gshadow, err := loadDB(t, "etc/gshadow", 0o600)
	if err != nil {
		return fmt.Errorf("ignition: %w", err)
	}
	newGroup := func(name string, gid int) {
		group.Add(name, "x", strconv.Itoa(gid), "")
		if gshadow.exists { // only keep it in step if the system has one
			gshadow.Add(name, "!", "", "")
		}
	}
	for _, g := range groups {
		if _, f := group.Find(g.Name); f != nil {
			if g.GID != nil && (len(f) < 3 || f[2] != strconv.Itoa(*g.GID)) {
				return fmt.Errorf("ignition: %s.gid: group %s exists with another gid (%s)", g.JSONPath, g.Name, f[2])
			}
			continue
		}
		var gid int
		if g.GID != nil {
			if gid = *g.GID; group.Used(gid) {
				return fmt.Errorf("ignition: %s.gid: gid %d is taken by another group", g.JSONPath, gid)
			}
		} else if gid, err = freeID(g.System, group, nil); err != nil {
			return fmt.Errorf("ignition: %s: %w", g.JSONPath, err)
		}
		newGroup(g.Name, gid)
	}
	type home struct {
		u User
		h userHome
	}
	var homes []home
	for _, u := range users {
		h, err := a.user(u, passwd, group, shadow, gshadow, newGroup)
		if err != nil {
			return fmt.Errorf("ignition: %s%w", u.JSONPath, err)
		}
		homes = append(homes, home{u, h})
	}
	for _, d := range []*db{group, gshadow, passwd, shadow} {
		if err := d.save(t); err != nil {
			return fmt.Errorf("ignition: %w", err)
		}
	}
	for _, x := range homes {
		if x.h.create {
			if err := a.makeHome(x.h.dir, x.h.uid, x.h.gid); err != nil {
				return fmt.Errorf("ignition: %s.homeDir: %w", x.u.JSONPath, err)
			}
		}
		if len(x.u.SSHAuthorizedKeys) > 0 {
			if err := a.addKeys(x.h.dir, x.h.uid, x.h.gid, x.u.SSHAuthorizedKeys); err != nil {
				return fmt.Errorf("ignition: %s.sshAuthorizedKeys: %w", x.u.JSONPath, err)
			}
		}
	}
	return nil
}

type userHome struct {
	dir      string
	uid, gid int
	create   bool
}

// user adds or updates one user in the account files. Its errors start
// with the field they concern (".uid: ...") or ": ".
func (a *applier) user(u User, passwd, group, shadow, gshadow *db, newGroup func(string, int)) (userHome, error) {
	// No passwordHash is "*", as Ignition's useradd --password "*": no
	// password works, but the account is not locked ("!" would make sshd
	// refuse its keys too).
	hash := "*"
	if u.PasswordHash != nil {
		hash = *u.PasswordHash
		if hash == "" {
			hash = "*"
		}
	}
	var h userHome
	if i, f := passwd.Find(u.Name); i >= 0 {
		// An existing account: only the password, keys and supplementary
		// groups change; everything else must agree with the config.
		if len(f) < 7 {
			return h, fmt.Errorf(": /etc/passwd entry of %s is malformed", u.Name)
		}
		cur := map[string]string{".uid": f[2], ".gecos": f[4], ".homeDir": f[5], ".shell": f[6]}
		want := map[string]string{".gecos": u.Gecos, ".homeDir": u.HomeDir, ".shell": u.Shell}
		if u.UID != nil {
			want[".uid"] = strconv.Itoa(*u.UID)
		}
		if u.PrimaryGroup != "" {
			_, g := group.Find(u.PrimaryGroup)
			if len(g) < 3 || g[2] != f[3] {
				return h, fmt.Errorf(".primaryGroup: user %s exists with another primary group; slate changes only passwordHash, sshAuthorizedKeys and groups of existing users", u.Name)
			}
		}
		for k, v := range want {
			if v != "" && v != cur[k] {
				return h, fmt.Errorf("%s: user %s exists with %s %q; slate changes only passwordHash, sshAuthorizedKeys and groups of existing users", k, u.Name, k[1:], cur[k])
			}
		}
		var err error
		if h.uid, err = strconv.Atoi(f[2]); err != nil {
			return h, fmt.Errorf(": /etc/passwd entry of %s has uid %q", u.Name, f[2])
		}
		if h.gid, err = strconv.Atoi(f[3]); err != nil {
			return h, fmt.Errorf(": /etc/passwd entry of %s has gid %q", u.Name, f[3])
		}
		h.dir = f[5]
		if u.PasswordHash != nil {
			if j, s := shadow.Find(u.Name); j >= 0 {
				for len(s) < 9 {
					s = append(s, "")
				}
				s[1] = hash
				shadow.Set(j, s)
			} else {
				shadow.Add(u.Name, hash, "", "0", "99999", "7", "", "", "")
				if f[1] != "x" {
					f[1] = "x"
					passwd.Set(i, f)
				}
			}
		}
	} else {
		uid := 0
		var err error
		if u.UID != nil {
			if uid = *u.UID; passwd.Used(uid) {
				return h, fmt.Errorf(".uid: uid %d is taken by another user", uid)
			}
		} else if uid, err = freeID(u.System, passwd, nil); err != nil {
			return h, fmt.Errorf(": %w", err)
		}
		var gid int
		if u.PrimaryGroup != "" {
			_, g := group.Find(u.PrimaryGroup)
			if len(g) < 3 {
				return h, fmt.Errorf(".primaryGroup: no group %q", u.PrimaryGroup)
			}
			if gid, err = strconv.Atoi(g[2]); err != nil {
				return h, fmt.Errorf(".primaryGroup: group %s has gid %q", u.PrimaryGroup, g[2])
			}
		} else {
			// a group named like the user, as useradd does by default
			if _, g := group.Find(u.Name); g != nil {
				return h, fmt.Errorf(".name: a group %s exists already; set primaryGroup to use it", u.Name)
			}
			gid = uid
			if group.Used(gid) {
				if gid, err = freeID(u.System, group, nil); err != nil {
					return h, fmt.Errorf(": %w", err)
				}
			}
			newGroup(u.Name, gid)
		}
		h.dir = u.HomeDir
		if h.dir == "" {
			h.dir = "/home/" + u.Name
		}
		shell := u.Shell
		if shell == "" {
			shell = "/bin/sh"
		}
		passwd.Add(u.Name, "x", strconv.Itoa(uid), strconv.Itoa(gid), u.Gecos, h.dir, shell)
		// An empty "last change" field turns password aging off and keeps
		// the file independent of the clock.
		shadow.Add(u.Name, hash, "", "0", "99999", "7", "", "", "")
		h.uid, h.gid, h.create = uid, gid, !u.NoCreateHome
	}
	for k, g := range u.Groups {
		if !group.AddMember(g, u.Name, 3) {
			return h, fmt.Errorf(".groups[%d]: no group %q", k, g)
		}
		gshadow.AddMember(g, u.Name, 3)
	}
	return h, nil
}

// makeHome creates a new user's home (0700, owned by the user) unless it
// exists.
func (a *applier) makeHome(dir string, uid, gid int) error {
	p, err := writablePath(dir)
	if err != nil {
		return err
	}
	name := rel(p)
	if _, err := a.t.Lstat(name); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := a.t.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	if err := a.t.Mkdir(name, 0o700); err != nil {
		return err
	}
	return a.setPerms(name, uid, gid, 0o700)
}

// addKeys appends the keys that are not there yet to HOME/.ssh/
// authorized_keys (0600 in a 0700 .ssh, both owned by the user), which is
// where OpenSSH looks by default; Ignition writes a fragment under
// authorized_keys.d that needs a helper slate does not have.
func (a *applier) addKeys(home string, uid, gid int, keys []string) error {
	p, err := writablePath(home)
	if err != nil {
		return fmt.Errorf("home %s: %w", home, err)
	}
	sshDir := path.Join(rel(p), ".ssh")
	if _, err := a.t.Lstat(sshDir); errors.Is(err, fs.ErrNotExist) {
		if err := a.t.MkdirAll(sshDir, 0o700); err != nil {
			return err
		}
		if err := a.setPerms(sshDir, uid, gid, 0o700); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	name := path.Join(sshDir, "authorized_keys")
	old, err := a.t.ReadFile(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	have := map[string]bool{}
	for l := range strings.SplitSeq(string(old), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	data := string(old)
	if data != "" && !strings.HasSuffix(data, "\n") {
		data += "\n"
	}
	for _, k := range keys {
		k = strings.TrimSpace(k)
		if k != "" && !have[k] {
			data += k + "\n"
			have[k] = true
		}
	}
	return writeAtomic(a.t, name, []byte(data), 0o600, uid, gid)
}

// idMaps resolves user and group names of the target system.
type idMaps struct {
	users, groups map[string]int
}

func loadIDs(t tree) (*idMaps, error) {
	m := &idMaps{users: map[string]int{}, groups: map[string]int{}}
	for name, into := range map[string]map[string]int{"etc/passwd": m.users, "etc/group": m.groups} {
		d, err := loadDB(t, name, 0)
		if err != nil {
			return nil, err
		}
		for n, id := range d.IDs() {
			into[n] = id
		}
	}
	return m, nil
}

func (m *idMaps) resolve(o Owner, names map[string]int, kind string) (int, error) {
	if o.ID != nil {
		return *o.ID, nil
	}
	if o.Name == "" {
		return 0, nil
	}
	id, ok := names[o.Name]
	if !ok {
		return 0, fmt.Errorf("%s.name: no %s %q on the target system", kind, kind, o.Name)
	}
	return id, nil
}
