package accounts

import "strings"

// Kind is which account file a merge is for.
type Kind int

// The account files Merge knows.
const (
	PasswdFile Kind = iota
	GroupFile
	ShadowFile
)

// Merge brings the image's entries (a new slot's account file) into the
// machine's copy of the file (the one in /etc's upper layer on STATE,
// which hides the slot's once anything, Ignition say, has changed it):
//
//   - an entry only the machine has (a user Ignition made) stays;
//   - an entry only the image has (a user, or sshd, that a later version
//     adds) is appended;
//   - an entry both have is the image's: its ids, home and shell are the
//     spec's. Except that a group keeps the members the machine added,
//     and a shadow entry keeps the machine's password unless that is one
//     of the image's own "!" (locked) or "*" (no password), so a password
//     set by Ignition survives and ssh.permit_root_login still reaches
//     root.
//
// Lines that are no entries and the machine's order are kept. changed is
// false when the result is the machine's file as it was.
func Merge(kind Kind, image, machine []byte) (out []byte, changed bool) {
	img := Parse(image)
	m := Parse(machine)
	byName := map[string][]string{}
	var order []string
	for _, l := range img.Lines {
		if f := Fields(l); len(f) > 1 {
			if _, dup := byName[f[0]]; !dup {
				order = append(order, f[0])
			}
			byName[f[0]] = f
		}
	}
	seen := map[string]bool{}
	for i, l := range m.Lines {
		f := Fields(l)
		if len(f) < 2 {
			continue
		}
		want, ok := byName[f[0]]
		if !ok || seen[f[0]] {
			continue
		}
		seen[f[0]] = true
		next := merged(kind, want, f)
		if s := strings.Join(next, ":"); s != strings.TrimRight(l, "\r") {
			m.Lines[i] = s
			m.Changed = true
		}
	}
	for _, n := range order {
		if !seen[n] {
			m.Add(byName[n]...)
		}
	}
	if !m.Changed {
		return machine, false
	}
	return m.Bytes(), true
}

// merged is the entry both files have: the image's, with what the
// machine keeps.
func merged(kind Kind, image, machine []string) []string {
	out := append([]string(nil), image...)
	switch kind {
	case GroupFile:
		for len(out) < 4 {
			out = append(out, "")
		}
		if len(machine) > 3 && machine[3] != "" {
			var members []string
			if out[3] != "" {
				members = strings.Split(out[3], ",")
			}
			for _, u := range strings.Split(machine[3], ",") {
				if u != "" && !contains(members, u) {
					members = append(members, u)
				}
			}
			out[3] = strings.Join(members, ",")
		}
	case ShadowFile:
		if pw := machine[1]; pw != "!" && pw != "*" {
			return machine
		}
	}
	return out
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
