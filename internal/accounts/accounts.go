// Package accounts is the one parser (and editor) of the colon-separated
// account files /etc/passwd, /etc/group, /etc/shadow and /etc/gshadow.
// They may come from outside (an Ignition config writes them, or a file of
// the spec), so nothing here trusts them: a line that is no entry is
// skipped the way the C library skips it, and an edit keeps every line it
// does not touch byte for byte.
package accounts

import (
	"slices"
	"strconv"
	"strings"
)

// Fields splits one line into its colon-separated fields, or returns nil
// for a line that is no entry: empty, a comment ('#'), a NIS compat line
// ('+' or '-') or one without a name. A trailing "\r" is not part of it.
func Fields(line string) []string {
	line = strings.TrimRight(line, "\r\n")
	if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' || line[0] == ':' {
		return nil
	}
	return strings.Split(line, ":")
}

// ParseID reads a uid or gid field: a decimal number that fits 32 bits.
func ParseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}

// User is one entry of /etc/passwd (name:password:uid:gid:gecos:home:shell).
type User struct {
	Name, Password string
	UID, GID       uint32
	Gecos, Home    string
	Shell          string
}

// Group is one entry of /etc/group (name:password:gid:member,member).
type Group struct {
	Name, Password string
	GID            uint32
	Members        []string
}

// Users lists the entries of a passwd file that the C library would use:
// at least name, password, uid and gid, both ids numbers.
func Users(passwd string) []User {
	var out []User
	for line := range strings.Lines(passwd) {
		f := Fields(line)
		if len(f) < 4 {
			continue
		}
		uid, ok1 := ParseID(f[2])
		gid, ok2 := ParseID(f[3])
		if !ok1 || !ok2 {
			continue
		}
		for len(f) < 7 {
			f = append(f, "")
		}
		out = append(out, User{Name: f[0], Password: f[1], UID: uid, GID: gid, Gecos: f[4], Home: f[5], Shell: f[6]})
	}
	return out
}

// Groups lists the entries of a group file that the C library would use:
// at least name, password and a numeric gid.
func Groups(group string) []Group {
	var out []Group
	for line := range strings.Lines(group) {
		f := Fields(line)
		if len(f) < 3 {
			continue
		}
		gid, ok := ParseID(f[2])
		if !ok {
			continue
		}
		g := Group{Name: f[0], Password: f[1], GID: gid}
		if len(f) > 3 && f[3] != "" {
			g.Members = strings.Split(f[3], ",")
		}
		out = append(out, g)
	}
	return out
}

// LookupUser finds user by name, else, when it is a number, the first
// entry with that uid (as getpwnam, then getpwuid, do).
func LookupUser(passwd, user string) (User, bool) {
	numeric, isNum := ParseID(user)
	var byUID *User
	for _, u := range Users(passwd) {
		if u.Name == user {
			return u, true
		}
		if isNum && byUID == nil && u.UID == numeric {
			byUID = &u
		}
	}
	if byUID != nil {
		return *byUID, true
	}
	return User{}, false
}

// MemberOf lists the gids of the groups that name user as a member.
func MemberOf(group, user string) []uint32 {
	var gids []uint32
	for _, g := range Groups(group) {
		if slices.Contains(g.Members, user) {
			gids = append(gids, g.GID)
		}
	}
	return gids
}

// File is an account file kept as lines, to be edited: the lines slate
// does not change stay exactly as they were.
type File struct {
	Lines   []string
	Changed bool
}

// Parse reads the text of an account file for editing.
func Parse(data []byte) *File {
	f := &File{}
	for l := range strings.SplitSeq(strings.TrimSuffix(string(data), "\n"), "\n") {
		if l != "" || len(data) > 0 {
			f.Lines = append(f.Lines, l)
		}
	}
	return f
}

// Bytes is the file's text, each line ending in a newline.
func (f *File) Bytes() []byte {
	return []byte(strings.Join(f.Lines, "\n") + "\n")
}

// Find returns the index and fields of the entry named name, or -1.
func (f *File) Find(name string) (int, []string) {
	for i, l := range f.Lines {
		if fs := Fields(l); len(fs) > 1 && fs[0] == name {
			return i, fs
		}
	}
	return -1, nil
}

// Used reports whether field 2 (the uid or gid) of any entry is id.
func (f *File) Used(id int) bool {
	for _, l := range f.Lines {
		if fs := Fields(l); len(fs) > 2 && fs[2] == strconv.Itoa(id) {
			return true
		}
	}
	return false
}

// IDs maps the names of the entries with a numeric field 2 (uid or gid)
// to it.
func (f *File) IDs() map[string]int {
	m := map[string]int{}
	for _, l := range f.Lines {
		if fs := Fields(l); len(fs) > 2 {
			if id, ok := ParseID(fs[2]); ok {
				m[fs[0]] = int(id)
			}
		}
	}
	return m
}

// Add appends an entry.
func (f *File) Add(fields ...string) {
	f.Lines = append(f.Lines, strings.Join(fields, ":"))
	f.Changed = true
}

// Set replaces entry i.
func (f *File) Set(i int, fields []string) {
	f.Lines[i] = strings.Join(fields, ":")
	f.Changed = true
}

// AddMember adds user to the comma list in field idx of group's entry
// (3 in group and gshadow files); false when there is no such group.
func (f *File) AddMember(group, user string, idx int) bool {
	i, fs := f.Find(group)
	if i < 0 {
		return false
	}
	for len(fs) <= idx {
		fs = append(fs, "")
	}
	var members []string
	if fs[idx] != "" {
		members = strings.Split(fs[idx], ",")
	}
	if !slices.Contains(members, user) {
		fs[idx] = strings.Join(append(members, user), ",")
		f.Set(i, fs)
	}
	return true
}
