package ignition

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
)

// Apply carries out the plan under root ("/" on the machine, any folder in
// tests) in Ignition's order: groups, users, then directories, files and
// links (so that owners named in them resolve), then units, which are only
// stored under UnitDir: starting them is the supervisor's job.
//
// A nil Fetcher is a DefaultFetcher. Every error names the JSON path of the
// entry that failed. Each file is assembled and verified in a temporary
// file before it replaces anything, so a bad download or hash leaves the
// path as it was; entries applied before a failure stay applied.
func (p *Plan) Apply(ctx context.Context, root string, f Fetcher) error {
	if f == nil {
		f = &DefaultFetcher{}
	}
	if df, ok := f.(*DefaultFetcher); ok && p.Timeouts != (Timeouts{}) {
		c := *df // the config's ignition.timeouts, for this config only
		if p.Timeouts.ResponseHeaders > 0 {
			c.Timeouts.Header = p.Timeouts.ResponseHeaders
		}
		if p.Timeouts.Total > 0 {
			c.Total = p.Timeouts.Total
		}
		f = &c
	}
	t, closeTree, err := openTree(root)
	if err != nil {
		return fmt.Errorf("ignition: target root: %w", err)
	}
	defer closeTree()
	return p.apply(ctx, t, f)
}

func (p *Plan) apply(ctx context.Context, t tree, f Fetcher) error {
	var err error
	a := &applier{ctx: ctx, t: t, fetch: f}
	if err := a.accounts(p.Groups, p.Users); err != nil {
		return err
	}
	if len(p.Files)+len(p.Dirs)+len(p.Links) > 0 {
		if a.ids, err = loadIDs(t); err != nil {
			return fmt.Errorf("ignition: %w", err)
		}
	}
	// Shallow paths first, as Ignition does, so that a directory entry is
	// made (with its mode and owner) before files inside it; links last,
	// so that hard link targets written by the config exist.
	type node struct {
		depth, order int
		run          func() error
	}
	var nodes []node
	add := func(p string, kind int, run func() error) {
		nodes = append(nodes, node{depth: kind*1000 + strings.Count(path.Clean(p), "/"), order: len(nodes), run: run})
	}
	for _, d := range p.Dirs {
		add(d.Path, 0, func() error { return errPath(d.JSONPath, a.dir(d)) })
	}
	for _, fl := range p.Files {
		add(fl.Path, 0, func() error { return errPath(fl.JSONPath, a.file(fl)) })
	}
	for _, l := range p.Links {
		add(l.Path, 1, func() error { return errPath(l.JSONPath, a.link(l)) })
	}
	sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].depth < nodes[j].depth })
	for _, n := range nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := n.run(); err != nil {
			return fmt.Errorf("ignition: %w", err)
		}
	}
	for i, u := range p.Units {
		name := path.Join(UnitDir, u.Name)
		if path.Dir(name) != UnitDir {
			return fmt.Errorf("ignition: $.systemd.units[%d]: bad unit name %q", i, u.Name)
		}
		if err := writeAtomic(t, rel(name), []byte(u.Contents), 0o644, 0, 0); err != nil {
			return fmt.Errorf("ignition: $.systemd.units[%d]: storing %s: %w", i, name, err)
		}
	}
	return nil
}

type applier struct {
	ctx   context.Context
	t     tree
	fetch Fetcher
	ids   *idMaps
}

// owner resolves a user and group to numbers; unset is root.
func (a *applier) owner(u, g Owner) (int, int, error) {
	uid, err := a.ids.resolve(u, a.ids.users, "user")
	if err != nil {
		return 0, 0, err
	}
	gid, err := a.ids.resolve(g, a.ids.groups, "group")
	return uid, gid, err
}

// keepOwner is the owner of an existing node that a config keeps: the
// config's user and group where it names them, the node's own otherwise.
func keepOwner(st fs.FileInfo, u, g Owner, uid, gid int) (int, int) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return uid, gid
	}
	if u.ID == nil && u.Name == "" {
		uid = int(sys.Uid)
	}
	if g.ID == nil && g.Name == "" {
		gid = int(sys.Gid)
	}
	return uid, gid
}

func checkWritable(p string) (string, error) {
	c, err := writablePath(p)
	if err != nil {
		return "", err
	}
	if c == path.Clean(p) && isPrefixRoot(c) {
		return "", fmt.Errorf("path %s: refusing to replace a top folder of the writable layer", c)
	}
	return c, nil
}

func isPrefixRoot(p string) bool {
	for _, w := range WritablePrefixes {
		if p == w {
			return true
		}
	}
	return false
}

func (a *applier) file(f File) error {
	p, err := checkWritable(f.Path)
	if err != nil {
		return err
	}
	name := rel(p)
	uid, gid, err := a.owner(f.User, f.Group)
	if err != nil {
		return err
	}
	st, err := a.t.Lstat(name)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// Ignition's rules: without overwrite, an existing node is an error
	// unless it is a regular file and no source is given, in which case it
	// is kept (and appended to). overwrite needs a source (validation).
	keep := false
	if exists {
		regular := st.Mode().IsRegular()
		switch {
		case !f.Overwrite && !regular:
			return fmt.Errorf("a non-regular file exists at %s and overwrite is false", p)
		case !f.Overwrite && f.Contents != nil:
			return fmt.Errorf("a file exists at %s and overwrite is false", p)
		case f.Contents == nil && regular:
			keep = true
		}
	}
	mode := os.FileMode(0o644)
	if f.Mode != nil {
		mode = *f.Mode
	} else if keep {
		mode = st.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
	}
	if keep {
		// a kept (appended-to) file keeps its owner unless one is named
		uid, gid = keepOwner(st, f.User, f.Group, uid, gid)
	}
	if err := a.t.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	tmp, err := tempName(a.t, name)
	if err != nil {
		return err
	}
	out, err := a.t.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = a.fill(out, name, f, keep)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = a.t.Chown(tmp, uid, gid)
	}
	if err == nil {
		err = a.t.Chmod(tmp, mode)
	}
	if err == nil && exists && !keep && !st.Mode().IsRegular() {
		// overwrite of a directory or link: only now that the new file
		// is complete and verified
		err = a.t.RemoveAll(name)
	}
	if err == nil {
		err = a.t.Rename(tmp, name)
	}
	if err != nil {
		a.t.Remove(tmp)
	}
	return err
}

