package builder

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/format/ext4fs"
	"github.com/slateos/slate/internal/imageinfo"
	"github.com/slateos/slate/internal/oci"
	"github.com/slateos/slate/internal/run/cnet"
)

// RuncVersion is the runc release every image with containers carries:
// scripts/fetch-runc.sh builds it into CACHE/runc/<version>/runc.
const RuncVersion = "v1.5.3"

// overlayModule is needed by a container with read_only: false (PID 1
// mounts an overlay over its bundle's rootfs before each start).
const overlayModule = "overlay"

// ContainerModules are the modules spec's containers need beyond the
// default root set, nil without containers.
func ContainerModules(spec *configs.Spec) []string {
	if len(spec.Containers) == 0 {
		return nil
	}
	// The host side of containers (cnet: the bridge, a veth per
	// container, nftables masquerade and DNAT) loads cnet.Modules before
	// the first container starts; the closure adds their dependencies.
	mods := append([]string(nil), cnet.Modules...)
	for _, c := range spec.Containers {
		if !c.IsReadOnly() {
			mods = append(mods, overlayModule)
			break
		}
	}
	return mods
}

// ContainerReport is one baked container in build.json.
type ContainerReport struct {
	Name string `json:"name"`
	// Image is the reference in the spec, Digest what it resolved to
	// (the digest a spec pins), Manifest the linux/amd64 manifest's
	// digest when Digest is an index.
	Image    string `json:"image"`
	Digest   string `json:"digest"`
	Manifest string `json:"manifest,omitempty"`
	// UnpackedBytes is the size of the flattened image's files.
	UnpackedBytes int64  `json:"unpacked_bytes"`
	Files         int    `json:"files"`
	Address       string `json:"address,omitempty"`
}

// RuncReport is the runtime in build.json.
type RuncReport struct {
	Version string `json:"version"`
	Path    string `json:"path"`
	SHA256  string `json:"sha256"`
}

// baked is a container ready to be written into the root: its image
// flattened, its runtime config rendered.
type baked struct {
	info   imageinfo.Container
	rootfs *oci.Rootfs
	config []byte
	report ContainerReport
}

// resolveRunc finds the pinned runc in the cache and checks it is a
// static x86_64 binary (the root has no libc).
func resolveRunc(cacheDir string) (string, error) {
	p := filepath.Join(cacheDir, "runc", RuncVersion, "runc")
	st, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("$.containers: the container runtime runc %s is not in the cache (%s: %w): run scripts/fetch-runc.sh %s", RuncVersion, p, unwrapPath(err), cacheDir)
	}
	if !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("$.containers: %s is not an executable file: run scripts/fetch-runc.sh %s", p, cacheDir)
	}
	if err := checkStaticELF(p, "runc"); err != nil {
		return "", fmt.Errorf("$.containers: %w; scripts/fetch-runc.sh %s builds a static one", err, cacheDir)
	}
	// fetch-runc.sh records the binary's sha256 beside it: a binary
	// changed since is not the one it built.
	if want, err := readSidecar(p + ".sha256"); err == nil {
		got, err := hashFile(p)
		if err != nil {
			return "", fmt.Errorf("$.containers: runc: %w", err)
		}
		if got.SHA256 != want {
			return "", fmt.Errorf("$.containers: %s has sha256 %s, but runc.sha256 beside it says %s: run scripts/fetch-runc.sh %s again", p, got.SHA256, want, cacheDir)
		}
	}
	return p, nil
}

// readSidecar reads the hash of a "HASH  NAME" line (sha256sum's format).
func readSidecar(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 4096))
	if !sc.Scan() {
		return "", fmt.Errorf("%s is empty", p)
	}
	h, _, _ := strings.Cut(sc.Text(), " ")
	return h, nil
}

