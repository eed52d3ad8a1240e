package oci

import "errors"

// UnpackOptions bound a flattening.
type UnpackOptions struct {
	// StageDir is where regular files' contents are kept until the Tree
	// has read them (one file, removed by Rootfs.Close). Empty is
	// os.TempDir().
	StageDir string
	// MaxBytes bounds the bytes of regular files over all layers (a file
	// a later layer replaces counts too); 0 is 8 GiB.
	MaxBytes int64
	// MaxEntries bounds the tar entries over all layers; 0 is 1<<20.
	MaxEntries int
}

// Rootfs is a flattened image: its tree in memory (metadata only), file
// contents staged on disk.
type Rootfs struct{}

// Unpack applies the image's layers in order (whiteouts and opaque
// directories as overlayfs and Docker do), verifying each layer's
// compressed digest and its diff_id on the way.
func (img *Image) Unpack(opts UnpackOptions) (*Rootfs, error) {
	return nil, errors.New("TODO")
}

// ResolveUser resolves a container's user spec against the image's
// /etc/passwd and /etc/group.
func (r *Rootfs) ResolveUser(spec string) (User, error) { return User{}, errors.New("TODO") }

// AddMountPoints makes sure every mount point exists.
func (r *Rootfs) AddMountPoints(mps []MountPoint) error { return errors.New("TODO") }

// WriteTo emits the tree to t, deterministically.
func (r *Rootfs) WriteTo(t Tree) error { return errors.New("TODO") }

// Close removes the staged file contents.
func (r *Rootfs) Close() error { return nil }
