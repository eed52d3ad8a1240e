package configs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// MaxSpecSize bounds a spec file. Real specs are a few KiB; the bound keeps
// a wrong file (an image, a log) from being parsed as YAML at length.
const MaxSpecSize = 1 << 20

// MaxSpecTokens bounds the number of YAML tokens (keys, values,
// punctuation) in a spec. The YAML parser is quadratic in the size of one
// mapping: a 1 MiB env map of 70000 keys takes it half a minute. A large
// real spec has a few thousand tokens.
const MaxSpecTokens = 20000

// Defaults, applied by Parse and SetDefaults.
const (
	DefaultKernelPackage = "linux-image-amd64"
	DefaultDiskSize      = 3 * GiB
	DefaultESPSize       = 256 * MiB
	DefaultRootSize      = 1 * GiB
	DefaultRestart       = RestartOnFailure
)

// DefaultConsole is the console list when the spec gives none: the screen
// and the first serial port, where tests and CI read SLATE-READY.
var DefaultConsole = []string{"tty0", "ttyS0,115200"}

// Load reads a spec file, parses it and sets Dir to the file's folder, so
// that relative paths in the spec are taken from there.
func Load(path string) (*Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load spec: %w", err)
	}
	defer f.Close()
	// Read one byte past the limit so that Parse can tell "too large".
	data, err := io.ReadAll(io.LimitReader(f, MaxSpecSize+1))
	if err != nil {
		return nil, fmt.Errorf("load spec %s: %w", path, err)
	}
	s, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	s.Dir = dir
	return s, nil
}

// Parse reads a spec from YAML. name is the file name used in errors. It is
// strict: unknown fields, duplicate keys, several documents and an empty
// document are errors. It applies the defaults and runs Validate. Errors are
// an *Error or an ErrorList, with lines where the YAML has them.
func Parse(data []byte, name string) (*Spec, error) {
	docErr := func(line int, format string, args ...any) error {
		return &Error{File: name, Path: "$", Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	if len(data) > MaxSpecSize {
		return nil, docErr(0, "spec is larger than %d bytes", MaxSpecSize)
	}
	tokens := lexer.Tokenize(string(data))
	if len(tokens) > MaxSpecTokens {
		return nil, docErr(0, "spec has more than %d YAML tokens; a spec is meant to be short", MaxSpecTokens)
	}
	if err := flowDepth(tokens); err != nil {
		err.File = name
		return nil, err
	}
	// Duplicate keys are found by the index walk below, which knows the
	// path; the parser would only know the position.
	file, err := parser.Parse(tokens, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		return nil, yamlError(err, name, nil)
	}
	var body ast.Node
	for _, doc := range file.Docs {
		if isEmpty(doc.Body) {
			continue
		}
		if body != nil {
			return nil, docErr(line(doc.Body), "more than one YAML document; a spec is one document")
		}
		body = doc.Body
	}
	if body == nil {
		return nil, docErr(0, "empty spec")
	}

	idx := newIndex(body)
	if idx.bad != nil {
		idx.bad.File = name
		return nil, idx.bad
	}
	s := new(Spec)
	// The index has already refused keys written twice; what the decoder
	// would still call a duplicate is a key that overrides a merge (<<),
	// which YAML allows.
	dec := yaml.NewDecoder(strings.NewReader(""), yaml.Strict(), yaml.AllowDuplicateMapKey())
	if err := decode(dec, body, s); err != nil {
		first := yamlError(err, name, idx)
		// The decoder stops at its first problem: look for the others.
		c := &collector{}
		typeCheck(c, body, reflect.TypeFor[Spec](), "$", 0)
		if len(c.errs) == 0 {
			return nil, first
		}
		// The decoder's own error knows its line and column: it stands
		// for its path.
		var fe *Error
		if errors.As(first, &fe) {
			c.errs = slices.DeleteFunc(c.errs, func(e *Error) bool { return e.Path == fe.Path })
			c.errs = append(c.errs, fe)
		}
		return nil, idx.locate(c.err(), name)
	}
	// YAML reads "version: 1.10" as the number 1.1; keep what was written
	// so that the error (or the value) matches the file.
	for p, f := range map[string]*string{"$.name": &s.Name, "$.version": &s.Version, "$.hostname": &s.Hostname} {
		switch n := idx.nodes[p].(type) {
		case *ast.FloatNode, *ast.IntegerNode:
			*f = n.GetToken().Value
		}
	}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		return nil, idx.locate(err, name)
	}
	return s, nil
}

// flowDepth refuses flow collections nested deeper than maxFlowDepth.
func flowDepth(tokens token.Tokens) *Error {
	depth := 0
	for _, tk := range tokens {
		switch tk.Type {
		case token.SequenceStartType, token.MappingStartType:
			depth++
			if depth > maxFlowDepth {
				e := &Error{Path: "$", Msg: fmt.Sprintf("invalid YAML: [ and { nested more than %d deep", maxFlowDepth)}
				if tk.Position != nil {
					e.Line, e.Column = tk.Position.Line, tk.Position.Column
					e.Msg = fmt.Sprintf("invalid YAML at column %d: [ and { nested more than %d deep", e.Column, maxFlowDepth)
				}
				return e
			}
		case token.SequenceEndType, token.MappingEndType:
			if depth > 0 {
				depth--
			}
		}
	}
	return nil
}

// decode runs the YAML decoder, turning a crash of the decoder on odd
// input into an error: a bad spec must never take the builder down.
func decode(dec *yaml.Decoder, body ast.Node, s *Spec) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("YAML decoder failed on this input: %v", r)
		}
	}()
	return dec.DecodeFromNode(body, s)
}