// fill writes the contents and fragments of f into out, verifying each.
func (a *applier) fill(out io.Writer, name string, f File, keep bool) error {
	if keep {
		in, err := a.t.Open(name)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, in)
		in.Close()
		if err != nil {
			return fmt.Errorf("copying existing %s: %w", name, err)
		}
	}
	if f.Contents != nil {
		if err := a.copyResource(out, *f.Contents); err != nil {
			return fmt.Errorf("contents: %w", err)
		}
	}
	for i, r := range f.Append {
		if err := a.copyResource(out, r); err != nil {
			return fmt.Errorf("append[%d]: %w", i, err)
		}
	}
	return nil
}

// copyResource writes the uncompressed bytes of r to w and checks their
// hash.
func (a *applier) copyResource(w io.Writer, r Resource) error {
	u, err := url.Parse(r.Source)
	if err != nil {
		return err
	}
	var body io.ReadCloser
	if u.Scheme == "data" {
		b, err := decodeDataURL(r.Source)
		if err != nil {
			return err
		}
		body = io.NopCloser(bytes.NewReader(b))
	} else if body, err = a.fetch.Fetch(a.ctx, u, r.Headers); err != nil {
		return err
	}
	defer body.Close()
	var in io.Reader = body
	switch r.Compression {
	case "":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		in = zr
	default:
		return fmt.Errorf("compression %q is not supported", r.Compression)
	}
	var h hash.Hash
	var want []byte
	if r.Hash != "" {
		fn, sum, err := parseHash(r.Hash)
		if err != nil {
			return err
		}
		want = sum
		if fn == "sha512" {
			h = sha512.New()
		} else {
			h = sha256.New()
		}
		w = io.MultiWriter(w, h)
	}
	if _, err := io.Copy(w, in); err != nil {
		return fmt.Errorf("reading %s: %w", u.Redacted(), err)
	}
	if h != nil && !bytes.Equal(h.Sum(nil), want) {
		fn, _, _ := strings.Cut(r.Hash, "-")
		return fmt.Errorf("hash mismatch: got %s-%x, want %s", fn, h.Sum(nil), r.Hash)
	}
	return nil
}

func (a *applier) dir(d Dir) error {
	p, err := writablePath(d.Path)
	if err != nil {
		return err
	}
	if d.Overwrite && isPrefixRoot(p) {
		return fmt.Errorf("refusing to overwrite %s", p)
	}
	name := rel(p)
	uid, gid, err := a.owner(d.User, d.Group)
	if err != nil {
		return err
	}
	mode := os.FileMode(0o755)
	if d.Mode != nil {
		mode = *d.Mode
	}
	st, err := a.t.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	case d.Overwrite:
		if err := a.t.RemoveAll(name); err != nil {
			return err
		}
	case !st.IsDir():
		return fmt.Errorf("a non-directory exists at %s and overwrite is false", p)
	default: // an existing directory only gets its owner and mode
		if d.Mode == nil {
			mode = st.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
		}
		uid, gid = keepOwner(st, d.User, d.Group, uid, gid)
		return a.setPerms(name, uid, gid, mode)
	}
	if err := a.t.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	if err := a.t.Mkdir(name, 0o700); err != nil {
		return err
	}
	return a.setPerms(name, uid, gid, mode)
}

func (a *applier) setPerms(name string, uid, gid int, mode os.FileMode) error {
	if err := a.t.Chown(name, uid, gid); err != nil {
		return err
	}
	return a.t.Chmod(name, mode)
}

func (a *applier) link(l Link) error {
	p, err := checkWritable(l.Path)
	if err != nil {
		return err
	}
	name := rel(p)
	var target string
	var tst fs.FileInfo
	if l.Hard {
		tp, err := writablePath(l.Target)
		if err != nil {
			return fmt.Errorf("hard link target: %w", err)
		}
		target = rel(tp)
		if tst, err = a.t.Lstat(target); err != nil {
			return fmt.Errorf("hard link target: %w", err)
		}
		if tst.IsDir() {
			return fmt.Errorf("hard link target %s is a directory", tp)
		}
	}
	uid, gid, err := a.owner(l.User, l.Group)
	if err != nil {
		return err
	}
	st, err := a.t.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	case l.Overwrite:
		if err := a.t.RemoveAll(name); err != nil {
			return err
		}
	default:
		// Without overwrite a matching link is kept (symbolic links get
		// their owner set); anything else is an error.
		if l.Hard && os.SameFile(st, tst) {
			return nil
		}
		if !l.Hard && st.Mode()&os.ModeSymlink != 0 {
			if cur, err := a.t.Readlink(name); err == nil && cur == l.Target {
				return a.t.Lchown(name, uid, gid)
			}
		}
		return fmt.Errorf("something else exists at %s and overwrite is false", p)
	}
	if err := a.t.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	if l.Hard {
		return a.t.Link(target, name)
	}
	if err := a.t.Symlink(l.Target, name); err != nil {
		return err
	}
	return a.t.Lchown(name, uid, gid)
}
