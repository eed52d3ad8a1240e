package payload

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/slateos/slate/internal/cmdline"
	"github.com/slateos/slate/internal/version"
)

// FormatVersion is the manifest (and envelope) format this package reads and
// writes. Format 2 put the signatures inside the same file as the manifest
// (see Envelope) and added published and expires; format 1 had a detached
// manifest.json.sig, which a reader could see paired with another
// manifest while a publisher replaced the two files one after the other.
const FormatVersion = 2

// MaxFileSize bounds every size in a manifest. A root partition larger than this
// is not a slate image; the bound also keeps a lying manifest from asking the
// updater to accept an endless stream.
const MaxFileSize int64 = 64 << 30

// Roles of the three files of a version. A slot is its root partition plus its
// kernel and initramfs on the ESP; they always travel together.
const (
	RoleRoot   = "root"
	RoleKernel = "kernel"
	RoleInitrd = "initrd"
)

// Compression methods of a stored file.
const (
	CompressionZstd = "zstd"
	CompressionNone = "none"
)

// roles lists the roles in the order AddToChannel writes them.
var roles = []string{RoleRoot, RoleKernel, RoleInitrd}

// Manifest describes one version of a channel. Its exact bytes are what the
// signature covers, so the updater parses only bytes it has verified.
type Manifest struct {
	Format        int    // always FormatVersion
	Name          string // image name, [a-z0-9][a-z0-9-]*
	Version       string // semver MAJOR.MINOR.PATCH[-pre]
	KernelVersion string // uname -r of the kernel in this version
	// KernelArgs is the version's kernel command line without root= and
	// slate.slot=, which the updater adds for the slot it writes. Empty:
	// keep the running entry's.
	KernelArgs []string
	Created    time.Time // build time, UTC
	// Published is when this manifest was signed (wall clock, not the
	// build's reproducible epoch). A channel's top manifest always has
	// one, and it only grows: a machine remembers the newest it saw and
	// refuses an older one (a replay). Zero in a version folder's own
	// manifest.
	Published time.Time
	// Expires is when the top manifest stops being trusted: a publisher
	// re-signs it (slate channel refresh) before then, so a frozen
	// channel (a mirror that keeps serving an old manifest) is noticed.
	// Zero in a version folder's manifest, which describes immutable
	// files and is applied only by hand (slate update apply).
	Expires time.Time
	// Rollout, in a top manifest only, gives the version to the fleet in
	// waves, or holds it (paused); nil: every machine at once.
	Rollout *Rollout
	Files   []File // exactly one file per role
}

// File is one stored file of a version.
type File struct {
	Role             string // RoleRoot, RoleKernel or RoleInitrd
	Path             string // relative to the channel folder, e.g. "1.1.0/root.img.zst"
	Size             int64  // bytes after decompression
	CompressedSize   int64  // bytes as stored and served
	SHA256           string // lowercase hex of the decompressed bytes
	CompressedSHA256 string // lowercase hex of the bytes as stored
	Compression      string // CompressionZstd or CompressionNone
}

// File returns the file with the given role, or false if there is none.
func (m *Manifest) File(role string) (File, bool) {
	for _, f := range m.Files {
		if f.Role == role {
			return f, true
		}
	}
	return File{}, false
}

// jsonManifest and jsonFile fix the field order and spelling of the encoding.
type jsonManifest struct {
	Format        int          `json:"format"`
	Name          string       `json:"name"`
	Version       string       `json:"version"`
	KernelVersion string       `json:"kernel_version"`
	KernelArgs    []string     `json:"kernel_args,omitempty"`
	Created       string       `json:"created"`
	Published     string       `json:"published,omitempty"`
	Expires       string       `json:"expires,omitempty"`
	Rollout       *jsonRollout `json:"rollout,omitempty"`
	Files         []jsonFile   `json:"files"`
}

type jsonFile struct {
	Role             string `json:"role"`
	Path             string `json:"path"`
	Size             int64  `json:"size"`
	CompressedSize   int64  `json:"compressed_size"`
	SHA256           string `json:"sha256"`
	CompressedSHA256 string `json:"compressed_sha256"`
	Compression      string `json:"compression"`
}