// pullContainers pulls every container's image into the cache, flattens
// it, resolves its user, allocates its address and renders its runtime
// config. Nothing is written outside the cache: an image that cannot be
// had fails the build before the output folder is touched.
func (j *job) pullContainers(ctx context.Context) error {
	spec := j.spec
	gw, addrs, err := spec.BridgeAddresses()
	if err != nil {
		return fmt.Errorf("$.network.container_subnet: %w", err)
	}
	cache := filepath.Join(j.o.CacheDir, "oci")
	stage := filepath.Join(cache, "stage")
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return fmt.Errorf("container cache: %w", err)
	}
	for i, c := range spec.Containers {
		field := fmt.Sprintf("$.containers[%d]", i)
		t0 := time.Now()
		img, err := oci.Pull(ctx, c.Image, oci.PullOptions{CacheDir: cache, Insecure: c.Insecure})
		if err != nil {
			return fmt.Errorf("%s.image: %w", field, err)
		}
		rootfs, err := img.Unpack(oci.UnpackOptions{StageDir: stage})
		if err != nil {
			return fmt.Errorf("%s.image: %s: %w", field, img.Digest, err)
		}
		b := &baked{rootfs: rootfs}
		j.baked = append(j.baked, b) // closed by cleanup, on success too
		// an empty user is the image's USER: an error then is the image's
		u, err := rootfs.ResolveUser(c.User)
		if err != nil {
			if c.User == "" {
				return fmt.Errorf("%s.image: %w", field, err)
			}
			return fmt.Errorf("%s.user: %w", field, err)
		}
		b.info = imageinfo.Container{
			Container: c,
			Digest:    img.Digest,
			Bundle:    path.Join(configs.ContainersDir, c.Name),
			UID:       u.UID,
			GID:       u.GID,
		}
		if ss := img.Config.StopSignal; ss != "" {
			// PID 1 stops the container with it: one it could not read
			// fails here, not at every shutdown of every machine.
			if _, err := configs.ParseSignal(ss); err != nil {
				return fmt.Errorf("%s.image: %s: STOPSIGNAL: %w", field, img.Digest, err)
			}
			b.info.StopSignal = ss
		}
		if addrs[i].IsValid() {
			b.info.Address, b.info.Gateway = addrs[i].String(), gw.Addr().String()
		}
		rs, err := oci.RuntimeSpec(b.info, img.Config, u)
		if err != nil {
			return fmt.Errorf("%s: runtime config: %w", field, err)
		}
		if err := rootfs.AddMountPoints(oci.MountPoints(rs)); err != nil {
			return fmt.Errorf("%s: mount points: %w", field, err)
		}
		if b.config, err = oci.MarshalSpec(rs); err != nil {
			return fmt.Errorf("%s: runtime config: %w", field, err)
		}
		b.report = ContainerReport{Name: c.Name, Image: c.Image, Digest: img.Digest, UnpackedBytes: rootfs.Bytes, Files: rootfs.Files, Address: b.info.Address}
		if img.Manifest != img.Digest {
			b.report.Manifest = img.Manifest
		}
		logrus.WithFields(logrus.Fields{
			"container": c.Name, "image": c.Image, "digest": img.Digest,
			"unpacked": configs.Size(rootfs.Bytes).String(), "files": rootfs.Files,
			"took": time.Since(t0).Round(time.Millisecond),
		}).Info("container image pulled")
	}
	return nil
}

// closeBaked removes the staged contents of flattened images.
func (j *job) closeBaked() {
	for _, b := range j.baked {
		if b.rootfs != nil {
			_ = b.rootfs.Close()
		}
	}
	j.baked = nil
}

// addRunc puts the runtime into the root.
func addRunc(fsys *ext4fs.FS, in Inputs) error {
	st, err := os.Stat(in.Runc)
	if err != nil {
		return fmt.Errorf("runc: %w", err)
	}
	if err := fsys.AddFile(configs.RuncPath, 0o755, 0, 0, st.Size(), openFile(in.Runc)); err != nil {
		return fmt.Errorf("root: %s: %w", configs.RuncPath, err)
	}
	return nil
}

// addContainers writes each container's bundle: config.json and the
// flattened image under rootfs/.
func addContainers(fsys *ext4fs.FS, cons []*baked) error {
	if len(cons) == 0 {
		return nil
	}
	if err := fsys.Mkdir(configs.ContainersDir, 0o755, 0, 0); err != nil {
		return fmt.Errorf("root: %s: %w", configs.ContainersDir, err)
	}
	for i, b := range cons {
		field := fmt.Sprintf("$.containers[%d]", i)
		bundle := b.info.Bundle
		if err := fsys.Mkdir(bundle, 0o755, 0, 0); err != nil {
			return fmt.Errorf("%s: %s: %w", field, bundle, err)
		}
		cfg := path.Join(bundle, "config.json")
		if err := fsys.AddFile(cfg, 0o644, 0, 0, int64(len(b.config)), staticBytes(b.config)); err != nil {
			return fmt.Errorf("%s: %s: %w", field, cfg, err)
		}
		root := path.Join(bundle, "rootfs")
		if err := fsys.Mkdir(root, 0o755, 0, 0); err != nil {
			return fmt.Errorf("%s: %s: %w", field, root, err)
		}
		if err := b.rootfs.WriteTo(&prefixTree{fs: fsys, prefix: root}); err != nil {
			return fmt.Errorf("%s.image: %s: %w", field, b.info.Digest, err)
		}
	}
	return nil
}

// prefixTree is an ext4fs.FS seen from a folder of it: the flattened
// image's "/" is the bundle's rootfs. Paths are cleaned against "/" first,
// so no entry of an image can land outside its rootfs.
type prefixTree struct {
	fs     *ext4fs.FS
	prefix string
}

func (t *prefixTree) at(p string) string {
	c := path.Clean("/" + p)
	if c == "/" {
		return t.prefix
	}
	return t.prefix + c
}

func (t *prefixTree) Mkdir(p string, perm fs.FileMode, uid, gid uint32) error {
	return t.fs.Mkdir(t.at(p), perm, uid, gid)
}

func (t *prefixTree) AddFile(p string, perm fs.FileMode, uid, gid uint32, size int64, open func() (io.ReadCloser, error)) error {
	return t.fs.AddFile(t.at(p), perm, uid, gid, size, open)
}

func (t *prefixTree) Symlink(p, target string, uid, gid uint32) error {
	// The target is kept as it is: it resolves inside the container,
	// whose root is the rootfs.
	return t.fs.Symlink(t.at(p), target, uid, gid)
}

func (t *prefixTree) Link(p, existing string) error {
	return t.fs.Link(t.at(p), t.at(existing))
}

func (t *prefixTree) Mknod(p string, mode fs.FileMode, major, minor uint32, uid, gid uint32) error {
	return t.fs.Mknod(t.at(p), mode, major, minor, uid, gid)
}

func (t *prefixTree) SetXattr(p, name string, value []byte) error {
	return setXattr(t.fs, t.at(p), name, value)
}

var _ oci.Tree = (*prefixTree)(nil)
