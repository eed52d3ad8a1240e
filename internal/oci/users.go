package oci

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/slateos/slate/internal/accounts"
)

// maxID is the largest uid or gid runc accepts.
const maxID = 1<<31 - 1

// ResolveUser resolves a container's user spec ("name", "uid",
// "name:group", "uid:gid", "uid:group", "name:gid") against the image's
// /etc/passwd and /etc/group, exactly as runc and Docker do
// (libcontainer/user.GetExecUser):
//
//   - spec empty takes the image's USER, and that empty is uid 0;
//   - a number is a uid, looked up by uid only (a passwd entry named
//     "1000" does not count); one that is not in passwd is still used,
//     with gid 0; a name must be in passwd;
//   - the primary gid is the passwd entry's, unless a group is given: a
//     number is used as it is, a name must be in /etc/group;
//   - without an explicit group, the supplementary gids are the groups
//     that list the user's passwd name as a member.
//
// The error names the spec and the file; the builder adds the field path.
func (r *Rootfs) ResolveUser(spec string) (User, error) {
	what := "user"
	if spec == "" {
		spec, what = r.img.Config.User, "the image's user"
	}
	passwd, err := r.readFile("/etc/passwd", maxAccountFile)
	if err != nil {
		return User{}, fmt.Errorf("%s %q: the image's /etc/passwd: %w", what, spec, err)
	}
	group, err := r.readFile("/etc/group", maxAccountFile)
	if err != nil {
		return User{}, fmt.Errorf("%s %q: the image's /etc/group: %w", what, spec, err)
	}
	u, err := resolveUser(spec, string(passwd), string(group))
	if err != nil {
		return User{}, fmt.Errorf("%s %q: %w", what, spec, err)
	}
	return u, nil
}

func parseID(s string) (uint32, bool, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > maxID {
		return 0, true, fmt.Errorf("id %s out of range (0 to %d)", s, maxID)
	}
	return uint32(n), true, nil
}

// resolveUser is ResolveUser on the files' contents.
func resolveUser(spec, passwd, group string) (User, error) {
	if len(spec) > 2*maxNameLen+1 || strings.ContainsAny(spec, "\x00\n") {
		return User{}, fmt.Errorf("not a user spec")
	}
	userArg, groupArg, _ := strings.Cut(spec, ":")
	uid, uidNum, err := parseID(userArg)
	if err != nil {
		return User{}, err
	}
	gid, gidNum, err := parseID(groupArg)
	if err != nil {
		return User{}, err
	}
	var u User
	matched := ""
	for _, e := range accounts.Users(passwd) {
		if (userArg == "" && e.UID == 0) || (uidNum && e.UID == uid) || (!uidNum && userArg != "" && e.Name == userArg) {
			if e.UID > maxID || e.GID > maxID {
				return User{}, fmt.Errorf("the image's /etc/passwd entry %q has an id out of range", e.Name)
			}
			u.UID, u.GID, matched = e.UID, e.GID, e.Name
			break
		}
	}
	if matched == "" && userArg != "" {
		if !uidNum {
			return User{}, fmt.Errorf("no user %q in the image's /etc/passwd", userArg)
		}
		u.UID = uid
	}
	if groupArg == "" && matched == "" {
		return u, nil
	}
	var gids []uint32
	found := false
	for _, g := range accounts.Groups(group) {
		switch {
		case groupArg == "":
			if slices.Contains(g.Members, matched) && g.GID <= maxID {
				gids = append(gids, g.GID)
			}
		case !found && ((gidNum && g.GID == gid) || (!gidNum && g.Name == groupArg)):
			if g.GID > maxID {
				return User{}, fmt.Errorf("the image's /etc/group entry %q has an id out of range", g.Name)
			}
			u.GID, found = g.GID, true
		}
	}
	if groupArg != "" {
		if !found {
			if !gidNum {
				return User{}, fmt.Errorf("no group %q in the image's /etc/group", groupArg)
			}
			u.GID = gid
		}
		return u, nil
	}
	slices.Sort(gids)
	u.AdditionalGids = slices.Compact(gids)
	return u, nil
}