// Marshal encodes m as indented JSON with a fixed field order and a final
// newline. The same manifest always gives the same bytes, which matters because
// the signature covers bytes, not meaning.
func (m *Manifest) Marshal() []byte {
	jm := jsonManifest{
		Format:        m.Format,
		Name:          m.Name,
		Version:       m.Version,
		KernelVersion: m.KernelVersion,
		KernelArgs:    m.KernelArgs,
		Created:       m.Created.UTC().Format(time.RFC3339Nano),
		Published:     formatOptionalTime(m.Published),
		Expires:       formatOptionalTime(m.Expires),
		Rollout:       m.Rollout.toJSON(),
		Files:         make([]jsonFile, 0, len(m.Files)),
	}
	for _, f := range m.Files {
		jm.Files = append(jm.Files, jsonFile(f))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	// Only strings and integers: encoding cannot fail.
	_ = enc.Encode(jm)
	return buf.Bytes()
}

// FieldError is a manifest error at a JSON path such as "$.files[1].sha256".
type FieldError struct {
	Path string
	Err  error
}

func (e *FieldError) Error() string { return "manifest: error at " + e.Path + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// ErrNewerFormat is wrapped by ParseManifest when the manifest was written for a
// newer slate: the machine must be updated by other means before it can follow.
var ErrNewerFormat = errors.New("manifest format is newer than this slate understands")

type newerFormatError struct{ format int64 }

func (e newerFormatError) Error() string {
	return fmt.Sprintf("manifest format %d is newer than this slate understands (it reads format %d)", e.format, FormatVersion)
}
func (e newerFormatError) Is(target error) bool { return target == ErrNewerFormat }

func fieldErr(p string, format string, args ...any) error {
	return &FieldError{Path: p, Err: fmt.Errorf(format, args...)}
}

// ParseManifest decodes and validates a manifest. It is strict: unknown or
// repeated fields, wrong types, null values and trailing data are errors, and
// every error names the JSON path of the offending value. Call it only on bytes
// whose signature has been checked (see Verify and OpenManifest).
func ParseManifest(data []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	obj, err := readObject(dec, "$")
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fieldErr("$", "unexpected data after the manifest object")
	}

	m := &Manifest{}

	// format first: a newer format may have other fields, and "too new" is the
	// useful message then, not "unknown field".
	format, err := intField(obj, "$", "format")
	if err != nil {
		return nil, err
	}
	if format > FormatVersion {
		return nil, &FieldError{Path: "$.format", Err: newerFormatError{format}}
	}
	if format != FormatVersion {
		return nil, fieldErr("$.format", "format must be %d, got %d (format 1 channels are republished with this slate)", FormatVersion, format)
	}
	m.Format = int(format)
	known := []string{"format", "name", "version", "kernel_version", "kernel_args", "created", "published", "expires", "rollout", "files"}
	if err := checkKeys(obj, "$", known); err != nil {
		return nil, err
	}

	if m.Name, err = stringField(obj, "$", "name"); err != nil {
		return nil, err
	}
	if err := validateName(m.Name); err != nil {
		return nil, &FieldError{Path: "$.name", Err: err}
	}
	if m.Version, err = stringField(obj, "$", "version"); err != nil {
		return nil, err
	}
	if err := ValidateVersion(m.Version); err != nil {
		return nil, &FieldError{Path: "$.version", Err: err}
	}
	if m.KernelVersion, err = stringField(obj, "$", "kernel_version"); err != nil {
		return nil, err
	}
	if err := validateKernelVersion(m.KernelVersion); err != nil {
		return nil, &FieldError{Path: "$.kernel_version", Err: err}
	}
	if m.KernelArgs, err = kernelArgsField(obj); err != nil {
		return nil, err
	}
	created, err := stringField(obj, "$", "created")
	if err != nil {
		return nil, err
	}
	if m.Created, err = parseCreated(created); err != nil {
		return nil, &FieldError{Path: "$.created", Err: err}
	}
	if m.Published, err = optionalTimeField(obj, "published"); err != nil {
		return nil, err
	}
	if m.Expires, err = optionalTimeField(obj, "expires"); err != nil {
		return nil, err
	}
	if !m.Expires.IsZero() && !m.Expires.After(m.Published) {
		return nil, fieldErr("$.expires", "must be after published (%s)", formatOptionalTime(m.Published))
	}
	if m.Rollout, err = rolloutField(obj); err != nil {
		return nil, err
	}
	if r := m.Rollout; r != nil {
		// Only a top manifest, which is signed with a publish time,
		// has waves; they count from a time that is not in its future.
		if m.Published.IsZero() {
			return nil, fieldErr("$.rollout", "only a channel's top manifest (with published) has a rollout")
		}
		if r.Start.After(m.Published) {
			return nil, fieldErr("$.rollout.start", "must not be after published (%s)", formatOptionalTime(m.Published))
		}
		if r.Paused && r.PausedAt.After(m.Published) {
			return nil, fieldErr("$.rollout.paused_at", "must not be after published (%s)", formatOptionalTime(m.Published))
		}
	}

	rawFiles, err := required(obj, "$", "files")
	if err != nil {
		return nil, err
	}
	fdec := json.NewDecoder(bytes.NewReader(rawFiles))
	fdec.UseNumber()
	if tok, err := fdec.Token(); err != nil || tok != json.Delim('[') {
		return nil, fieldErr("$.files", "must be an array")
	}
	seenRole := map[string]int{}
	seenPath := map[string]int{}
	for i := 0; fdec.More(); i++ {
		p := fmt.Sprintf("$.files[%d]", i)
		if i >= len(roles) {
			return nil, fieldErr(p, "too many files: a version has exactly %d (%s)", len(roles), strings.Join(roles, ", "))
		}
		fobj, err := readObject(fdec, p)
		if err != nil {
			return nil, err
		}
		f, err := parseFile(fobj, p)
		if err != nil {
			return nil, err
		}
		if j, dup := seenRole[f.Role]; dup {
			return nil, fieldErr(p+".role", "duplicate role %q (also $.files[%d])", f.Role, j)
		}
		seenRole[f.Role] = i
		if j, dup := seenPath[f.Path]; dup {
			return nil, fieldErr(p+".path", "duplicate path %q (also $.files[%d])", f.Path, j)
		}
		seenPath[f.Path] = i
		m.Files = append(m.Files, f)
	}
	if _, err := fdec.Token(); err != nil {
		return nil, fieldErr("$.files", "malformed array: %v", err)
	}
	for _, r := range roles {
		if _, ok := seenRole[r]; !ok {
			return nil, fieldErr("$.files", "missing the %q file", r)
		}
	}
	return m, nil
}

func parseFile(obj map[string]json.RawMessage, p string) (File, error) {
	var f File
	known := []string{"role", "path", "size", "compressed_size", "sha256", "compressed_sha256", "compression"}
	if err := checkKeys(obj, p, known); err != nil {
		return f, err
	}
	var err error
	if f.Role, err = stringField(obj, p, "role"); err != nil {
		return f, err
	}
	switch f.Role {
	case RoleRoot, RoleKernel, RoleInitrd:
	default:
		return f, fieldErr(p+".role", "unknown role %q (want one of %s)", f.Role, strings.Join(roles, ", "))
	}
	if f.Path, err = stringField(obj, p, "path"); err != nil {
		return f, err
	}
	if err := validatePath(f.Path); err != nil {
		return f, &FieldError{Path: p + ".path", Err: err}
	}
	if f.Size, err = sizeField(obj, p, "size"); err != nil {
		return f, err
	}
	if f.CompressedSize, err = sizeField(obj, p, "compressed_size"); err != nil {
		return f, err
	}
	if f.SHA256, err = hashField(obj, p, "sha256"); err != nil {
		return f, err
	}
	if f.CompressedSHA256, err = hashField(obj, p, "compressed_sha256"); err != nil {
		return f, err
	}
	if f.Compression, err = stringField(obj, p, "compression"); err != nil {
		return f, err
	}
	switch f.Compression {
	case CompressionZstd:
	case CompressionNone:
		// Stored as is: the two views of the file are the same bytes, and a
		// manifest that says otherwise cannot be satisfied by any file.
		if f.CompressedSize != f.Size {
			return f, fieldErr(p+".compressed_size", "must equal size (%d) when compression is %q", f.Size, CompressionNone)
		}
		if f.CompressedSHA256 != f.SHA256 {
			return f, fieldErr(p+".compressed_sha256", "must equal sha256 when compression is %q", CompressionNone)
		}
	default:
		return f, fieldErr(p+".compression", "unknown compression %q (want %q or %q)", f.Compression, CompressionZstd, CompressionNone)
	}
	return f, nil
}

// readObject reads one JSON object as raw members, rejecting repeated keys:
// encoding/json would silently keep the last one, and two readers of the same
// signed bytes must never disagree about what they say.
func readObject(dec *json.Decoder, p string) (map[string]json.RawMessage, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fieldErr(p, "malformed JSON: %v", err)
	}
	if tok != json.Delim('{') {
		return nil, fieldErr(p, "must be an object")
	}
	obj := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fieldErr(p, "malformed JSON: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fieldErr(p, "malformed JSON: object key is not a string")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fieldErr(memberPath(p, key), "malformed JSON: %v", err)
		}
		if _, dup := obj[key]; dup {
			return nil, fieldErr(memberPath(p, key), "field appears more than once")
		}
		obj[key] = raw
	}
	if _, err := dec.Token(); err != nil {
		return nil, fieldErr(p, "malformed JSON: %v", err)
	}
	return obj, nil
}

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func memberPath(p, key string) string {
	if plainKey.MatchString(key) {
		return p + "." + key
	}
	return p + "[" + strconv.Quote(key) + "]"
}

