package isoimage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// memImage lets go-diskfs' GPT writer, which wants a file, write into the
// two in-memory pieces of the image that hold partition tables: head (the
// start of the image) and tail (from tailOff to size). The ESP bytes in
// between are never touched by it.
type memImage struct {
	size    int64
	head    []byte
	tail    []byte
	tailOff int64
}

var errNotReadable = errors.New("isoimage: the GPT staging area is write-only")

func (m *memImage) WriteAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	switch {
	case off >= 0 && end <= int64(len(m.head)):
		return copy(m.head[off:], p), nil
	case off >= m.tailOff && end <= m.size:
		return copy(m.tail[off-m.tailOff:], p), nil
	}
	return 0, fmt.Errorf("isoimage: GPT write of %d bytes at %d outside the system area and the image's tail", len(p), off)
}

func (m *memImage) ReadAt([]byte, int64) (int, error) { return 0, errNotReadable }
func (m *memImage) Read([]byte) (int, error)          { return 0, errNotReadable }
func (m *memImage) Close() error                      { return nil }

func (m *memImage) Seek(offset int64, whence int) (int64, error) {
	if whence == io.SeekEnd && offset == 0 {
		return m.size, nil
	}
	return 0, errNotReadable
}

func (m *memImage) Stat() (fs.FileInfo, error) { return memInfo{m.size}, nil }

type memInfo struct{ size int64 }

func (i memInfo) Name() string       { return "image" }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() fs.FileMode  { return 0o644 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }
