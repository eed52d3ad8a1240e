package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/imageinfo"
)

// Container is what PID 1 needs to run a baked container (its bundle is
// in the slot's root, its config.json written by the builder) as a
// service: runc run in the foreground, which forwards signals to the
// container's init and exits with its status.
type Container struct {
	// Runc is the runtime binary and RuncRoot its --root (state on a
	// tmpfs).
	Runc     string `json:"runc"`
	RuncRoot string `json:"runc_root"`
	// Bundle holds config.json and rootfs/.
	Bundle string `json:"bundle"`
	// Digest is the image's manifest digest, for slate containers.
	Digest string `json:"digest,omitempty"`
	// Address is the container's bridge address with its prefix, empty
	// for the host and none networks; health checks on a port go to it,
	// or to 127.0.0.1 without one.
	Address string `json:"address,omitempty"`
	// ReadOnly is false for a writable root: before each start RunDir
	// gets a fresh tmpfs, and RunDir/rootfs an overlay of the bundle's
	// rootfs (lower) with upper and work on that tmpfs; config.json's
	// root.path names RunDir/rootfs.
	ReadOnly bool   `json:"read_only"`
	RunDir   string `json:"run_dir,omitempty"`
	// Volumes are folders on STATE created (when missing) owned by UID
	// and GID with mode 0700 before each start: only the container's
	// user, and root, may enter them.
	Volumes []string `json:"volumes,omitempty"`
	UID     uint32   `json:"uid"`
	GID     uint32   `json:"gid"`
	// Health is checked while the container runs (see health.go).
	Health *configs.HealthCheck `json:"health,omitempty"`
	// StopSignal is the image's STOPSIGNAL, 0 for SIGTERM: a stop sends
	// it with runc kill (SIGTERM goes to runc, which forwards it).
	StopSignal syscall.Signal `json:"stop_signal,omitempty"`
}

// containerPaths are the folders FromContainer uses; tests change them.
type containerPaths struct {
	runc, runcRoot, volumes, runDir string
}

var defaultContainerPaths = containerPaths{
	runc: configs.RuncPath, runcRoot: configs.RuncState, volumes: configs.VolumesDir, runDir: configs.ContainerRunDir,
}

// FromContainer is how PID 1 runs a container of the image description.
// Its restart defaults to always.
func FromContainer(c imageinfo.Container) (Service, error) {
	return fromContainer(c, defaultContainerPaths)
}

// FromContainers converts every container of the image.
func FromContainers(cs []imageinfo.Container) ([]Service, error) {
	out := make([]Service, 0, len(cs))
	for i, c := range cs {
		svc, err := FromContainer(c)
		if err != nil {
			return nil, fmt.Errorf("containers[%d] (%s): %w", i, c.Name, err)
		}
		out = append(out, svc)
	}
	return out, nil
}

func fromContainer(c imageinfo.Container, p containerPaths) (Service, error) {
	bundle := c.Bundle
	if bundle == "" {
		bundle = filepath.Join(configs.ContainersDir, c.Name)
	}
	if !filepath.IsAbs(bundle) {
		return Service{}, fmt.Errorf("bundle %q is not an absolute path", bundle)
	}
	var vols []string
	for i, v := range c.Volumes {
		vol, err := configs.ParseVolume(v)
		if err != nil {
			return Service{}, fmt.Errorf("volumes[%d]: %w", i, err)
		}
		vols = append(vols, filepath.Join(p.volumes, vol.Name))
	}
	var stopSig syscall.Signal
	if c.StopSignal != "" {
		sig, err := configs.ParseSignal(c.StopSignal)
		if err != nil {
			return Service{}, fmt.Errorf("stop_signal: %w", err)
		}
		if sig != unix.SIGTERM {
			stopSig = sig
		}
	}
	restart := c.Restart
	if restart == "" {
		restart = configs.RestartAlways
	}
	ro := c.ReadOnly == nil || *c.ReadOnly
	ct := &Container{
		Runc: p.runc, RuncRoot: p.runcRoot, Bundle: bundle, Digest: c.Digest, Address: c.Address,
		ReadOnly: ro, Volumes: vols, UID: c.UID, GID: c.GID, Health: c.Health, StopSignal: stopSig,
	}
	if !ro {
		ct.RunDir = filepath.Join(p.runDir, c.Name)
	}
	return Service{
		Name:    c.Name,
		Command: p.runc,
		// --keep: the container and its cgroup stay after the exit
		// until runc delete, so that the exit's OOM kills are read from
		// its own leaf
		Args:    []string{"--root", p.runcRoot, "run", "--keep", "--bundle", bundle, c.Name},
		Restart: restart,
		After:   c.After, Requires: c.Requires,
		Limits:    c.Limits,
		Container: ct,
	}, nil
}

// runcArgv is a runc command line for the container.
func (c *Container) runcArgv(args ...string) []string {
	return append([]string{c.Runc, "--root", c.RuncRoot}, args...)
}

// runcWait bounds one runc delete or kill.
const runcWait = 5 * time.Second

// prepareContainer makes a container startable: runc and the bundle are
// there, what is left of a previous run is gone (runc's state, the
// processes of its cgroup, the writable root), its volumes exist and a
// writable root is mounted fresh. Each failure names what is missing.
func (s *supervisor) prepareContainer(svc *service) error {
	c := svc.spec.Container
	if fi, err := os.Stat(c.Runc); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("container runtime %s is missing or not executable: the image has no runc", c.Runc)
	}
	if _, err := os.Stat(filepath.Join(c.Bundle, "config.json")); err != nil {
		return fmt.Errorf("container bundle: %w", err)
	}
	if err := os.MkdirAll(c.RuncRoot, 0o700); err != nil {
		return fmt.Errorf("runc state folder: %w", err)
	}
	s.runcDelete(svc, false)
	if svc.leaf != nil {
		// runc makes the leaf from config.json; one left behind by a
		// runc that was killed may still hold the old container.
		_ = svc.leaf.Kill()
		if err := svc.leaf.Remove(killWait); err != nil {
			return err
		}
	}
	for _, v := range c.Volumes {
		if err := makeVolume(v, c.UID, c.GID); err != nil {
			return err
		}
	}
	if !c.ReadOnly {
		if err := mountWritableRoot(c); err != nil {
			return err
		}
	}
	return nil
}

// runcDelete runs runc delete --force, its failure only logged: a
// container that is not there is the usual case.
func (s *supervisor) runcDelete(svc *service, duringStop bool) {
	c := svc.spec.Container
	argv := c.runcArgv("delete", "--force", svc.spec.Name)
	if err := s.runQuiet(svc, argv, runcWait, duringStop); err != nil && !errors.Is(err, errStopping) {
		logrus.WithError(err).WithField("service", svc.spec.Name).Debug("supervisor: runc delete")
	}
}

// signalContainer sends the image's stop signal to the container's init
// with runc kill; false when runc could not, and the caller signals runc
// instead. It is not forwarded through runc run: runc cannot forward
// SIGKILL or SIGSTOP, and keeps SIGCHLD, SIGWINCH and SIGURG for itself.
func (s *supervisor) signalContainer(svc *service, sig syscall.Signal) bool {
	c := svc.spec.Container
	if err := s.runQuiet(svc, c.runcArgv("kill", svc.spec.Name, strconv.Itoa(int(sig))), runcWait, true); err != nil {
		logrus.WithError(err).WithField("service", svc.spec.Name).Warn("supervisor: runc kill with the stop signal")
		return false
	}
	return true
}

// killContainer is the last resort of a stop: runc kill KILL, then
// SIGKILL to everything in the container's cgroup.
func (s *supervisor) killContainer(svc *service) {
	c := svc.spec.Container
	if err := s.runQuiet(svc, c.runcArgv("kill", svc.spec.Name, "KILL"), runcWait, true); err != nil {
		logrus.WithError(err).WithField("service", svc.spec.Name).Warn("supervisor: runc kill KILL")
	}
	if svc.leaf != nil {
		_ = svc.leaf.Kill()
	}
}

// cleanupContainer runs after the container's runc is gone at shutdown.
func (s *supervisor) cleanupContainer(svc *service) {
	c := svc.spec.Container
	s.runcDelete(svc, true)
	if svc.leaf != nil {
		_ = svc.leaf.Kill()
		if err := svc.leaf.Remove(time.Second); err != nil {
			logrus.WithError(err).WithField("service", svc.spec.Name).Warn("supervisor: container cgroup")
		}
	}
	if !c.ReadOnly {
		unmountWritableRoot(c)
	}
}

// makeVolume creates a volume folder owned by uid:gid, mode 0700; one
// that exists is left as it is (an operator may have changed it), unless
// it is not a folder.
func makeVolume(dir string, uid, gid uint32) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("volume %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("volume %s exists and is not a folder", dir)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("volume %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("volume %s: %w", dir, err)
	}
	if err := os.Lchown(dir, int(uid), int(gid)); err != nil {
		return fmt.Errorf("volume %s: %w", dir, err)
	}
	return nil
}

// mountWritableRoot mounts a fresh tmpfs on RunDir and the overlay of
// the bundle's rootfs on RunDir/rootfs: the writes of the last run are
// gone.
func mountWritableRoot(c *Container) error {
	unmountWritableRoot(c)
	if err := os.MkdirAll(c.RunDir, 0o700); err != nil {
		return fmt.Errorf("writable root: %w", err)
	}
	if err := unix.Mount("tmpfs", c.RunDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return fmt.Errorf("writable root: mount tmpfs on %s: %w", c.RunDir, err)
	}
	upper, work, root := filepath.Join(c.RunDir, "upper"), filepath.Join(c.RunDir, "work"), filepath.Join(c.RunDir, "rootfs")
	for _, d := range []string{upper, work, root} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("writable root: %w", err)
		}
	}
	// The overlay's root folder takes the upper folder's owner and mode:
	// they must be the image's.
	lower := filepath.Join(c.Bundle, "rootfs")
	var st unix.Stat_t
	if err := unix.Stat(lower, &st); err != nil {
		return fmt.Errorf("writable root: %s: %w", lower, err)
	}
	if err := os.Lchown(upper, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("writable root: %w", err)
	}
	if err := os.Chmod(upper, os.FileMode(st.Mode&0o777)|unixModeBits(st.Mode)); err != nil {
		return fmt.Errorf("writable root: %w", err)
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return fmt.Errorf("writable root: mount overlay on %s: %w", root, err)
	}
	return nil
}

// unmountWritableRoot detaches the overlay and the tmpfs, if mounted.
func unmountWritableRoot(c *Container) {
	_ = unix.Unmount(filepath.Join(c.RunDir, "rootfs"), unix.MNT_DETACH)
	_ = unix.Unmount(c.RunDir, unix.MNT_DETACH)
}

// unixModeBits maps setuid, setgid and sticky of a stat mode to Go's.
func unixModeBits(m uint32) os.FileMode {
	var fm os.FileMode
	if m&unix.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}
