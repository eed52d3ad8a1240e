package stage1

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/internal/accounts"
)

// accountFiles are merged from the slot into /etc's upper layer.
var accountFiles = []struct {
	name string
	kind accounts.Kind
}{{"passwd", accounts.PasswdFile}, {"group", accounts.GroupFile}, {"shadow", accounts.ShadowFile}}

// mergeAccounts brings the slot's account entries into the copies of
// /etc/passwd, group and shadow in the overlay's upper layer, before the
// overlay is mounted (while the slot's own files can still be read).
// Once Ignition has added a user, the upper copy hides the slot's file
// for good; without this, a user, group or sshd account that a later
// version adds would never appear. See accounts.Merge for which side
// wins. A file that cannot be merged is left as it was, with a warning:
// the machine boots with the accounts it had.
func mergeAccounts(lowerEtc, upper string) {
	for _, f := range accountFiles {
		up := filepath.Join(upper, f.name)
		st, err := os.Lstat(up)
		if err != nil || !st.Mode().IsRegular() {
			continue // no copy (or a whiteout): the slot's file shows
		}
		if err := mergeAccountFile(filepath.Join(lowerEtc, f.name), up, st, f.kind); err != nil {
			logrus.WithError(err).WithField("file", "/etc/"+f.name).Warn("the image's accounts could not be merged into the machine's")
		}
	}
}

// maxAccountFile bounds what is read of an account file.
const maxAccountFile = 16 << 20

func mergeAccountFile(lower, upper string, st fs.FileInfo, kind accounts.Kind) error {
	image, err := readBounded(lower)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	machine, err := readBounded(upper)
	if err != nil {
		return err
	}
	out, changed := accounts.Merge(kind, image, machine)
	if !changed {
		return nil
	}
	tmp := upper + ".slate-merge"
	w, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	if err == nil {
		err = w.Chmod(st.Mode().Perm())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && err == nil {
		err = w.Chown(int(sys.Uid), int(sys.Gid))
	}
	if err == nil {
		err = w.Sync()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, upper)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	logrus.WithField("file", upper).Info("the image's accounts merged into the machine's")
	return nil
}

func readBounded(p string) ([]byte, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxAccountFile {
		return nil, fmt.Errorf("%s: %d bytes, more than an account file has", p, st.Size())
	}
	return os.ReadFile(p)
}
