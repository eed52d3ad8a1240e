package payload

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	hashA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	hashB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	hashC = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// baseManifest is a valid manifest as generic JSON, for tests to break.
func baseManifest() map[string]any {
	return map[string]any{
		"format": 2, "name": "slate-demo", "version": "1.1.0", "kernel_version": "6.1.0-56-amd64",
		"created": "2026-11-25T10:00:00Z",
		"files": []any{
			map[string]any{"role": "root", "path": "1.1.0/root.img.zst", "size": 1073741824, "compressed_size": 1234567,
				"sha256": hashA, "compressed_sha256": hashB, "compression": "zstd"},
			map[string]any{"role": "kernel", "path": "1.1.0/vmlinuz", "size": 8000000, "compressed_size": 8000000,
				"sha256": hashC, "compressed_sha256": hashC, "compression": "none"},
			map[string]any{"role": "initrd", "path": "1.1.0/initrd.img", "size": 5000000, "compressed_size": 5000000,
				"sha256": hashB, "compressed_sha256": hashB, "compression": "none"},
		},
	}
}

func file(m map[string]any, i int) map[string]any { return m["files"].([]any)[i].(map[string]any) }

func TestParseManifestValid(t *testing.T) {
	data, _ := json.Marshal(baseManifest())
	m, err := ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	want := &Manifest{
		Format: 2, Name: "slate-demo", Version: "1.1.0", KernelVersion: "6.1.0-56-amd64",
		Created: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
		Files: []File{
			{Role: "root", Path: "1.1.0/root.img.zst", Size: 1 << 30, CompressedSize: 1234567, SHA256: hashA, CompressedSHA256: hashB, Compression: "zstd"},
			{Role: "kernel", Path: "1.1.0/vmlinuz", Size: 8000000, CompressedSize: 8000000, SHA256: hashC, CompressedSHA256: hashC, Compression: "none"},
			{Role: "initrd", Path: "1.1.0/initrd.img", Size: 5000000, CompressedSize: 5000000, SHA256: hashB, CompressedSHA256: hashB, Compression: "none"},
		},
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %+v\nwant %+v", m, want)
	}
	out := m.Marshal()
	m2, err := ParseManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, m2) || string(m2.Marshal()) != string(out) {
		t.Error("Marshal/ParseManifest round trip is not stable")
	}
	// The encoding is fixed: field order, indentation, final newline.
	if !strings.HasPrefix(string(out), "{\n  \"format\": 2,\n  \"name\": \"slate-demo\",\n  \"version\": \"1.1.0\",\n  \"kernel_version\"") ||
		!strings.HasSuffix(string(out), "}\n") || !strings.Contains(string(out), "\n    {\n      \"role\": \"root\",\n      \"path\": ") {
		t.Errorf("unexpected encoding:\n%s", out)
	}
	if f, ok := m.File(RoleKernel); !ok || f.Path != "1.1.0/vmlinuz" {
		t.Errorf("File(kernel) = %+v, %v", f, ok)
	}
	if _, ok := m.File("bootloader"); ok {
		t.Error("File(bootloader) found something")
	}

	// A non-UTC creation time is accepted and normalised.
	b := baseManifest()
	b["created"] = "2026-11-25T12:00:00.5+02:00"
	data, _ = json.Marshal(b)
	m, err = ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	if m.Created.Location() != time.UTC || !m.Created.Equal(time.Date(2026, 11, 25, 10, 0, 0, 5e8, time.UTC)) {
		t.Errorf("created = %v", m.Created)
	}
}

