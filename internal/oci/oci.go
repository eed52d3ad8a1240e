// Package oci is the build side of slate's containers: it pulls an OCI (or
// Docker v2) image from a registry into a content-addressed cache, verifies
// every byte against its digest, flattens the layers into a file tree (the
// builder writes it into the slot root with ext4fs), resolves the
// container's user in the image's own account files, and writes the OCI
// runtime config runc reads.
//
// The builder's sequence for one container c (a configs.Container):
//
//	img, err := oci.Pull(ctx, c.Image, oci.PullOptions{CacheDir: cacheDir, Insecure: c.Insecure})
//	root, err := img.Unpack(oci.UnpackOptions{StageDir: tmp})
//	defer root.Close()                 // only after ext4fs has written the files
//	u, err := root.ResolveUser(c.User) // wrap: "containers[i].user: ..."
//	ic := imageinfo.Container{Container: c, Digest: img.Digest, Bundle: ...,
//		Address: ..., Gateway: ..., UID: u.UID, GID: u.GID}
//	spec, err := oci.RuntimeSpec(ic, img.Config, u)
//	err = root.AddMountPoints(oci.MountPoints(spec))
//	err = root.WriteTo(tree)           // an ext4fs.FS under Bundle + "/rootfs"
//	js, err := oci.MarshalSpec(spec)   // Bundle + "/config.json"
//
// Everything read from a registry or a layer is hostile: sizes, counts and
// paths are bounded, and an error names the image, the layer or the file at
// fault.
package oci

import (
	"io"
	"io/fs"
)

// Platform is the only platform slate runs: an index is resolved to its
// linux/amd64 manifest.
const (
	PlatformOS           = "linux"
	PlatformArchitecture = "amd64"
)

// ImageConfig is what the runtime config takes from the image's config
// blob.
type ImageConfig struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	// Env is "KEY=value" in the image's order.
	Env []string `json:"env,omitempty"`
	// User is the image's USER ("name", "uid", "name:group", "uid:gid"
	// or empty for root).
	User       string `json:"user,omitempty"`
	WorkingDir string `json:"working_dir,omitempty"`
	// ExposedPorts are "80/tcp", sorted.
	ExposedPorts []string `json:"exposed_ports,omitempty"`
	// StopSignal is the image's STOPSIGNAL ("SIGQUIT", "3"); empty is
	// SIGTERM. The builder checks it and carries it into image.json, and
	// PID 1 stops the container with it.
	StopSignal string `json:"stop_signal,omitempty"`
}

// Tree receives a flattened image. Its methods mirror ext4fs.FS (the
// builder adapts an ext4fs.FS to it under the bundle's rootfs prefix).
// Paths are absolute ("/etc/passwd"), cleaned, and "/" is the image's
// root. WriteTo calls Mkdir for a directory before anything inside it,
// AddFile/Symlink/Mknod in sorted order, SetXattr right after the entry it
// belongs to, and Link last (existing is always a path already added).
type Tree interface {
	Mkdir(p string, perm fs.FileMode, uid, gid uint32) error
	// AddFile adds a regular file of size bytes; open is called (once) when
	// the content is needed and must not be called after Rootfs.Close.
	AddFile(p string, perm fs.FileMode, uid, gid uint32, size int64, open func() (io.ReadCloser, error)) error
	Symlink(p, target string, uid, gid uint32) error
	Link(p, existing string) error
	// Mknod is called for named pipes only: device nodes under /dev are
	// dropped (runc mounts a tmpfs over /dev and creates its own), and a
	// device node anywhere else makes Unpack fail naming the file.
	Mknod(p string, mode fs.FileMode, major, minor uint32, uid, gid uint32) error
	// SetXattr sets an extended attribute (from the layer's PAX
	// SCHILY.xattr.* records, e.g. security.capability).
	SetXattr(p, name string, value []byte) error
}

// User is a container's user as runc takes it (process.user).
type User struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	// AdditionalGids are the groups of /etc/group that list the user as a
	// member (only when the user spec names no group, as runc and Docker
	// do), sorted and without duplicates.
	AdditionalGids []uint32 `json:"additional_gids,omitempty"`
}

// MountPoint is a path that must exist in the rootfs because the runtime
// config mounts something there (runc cannot create it in a read-only
// root).
type MountPoint struct {
	Path string
	// Dir is false for a file (a bind-mounted file: /etc/resolv.conf).
	Dir bool
}
