package oci

import (
	"errors"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/slateos/slate/imageinfo"
)

// RuntimeSpec is the OCI runtime config of container c.
func RuntimeSpec(c imageinfo.Container, img ImageConfig, u User) (*specs.Spec, error) {
	return nil, errors.New("TODO")
}

// MarshalSpec renders config.json (byte-identical for equal specs).
func MarshalSpec(s *specs.Spec) ([]byte, error) { return nil, errors.New("TODO") }

// MountPoints lists the paths the rootfs must have for s's mounts.
func MountPoints(s *specs.Spec) []MountPoint { return nil }
