package builder

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/partitions"
)

// ErrNoSSH says that no slot of a disk enables ssh.
var ErrNoSSH = errors.New("no slot of the disk enables ssh")

// InspectSSH reads the ssh section from the image description of a
// disk's slots (slot A first), for `slate vm run --ssh`: which guest
// port to forward. It returns ErrNoSSH when no slot enables ssh.
func InspectSSH(p string) (*configs.SSH, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: size: %w", p, err)
	}
	l, err := partitions.ReadGPT(f, size)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", p, err)
	}
	for _, slot := range []string{"a", "b"} {
		for _, part := range l.Parts {
			if part.Label != partitions.SlotLabel(slot) {
				continue
			}
			info, err := readImageInfo(f, part.Start, part.Size)
			if err == nil && info.SSH != nil && info.SSH.Enable {
				return info.SSH, nil
			}
		}
	}
	return nil, ErrNoSSH
}
