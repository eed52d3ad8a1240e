package builder

import (
	"errors"

	"github.com/slateos/slate/configs"
)

// ErrNoSSH says that no slot of a disk enables ssh.
var ErrNoSSH = errors.New("no slot of the disk enables ssh")

// InspectSSH reads the ssh section from the image description of a
// disk's slots (slot A first), for `slate vm run --ssh`: which guest
// port to forward. It returns ErrNoSSH when no slot enables ssh.
func InspectSSH(p string) (*configs.SSH, error) {
	slots, err := readSlotInfos(p)
	if err != nil {
		return nil, err
	}
	for _, s := range slots {
		if s.err == nil && s.info.SSH != nil && s.info.SSH.Enable {
			return s.info.SSH, nil
		}
	}
	return nil, ErrNoSSH
}