func isEmpty(n ast.Node) bool {
	switch n := n.(type) {
	case nil, *ast.NullNode, *ast.CommentGroupNode:
		return true
	case *ast.DocumentNode:
		return isEmpty(n.Body)
	}
	return false
}

func line(n ast.Node) int {
	if n == nil {
		return 0
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

// SetDefaults fills the fields that are not set. Parse calls it; code that
// builds a Spec by hand calls it before Validate.
func (s *Spec) SetDefaults() {
	k := &s.Kernel
	if k.Package == "" && k.Vmlinuz == "" && k.ModulesDir == "" {
		k.Package = DefaultKernelPackage
	}
	if s.Disk.Size == 0 {
		s.Disk.Size = DefaultDiskSize
	}
	if s.Disk.ESP == 0 {
		s.Disk.ESP = DefaultESPSize
	}
	if s.Disk.Root == 0 {
		s.Disk.Root = DefaultRootSize
	}
	for i := range s.Services {
		if s.Services[i].Restart == "" {
			s.Services[i].Restart = DefaultRestart
		}
	}
	for i := range s.Containers {
		c := &s.Containers[i]
		if c.Restart == "" {
			c.Restart = DefaultContainerRestart
		}
		if c.Network == "" {
			c.Network = DefaultContainerNetwork
		}
		if c.ReadOnly == nil {
			t := true
			c.ReadOnly = &t
		}
	}
	if len(s.Containers) > 0 && s.Network.ContainerSubnet == "" {
		s.Network.ContainerSubnet = DefaultContainerSubnet
	}
	if len(s.Console) == 0 {
		s.Console = append([]string(nil), DefaultConsole...)
	}
	if s.Hostname == "" {
		s.Hostname = s.Name
	}
	s.setSSHDefaults()
	s.setPackageDefaults()
	if s.Update != nil {
		s.Update.setDefaults(s.Services)
		// the updater needs the network
		s.Network.DHCP = true
	}
}

// index maps the YAML tree to JSON paths: tokens to paths for decoder
// errors, and paths to lines for validation errors.
type pathIndex struct {
	keys  map[*token.Token]string // key token -> path of its value
	vals  map[*token.Token]string // value token -> path (shallowest wins)
	lines map[string]int
	nodes map[string]ast.Node // path -> value node
	bad   *Error              // the first duplicate key or bad tag

	anchors  map[string]int // anchor -> expanded size
	expanded int            // nodes added by aliases so far
}

// maxExpanded bounds what aliases may add to a spec. The decoder expands
// every alias again, so ten lines of anchors that each merge the previous
// one twice would keep it busy for minutes ("billion laughs").
const maxExpanded = 10000

// maxFlowDepth bounds [ and { nesting: the parser is quadratic in it, and a
// spec needs two or three levels.
const maxFlowDepth = 32

// maxIndexDepth stops the walk on absurdly nested input; the decoder
// rejects such input anyway.
const maxIndexDepth = 64

func newIndex(body ast.Node) *pathIndex {
	idx := &pathIndex{
		keys:  map[*token.Token]string{},
		vals:  map[*token.Token]string{},
		lines: map[string]int{},
		nodes: map[string]ast.Node{},

		anchors: map[string]int{},
	}
	idx.walk(body, "$", 0)
	return idx
}

// walk indexes n and returns its size in nodes with every alias expanded,
// which is what the decoder will go through.
func (x *pathIndex) walk(n ast.Node, path string, depth int) int {
	if n == nil || depth > maxIndexDepth {
		return 0
	}
	if _, ok := x.nodes[path]; !ok {
		x.nodes[path] = n
	}
	if tk := n.GetToken(); tk != nil {
		if _, ok := x.vals[tk]; !ok {
			x.vals[tk] = path
		}
		if _, ok := x.lines[path]; !ok && tk.Position != nil {
			x.lines[path] = tk.Position.Line
		}
	}
	size := 1
	switch n := n.(type) {
	case *ast.MappingNode:
		seen := map[string]int{}
		for _, mv := range n.Values {
			size += x.pair(mv, path, depth)
			x.checkDup(seen, mv, path)
		}
	case *ast.MappingValueNode:
		size += x.pair(n, path, depth)
	case *ast.SequenceNode:
		for i, v := range n.Values {
			size += x.walk(v, index(path, i), depth+1)
		}
	case *ast.AnchorNode:
		size += x.walk(n.Value, path, depth+1)
		if n.Name != nil {
			x.anchors[n.Name.GetToken().Value] = size
		}
	case *ast.AliasNode:
		if n.Value != nil {
			size += x.anchors[n.Value.GetToken().Value]
			x.expanded += size
			if x.expanded > maxExpanded {
				x.fail(n, path, fmt.Sprintf("aliases expand to more than %d values", maxExpanded))
			}
		}
	case *ast.TagNode:
		x.checkTag(n, path)
		size += x.walk(n.Value, path, depth+1)
	}
	return size
}

// standardTags are the YAML core tags; a spec has no use for others, and
// the decoder does not handle a tag without a value (it crashes on some).
var standardTags = map[string]bool{
	"!!str": true, "!!int": true, "!!float": true, "!!bool": true,
	"!!null": true, "!!seq": true, "!!map": true,
}

func (x *pathIndex) checkTag(n *ast.TagNode, path string) {
	tag := ""
	if n.Start != nil {
		tag = n.Start.Value
	}
	switch {
	case !standardTags[tag]:
		x.fail(n, path, fmt.Sprintf("tag %q is not allowed; a spec uses plain YAML values", tag))
	case isEmpty(n.Value):
		x.fail(n, path, fmt.Sprintf("tag %s without a value", tag))
	}
}

// fail records the first problem the walk finds.
func (x *pathIndex) fail(n ast.Node, path, msg string) {
	if x.bad != nil {
		return
	}
	x.bad = &Error{Path: path, Msg: msg}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		x.bad.Line, x.bad.Column = tk.Position.Line, tk.Position.Column
	}
}

func (x *pathIndex) pair(mv *ast.MappingValueNode, path string, depth int) int {
	if mv == nil || mv.Key == nil {
		return 0
	}
	if mv.Key.IsMergeKey() {
		return x.walk(mv.Value, path, depth+1)
	}
	p := key(path, keyText(mv.Key))
	if tk := mv.Key.GetToken(); tk != nil {
		x.keys[tk] = p
		if tk.Position != nil {
			// The key's line is where a reader looks for the field.
			x.lines[p] = tk.Position.Line
		}
	}
	return 1 + x.walk(mv.Value, p, depth+1)
}

// checkDup records the first key written twice in one mapping.
func (x *pathIndex) checkDup(seen map[string]int, mv *ast.MappingValueNode, path string) {
	if mv == nil || mv.Key == nil || mv.Key.IsMergeKey() || x.bad != nil {
		return
	}
	k := keyText(mv.Key)
	l := line(mv.Key)
	if first, ok := seen[k]; ok {
		x.fail(mv.Key, key(path, k), fmt.Sprintf("duplicate key (first at line %d)", first))
		return
	}
	seen[k] = l
}

func keyText(k ast.MapKeyNode) string {
	if mk, ok := k.(*ast.MappingKeyNode); ok && mk.Value != nil {
		return mk.Value.String()
	}
	if tk := k.GetToken(); tk != nil {
		return tk.Value
	}
	return k.String()
}

// line returns the line of path, or of its closest ancestor below the root
// when the field itself is not in the YAML (a missing or defaulted field).
func (x *pathIndex) line(path string) int {
	for p := path; p != "$" && p != ""; p = parent(p) {
		if l, ok := x.lines[p]; ok {
			return l
		}
	}
	return 0
}

// parent strips the last segment of a path built by key and index.
func parent(p string) string {
	if strings.HasSuffix(p, "]") {
		// Find the matching '[' (a quoted key may contain brackets).
		if i := strings.LastIndex(p, "[\""); i >= 0 && strings.HasSuffix(p, "\"]") {
			if _, err := strconv.Unquote(p[i+1 : len(p)-1]); err == nil {
				return p[:i]
			}
		}
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

// locate adds file and lines to the errors of Validate.
func (x *pathIndex) locate(err error, name string) error {
	fix := func(e *Error) {
		e.File = name
		if e.Line == 0 {
			e.Line = x.line(e.Path)
		}
	}
	var list ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fix(e)
		}
		return list
	}
	var e *Error
	if errors.As(err, &e) {
		fix(e)
		return e
	}
	return err
}

// yamlError turns a go-yaml error into an *Error with path and position.
func yamlError(err error, name string, idx *pathIndex) error {
	out := &Error{File: name, Path: "$", Msg: err.Error()}
	at := func(tk *token.Token, keyFirst bool) {
		if tk == nil {
			return
		}
		if tk.Position != nil {
			out.Line, out.Column = tk.Position.Line, tk.Position.Column
		}
		if idx == nil {
			return
		}
		first, second := idx.vals, idx.keys
		if keyFirst {
			first, second = idx.keys, idx.vals
		}
		if p, ok := first[tk]; ok {
			out.Path = p
		} else if p, ok := second[tk]; ok {
			out.Path = p
		}
	}
	var (
		ve  *valueError
		uf  *yaml.UnknownFieldError
		un  *yaml.UnexpectedNodeTypeError
		te  *yaml.TypeError
		dk  *yaml.DuplicateKeyError
		yer yaml.Error
	)
	switch {
	case errors.As(err, &ve):
		at(ve.node.GetToken(), false)
		out.Msg = ve.msg
	case errors.As(err, &uf):
		at(uf.Token, true)
		out.Msg = "unknown field"
		if p := parent(out.Path); p != "" {
			if names := fieldNames(p); len(names) > 0 {
				out.Msg += " (allowed here: " + strings.Join(names, ", ") + ")"
			}
		}
	case errors.As(err, &te):
		at(te.Token, false)
		out.Msg = fmt.Sprintf("expected %s, found %s", typeKind(te.DstType), typeKind(te.SrcType))
	case errors.As(err, &un):
		at(un.Token, false)
		out.Msg = fmt.Sprintf("expected a %s, found a %s", un.Expected.YAMLName(), un.Actual.YAMLName())
	case errors.As(err, &dk):
		at(dk.Token, true)
		out.Msg = "duplicate key"
	case errors.As(err, &yer):
		at(yer.GetToken(), false)
		out.Msg = yer.GetMessage()
	case errors.Is(err, yaml.ErrExceededMaxDepth):
		out.Msg = "YAML nested too deeply"
	}
	if idx == nil {
		// A syntax error: the column helps find a stray character.
		if out.Column > 0 {
			out.Msg = fmt.Sprintf("invalid YAML at column %d: %s", out.Column, out.Msg)
		} else {
			out.Msg = "invalid YAML: " + out.Msg
		}
	}
	return out
}

// typeKind names a Go type the way a YAML author thinks of it.
func typeKind(t reflect.Type) string {
	if t == nil {
		return "null"
	}
	switch t {
	case reflect.TypeFor[Size]():
		return "a size"
	case reflect.TypeFor[Mode]():
		return "a mode"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.Pointer:
		return typeKind(t.Elem())
	}
	return t.String()
}

// fieldNames lists the YAML keys allowed in the mapping at path, so an
// unknown-field error can say what was meant. It follows the Spec types.
func fieldNames(path string) []string {
	t := reflect.TypeFor[Spec]()
	rest := strings.TrimPrefix(path, "$")
	for rest != "" {
		switch {
		case rest[0] == '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil
			}
			if t.Kind() != reflect.Slice && t.Kind() != reflect.Map {
				return nil
			}
			t, rest = t.Elem(), rest[end+1:]
		case rest[0] == '.':
			rest = rest[1:]
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			name := rest[:end]
			rest = rest[end:]
			f, ok := yamlField(t, name)
			if !ok {
				return nil
			}
			t = f
		default:
			return nil
		}
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	return structKeys(t)
}

// structKeys lists a struct's YAML keys in field order, with those of
// inline fields (the Limits of services and containers) in their place.
func structKeys(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case isInline(opts) && f.Type.Kind() == reflect.Struct:
			names = append(names, structKeys(f.Type)...)
		case tag != "" && tag != "-":
			names = append(names, tag)
		}
	}
	return names
}

func isInline(opts string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == "inline" {
			return true
		}
	}
	return false
}

func yamlField(t reflect.Type, name string) (reflect.Type, bool) {
	if t.Kind() == reflect.Map {
		return t.Elem(), true
	}
	if t.Kind() != reflect.Struct {
		return nil, false
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if isInline(opts) && f.Type.Kind() == reflect.Struct {
			if ft, ok := yamlField(f.Type, name); ok {
				return ft, true
			}
			continue
		}
		if tag == name {
			return f.Type, true
		}
	}
	return nil, false
}
