package payload

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
)

// Serve returns a handler that serves the channel folder dir read-only, as
// `slate serve` does. It is http.FileServer (so Range requests, and with them
// ResumingReader, work) with the edges filed off:
//   - only GET and HEAD;
//   - no directory listings and no index.html: a directory is a 404;
//   - names starting with "." are 404, which hides AddToChannel's
//     half-written ".incoming-*" folders and any dot files;
//   - the folder is opened as an os.Root, so neither ".." nor a symlink can
//     reach a file outside it;
//   - the top-level manifest and signature are sent with "Cache-Control:
//     no-cache" (they change), version files as immutable (they never do).
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
		case "/" + ManifestFile, "/" + SignatureFile:
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
	return file, nil
}
