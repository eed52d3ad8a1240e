//go:build !linux

package kmod

import "errors"

var errNotLinux = errors.New("kmod: loading modules needs Linux")

func loadModuleFile(path, params string) error { return errNotLinux }

func runningModulesDir() (string, error) { return "", errNotLinux }
