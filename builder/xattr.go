package builder

import (
	"github.com/slateos/slate/internal/format/ext4fs"
)

// setXattr sets an extended attribute (security.capability, usually) of
// a flattened image's file; ext4fs refuses what it cannot store, naming
// the file.
func setXattr(fsys *ext4fs.FS, p, name string, value []byte) error {
	return fsys.SetXattr(p, name, value)
}
