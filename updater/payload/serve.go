package payload

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
)

// Serve returns a handler that serves the channel folder dir read-only, as
// `slate serve` does. It is http.FileServer (so Range requests, and with them
// fetch.ResumingReader, work) with the edges filed off:
//   - only GET and HEAD;
//   - no directory listings and no index.html: a directory is a 404;
//   - names starting with "." are 404, which hides AddToChannel's
//     half-written ".incoming-*" folders and any dot files;
//   - the folder is opened as an os.Root, so neither ".." nor a symlink can
//     reach a file outside it;
//   - only files everyone may read (mode o+r) are sent, and never one
//     that holds a private key: a key or a secret left in the folder by
//     mistake stays a 404 (the check reads files up to MaxKeyringFile,
//     which covers every key file);
//   - the top-level manifest is sent with "Cache-Control: no-cache" (it
//     changes), version files as immutable (they never do).
//
// The folder is opened per request, so replacing it is picked up at once.
func Serve(dir string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := path.Clean("/" + r.URL.Path)
		for _, elem := range strings.Split(name, "/") {
			if strings.HasPrefix(elem, ".") {
				http.NotFound(w, r)
				return
			}
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			http.Error(w, "channel folder unavailable", http.StatusServiceUnavailable)
			return
		}
		defer root.Close()
		switch name {
		case "/" + ManifestFile:
			w.Header().Set("Cache-Control", "no-cache")
		default:
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		}
		http.FileServerFS(filesOnly{root.FS()}).ServeHTTP(w, r)
	})
}

// filesOnly hides directories from http.FileServerFS, which would otherwise
// list them.
type filesOnly struct{ fsys fs.FS }

func (f filesOnly) Open(name string) (fs.File, error) {
	file, err := f.fsys.Open(name)
	if err != nil {
		// Whatever the reason (missing, a symlink out of the folder, no
		// permission), the client learns only that there is no such file.
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		file.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.Join(fs.ErrNotExist, errors.New("not a regular file"))}
	}
	if st.Mode().Perm()&0o004 == 0 {
		// Not world-readable: its owner did not mean it for everyone.
		file.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.Join(fs.ErrNotExist, errors.New("not world-readable"))}
	}
	if st.Size() <= MaxKeyringFile {
		head, err := io.ReadAll(io.LimitReader(file, MaxKeyringFile+1))
		file.Close()
		if err != nil || ContainsPrivateKey(head) {
			return nil, &fs.PathError{Op: "open", Path: name, Err: errors.Join(fs.ErrNotExist, errors.New("holds a private key"))}
		}
		// Serve the bytes just checked, not whatever the file holds by
		// the time it is read again.
		return &memFile{Reader: bytes.NewReader(head), info: sizedInfo{st, int64(len(head))}}, nil
	}
	return file, nil
}

// memFile is a small file already read into memory.
type memFile struct {
	*bytes.Reader
	info fs.FileInfo
}

func (m *memFile) Stat() (fs.FileInfo, error) { return m.info, nil }
func (m *memFile) Close() error               { return nil }

// sizedInfo reports the size of the bytes read, should the file have
// changed since its Stat.
type sizedInfo struct {
	fs.FileInfo
	n int64
}

func (s sizedInfo) Size() int64 { return s.n }
