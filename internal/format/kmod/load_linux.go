package kmod

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// loadModuleFile loads the module file at path into the running kernel. A
// plain .ko goes to finit_module(2) by descriptor, so the kernel reads it
// (and can check its signature against the file); a compressed one is
// inflated here and passed to init_module(2), which works whether or not the
// kernel can decompress modules itself. A module that is already loaded is
// not an error.
func loadModuleFile(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if strings.HasSuffix(path, ".ko") {
		err = unix.FinitModule(int(f.Fd()), params, 0)
		if !errors.Is(err, unix.ENOSYS) {
			return ignoreExist(err)
		}
		// Kernels without finit_module: fall through to init_module.
	}
	r, closeFn, err := decompressor(path, f)
	if err != nil {
		return err
	}
	defer closeFn()
	image, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return ignoreExist(unix.InitModule(image, params))
}

func ignoreExist(err error) error {
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// runningModulesDir is /lib/modules/<release of the running kernel>.
func runningModulesDir() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("kmod: uname: %w", err)
	}
	return filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:])), nil
}