func TestParseManifestErrors(t *testing.T) {
	set := func(key string, v any) func(map[string]any) {
		return func(m map[string]any) { m[key] = v }
	}
	del := func(key string) func(map[string]any) {
		return func(m map[string]any) { delete(m, key) }
	}
	setFile := func(i int, key string, v any) func(map[string]any) {
		return func(m map[string]any) { file(m, i)[key] = v }
	}
	tests := []struct {
		name   string
		mutate func(map[string]any)
		raw    string // used instead of mutate when set
		want   string
	}{
		{name: "unknown field", mutate: set("extra", true), want: "error at $.extra: unknown field"},
		{name: "kernel_args root=", mutate: set("kernel_args", []string{"quiet", "root=/dev/sda2"}), want: `error at $.kernel_args[1]: "root=/dev/sda2": root= is set by slate itself`},
		{name: "kernel_args init=", mutate: set("kernel_args", []string{"init=/bin/sh"}), want: `error at $.kernel_args[0]: "init=/bin/sh": init= is set by slate itself`},
		{name: "kernel_args slate.slot=", mutate: set("kernel_args", []string{"slate.slot=b"}), want: `error at $.kernel_args[0]: "slate.slot=b": slate.slot= is set by slate itself`},
		{name: "kernel_args bare init", mutate: set("kernel_args", []string{"init"}), want: `error at $.kernel_args[0]: "init": init= is set by slate itself`},
		{name: "kernel_args space", mutate: set("kernel_args", []string{"a b"}), want: `error at $.kernel_args[0]: "a b": empty, or has whitespace`},
		{name: "published not a time", mutate: set("published", "yesterday"), want: `error at $.published: "yesterday" is not an RFC 3339 time`},
		{name: "expires before published", mutate: func(m map[string]any) { m["published"] = "2026-12-02T00:00:00Z"; m["expires"] = "2026-12-01T00:00:00Z" }, want: "error at $.expires: must be after published"},
		{name: "expires a number", mutate: set("expires", 5), want: "error at $.expires: must be a string"},
		{name: "kernel_args init=", mutate: set("kernel_args", []any{"ro", "init=/bin/sh"}), want: "error at $.kernel_args[1]: \"init=/bin/sh\": init= is set by slate itself"},
		{name: "kernel_args bare root", mutate: set("kernel_args", []any{"root"}), want: "error at $.kernel_args[0]: \"root\": root= is set by slate itself"},
		{name: "unknown odd field", mutate: set("a b", 1), want: `error at $["a b"]: unknown field`},
		{name: "unknown file field", mutate: setFile(1, "mode", "0644"), want: "error at $.files[1].mode: unknown field"},
		{name: "format 3", mutate: set("format", 3), want: "error at $.format: manifest format 3 is newer than this slate understands"},
		{name: "format 3 with new fields", mutate: func(m map[string]any) { m["format"] = 3; m["delta"] = "x" }, want: "manifest format 3 is newer"},
		{name: "format 1", mutate: set("format", 1), want: "error at $.format: format must be 2, got 1"},
		{name: "format 0", mutate: set("format", 0), want: "error at $.format: format must be 2, got 0"},
		{name: "format string", mutate: set("format", "2"), want: "error at $.format: must be a number"},
		{name: "format fraction", mutate: set("format", 2.5), want: "error at $.format: must be a whole number"},
		{name: "format missing", mutate: del("format"), want: "error at $.format: required field is missing"},
		{name: "name null", mutate: set("name", nil), want: "error at $.name: must not be null"},
		{name: "name uppercase", mutate: set("name", "Slate"), want: "error at $.name: name \"Slate\" must match"},
		{name: "name leading dash", mutate: set("name", "-slate"), want: "error at $.name"},
		{name: "name number", mutate: set("name", 5), want: "error at $.name: must be a string"},
		{name: "version two parts", mutate: set("version", "1.1"), want: "error at $.version: version \"1.1\" is not a semantic version"},
		{name: "version v prefix", mutate: set("version", "v1.1.0"), want: "error at $.version"},
		{name: "version leading zero", mutate: set("version", "01.1.0"), want: "error at $.version"},
		{name: "version build metadata", mutate: set("version", "1.1.0+abc"), want: "error at $.version: version \"1.1.0+abc\" must not carry +build metadata"},
		{name: "version slash", mutate: set("version", "1.1.0-a/b"), want: "error at $.version"},
		{name: "kernel version empty", mutate: set("kernel_version", ""), want: "error at $.kernel_version"},
		{name: "kernel version space", mutate: set("kernel_version", "6.1 x"), want: "error at $.kernel_version"},
		{name: "created not a time", mutate: set("created", "yesterday"), want: "error at $.created: created \"yesterday\" is not an RFC 3339 time"},
		{name: "created out of range", mutate: set("created", "0000-01-01T00:00:00+01:00"), want: "error at $.created: created \"0000-01-01T00:00:00+01:00\" is out of range"},
		{name: "files missing", mutate: del("files"), want: "error at $.files: required field is missing"},
		{name: "files object", mutate: set("files", map[string]any{}), want: "error at $.files: must be an array"},
		{name: "files empty", mutate: set("files", []any{}), want: "error at $.files: missing the \"root\" file"},
		{name: "file not object", mutate: func(m map[string]any) { m["files"].([]any)[0] = "root" }, want: "error at $.files[0]: must be an object"},
		{name: "duplicate role", mutate: setFile(2, "role", "kernel"), want: "error at $.files[2].role: duplicate role \"kernel\" (also $.files[1])"},
		{name: "missing role", mutate: func(m map[string]any) { m["files"] = m["files"].([]any)[:2] }, want: "error at $.files: missing the \"initrd\" file"},
		{name: "four files", mutate: func(m map[string]any) { m["files"] = append(m["files"].([]any), file(m, 0)) }, want: "error at $.files[3]: too many files"},
		{name: "unknown role", mutate: setFile(0, "role", "efi"), want: "error at $.files[0].role: unknown role \"efi\""},
		{name: "path dotdot", mutate: setFile(0, "path", "../x"), want: "error at $.files[0].path: path \"../x\" must not contain .."},
		{name: "path inner dotdot", mutate: setFile(0, "path", "a/../../x"), want: "must not contain .."},
		{name: "path absolute", mutate: setFile(1, "path", "/etc/passwd"), want: "error at $.files[1].path: path \"/etc/passwd\" must be relative"},
		{name: "path unclean", mutate: setFile(1, "path", "1.1.0//vmlinuz"), want: "error at $.files[1].path: path \"1.1.0//vmlinuz\" is not clean"},
		{name: "path dot", mutate: setFile(1, "path", "./vmlinuz"), want: "is not clean"},
		{name: "path trailing slash", mutate: setFile(1, "path", "1.1.0/"), want: "is not clean"},
		{name: "path empty", mutate: setFile(1, "path", ""), want: "error at $.files[1].path: path is empty"},
		{name: "path backslash", mutate: setFile(1, "path", `1.1.0\vmlinuz`), want: "may only contain"},
		{name: "path space", mutate: setFile(1, "path", "a b"), want: "may only contain"},
		{name: "duplicate path", mutate: setFile(2, "path", "1.1.0/vmlinuz"), want: "error at $.files[2].path: duplicate path"},
		{name: "size zero", mutate: setFile(0, "size", 0), want: "error at $.files[0].size: must be between 1 and"},
		{name: "size negative", mutate: setFile(0, "size", -5), want: "error at $.files[0].size"},
		{name: "size over 64 GiB", mutate: setFile(0, "size", int64(64<<30)+1), want: "error at $.files[0].size: must be between 1 and 68719476736 (64 GiB), got 68719476737"},
		{name: "size huge", mutate: setFile(0, "size", 1e30), want: "error at $.files[0].size: must be a whole number"},
		{name: "compressed size zero", mutate: setFile(0, "compressed_size", 0), want: "error at $.files[0].compressed_size"},
		{name: "sha256 uppercase", mutate: setFile(1, "sha256", strings.ToUpper(hashC)), want: "error at $.files[1].sha256: must be 64 lowercase hex digits"},
		{name: "sha256 short", mutate: setFile(1, "sha256", "abc"), want: "error at $.files[1].sha256: must be 64 lowercase hex digits, got 3 characters"},
		{name: "sha256 not hex", mutate: setFile(1, "sha256", strings.Repeat("g", 64)), want: "error at $.files[1].sha256"},
		{name: "compressed sha256 missing", mutate: func(m map[string]any) { delete(file(m, 0), "compressed_sha256") }, want: "error at $.files[0].compressed_sha256: required field is missing"},
		{name: "compression gzip", mutate: setFile(0, "compression", "gzip"), want: "error at $.files[0].compression: unknown compression \"gzip\""},
		{name: "none with other size", mutate: setFile(1, "compressed_size", 7), want: "error at $.files[1].compressed_size: must equal size (8000000) when compression is \"none\""},
		{name: "none with other hash", mutate: setFile(1, "compressed_sha256", hashA), want: "error at $.files[1].compressed_sha256: must equal sha256"},
		{name: "duplicate key", raw: `{"format":2,"format":2}`, want: "error at $.format: field appears more than once"},
		{name: "duplicate file key", mutate: nil, raw: dupFileKey(), want: "error at $.files[0].role: field appears more than once"},
		{name: "trailing data", raw: `{}{}`, want: "error at $: unexpected data after the manifest object"},
		{name: "array", raw: `[]`, want: "error at $: must be an object"},
		{name: "empty", raw: ``, want: "error at $: malformed JSON"},
		{name: "truncated", raw: `{"format": 2, "name": "x"`, want: "malformed JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.raw)
			if tc.raw == "" && tc.mutate != nil {
				m := baseManifest()
				tc.mutate(m)
				data, _ = json.Marshal(m)
			}
			m, err := ParseManifest(data)
			if err == nil {
				t.Fatalf("accepted: %+v", m)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\ndoes not contain %q", err, tc.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.Path, "$") {
				t.Errorf("error %v carries no JSON path", err)
			}
		})
	}

	m := baseManifest()
	m["format"] = 7
	data, _ := json.Marshal(m)
	if _, err := ParseManifest(data); !errors.Is(err, ErrNewerFormat) {
		t.Errorf("format 7: %v does not wrap ErrNewerFormat", err)
	}
}

func TestCompareVersions(t *testing.T) {
	// Ascending order from the semver 2.0.0 specification, section 11.
	ordered := []string{
		"0.9.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
		"1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.0", "1.10.0", "2.0.0",
	}
	for i, a := range ordered {
		for j, b := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := CompareVersions(a, b); got != want {
				t.Errorf("CompareVersions(%q, %q) = %d, want %d", a, b, got, want)
			}
		}
	}
	invalid := []struct {
		a, b string
		want int
	}{
		{"garbage", "0.0.1", -1},
		{"1.0.0", "1.0", 1},
		{"1.0.0+build", "0.1.0", -1},
		{"b", "a", 1},
		{"a", "a", 0},
	}
	for _, tc := range invalid {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func dupFileKey() string {
	data, _ := json.Marshal(baseManifest())
	return strings.Replace(string(data), `"role":"root"`, `"role":"root","role":"root"`, 1)
}