func checkKeys(obj map[string]json.RawMessage, p string, known []string) error {
	var unknown []string
	for k := range obj {
		if !contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	// Report the smallest key so the message does not depend on map order.
	first := unknown[0]
	for _, k := range unknown[1:] {
		if k < first {
			first = k
		}
	}
	return fieldErr(memberPath(p, first), "unknown field")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func required(obj map[string]json.RawMessage, p, key string) (json.RawMessage, error) {
	raw, ok := obj[key]
	raw = bytes.TrimSpace(raw)
	if !ok {
		return nil, fieldErr(memberPath(p, key), "required field is missing")
	}
	if bytes.Equal(raw, []byte("null")) {
		return nil, fieldErr(memberPath(p, key), "must not be null")
	}
	return raw, nil
}

func stringField(obj map[string]json.RawMessage, p, key string) (string, error) {
	raw, err := required(obj, p, key)
	if err != nil {
		return "", err
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fieldErr(memberPath(p, key), "must be a string")
	}
	return s, nil
}

func intField(obj map[string]json.RawMessage, p, key string) (int64, error) {
	raw, err := required(obj, p, key)
	if err != nil {
		return 0, err
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil || len(raw) == 0 || raw[0] == '"' {
		return 0, fieldErr(memberPath(p, key), "must be a number")
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		return 0, fieldErr(memberPath(p, key), "must be a whole number, got %s", n)
	}
	return v, nil
}

func sizeField(obj map[string]json.RawMessage, p, key string) (int64, error) {
	v, err := intField(obj, p, key)
	if err != nil {
		return 0, err
	}
	if v <= 0 || v > MaxFileSize {
		return 0, fieldErr(memberPath(p, key), "must be between 1 and %d (64 GiB), got %d", MaxFileSize, v)
	}
	return v, nil
}

func hashField(obj map[string]json.RawMessage, p, key string) (string, error) {
	s, err := stringField(obj, p, key)
	if err != nil {
		return "", err
	}
	if err := validateHash(s); err != nil {
		return "", &FieldError{Path: memberPath(p, key), Err: err}
	}
	return s, nil
}

func validateHash(s string) error {
	if len(s) != 64 {
		return fmt.Errorf("must be 64 lowercase hex digits, got %d characters", len(s))
	}
	if _, err := hex.DecodeString(s); err != nil || strings.ToLower(s) != s {
		return errors.New("must be 64 lowercase hex digits")
	}
	return nil
}

var (
	nameRE          = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	kernelVersionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~-]*$`)
	pathRE          = regexp.MustCompile(`^[A-Za-z0-9._+~-]+(/[A-Za-z0-9._+~-]+)*$`)
)

func validateName(s string) error {
	if len(s) > 64 || !nameRE.MatchString(s) {
		return fmt.Errorf("name %q must match [a-z0-9][a-z0-9-]* and be at most 64 characters", s)
	}
	return nil
}

func validateKernelVersion(s string) error {
	if len(s) > 128 || !kernelVersionRE.MatchString(s) {
		return fmt.Errorf("kernel version %q must be a uname -r string ([A-Za-z0-9._+~-], at most 128 characters)", s)
	}
	return nil
}

func validatePath(p string) error {
	switch {
	case p == "":
		return errors.New("path is empty")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q must be relative to the channel folder", p)
	case len(p) > 255:
		return fmt.Errorf("path is longer than 255 characters")
	}
	for _, elem := range strings.Split(p, "/") {
		if elem == ".." {
			//lint:ignore ST1005 ".." is the path element, not punctuation
			return fmt.Errorf("path %q must not contain ..", p)
		}
	}
	if path.Clean(p) != p || p == "." {
		return fmt.Errorf("path %q is not clean (want %q)", p, path.Clean(p))
	}
	if !pathRE.MatchString(p) {
		return fmt.Errorf("path %q may only contain A-Z a-z 0-9 . _ + ~ - and /", p)
	}
	return nil
}

func parseCreated(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("created %q is not an RFC 3339 time like 2026-11-25T10:00:00Z", s)
	}
	t = t.UTC()
	// The range keeps the UTC form printable as RFC 3339 (four-digit years).
	if t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, fmt.Errorf("created %q is out of range", s)
	}
	return t, nil
}

// ValidateVersion reports whether s is a version slate accepts, by the one
// rule of package version (the spec's version: follows the same).
func ValidateVersion(s string) error {
	if err := version.Check(s); err != nil {
		return fmt.Errorf("version %w", err)
	}
	return nil
}

// CompareVersions compares two versions by semver precedence (version.Compare):
// -1, 0 or +1, a version that does not pass ValidateVersion sorting first.
func CompareVersions(a, b string) int { return version.Compare(a, b) }

// MaxKernelArgs bounds the kernel command line a manifest may carry.
const MaxKernelArgs = 128

// kernelArgsField reads the optional kernel_args: strings without
// whitespace or control characters, never one slate sets itself (cmdline.ReservedKey).
func kernelArgsField(obj map[string]json.RawMessage) ([]string, error) {
	raw, ok := obj["kernel_args"]
	if !ok {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, fieldErr("$.kernel_args", "must be an array of strings")
	}
	var args []string
	total := 0
	for i := 0; dec.More(); i++ {
		p := fmt.Sprintf("$.kernel_args[%d]", i)
		if i >= MaxKernelArgs {
			return nil, fieldErr("$.kernel_args", "more than %d arguments", MaxKernelArgs)
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, fieldErr(p, "malformed: %v", err)
		}
		a, ok := tok.(string)
		if !ok {
			return nil, fieldErr(p, "must be a string")
		}
		if a == "" || strings.IndexFunc(a, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
			return nil, fieldErr(p, "%q: empty, or has whitespace or control characters", a)
		}
		if k, ok := cmdline.ReservedKey(a); ok {
			return nil, fieldErr(p, "%q: %s= is set by slate itself (reserved: %s)", a, k, cmdline.ReservedList())
		}
		total += len(a) + 1
		if total > 4096 {
			return nil, fieldErr("$.kernel_args", "longer than 4096 bytes")
		}
		args = append(args, a)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fieldErr("$.kernel_args", "malformed array: %v", err)
	}
	return args, nil
}

func formatOptionalTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// optionalTimeField reads an RFC 3339 time that may be absent (zero).
func optionalTimeField(obj map[string]json.RawMessage, key string) (time.Time, error) {
	if _, ok := obj[key]; !ok {
		return time.Time{}, nil
	}
	s, err := stringField(obj, "$", key)
	if err != nil {
		return time.Time{}, err
	}
	t, err := parseCreated(s)
	if err != nil {
		return time.Time{}, fieldErr("$."+key, "%q is not an RFC 3339 time in 1970..9999, like 2026-11-25T10:00:00Z", s)
	}
	return t, nil
}
