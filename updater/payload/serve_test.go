package payload

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServe(t *testing.T) {
	base := t.TempDir()
	ch := filepath.Join(base, "channel")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(ch, "1.0.0"), 0o755))
	must(os.MkdirAll(filepath.Join(ch, ".incoming-2.0.0-123"), 0o755))
	must(os.WriteFile(filepath.Join(ch, ManifestFile), []byte("{}"), 0o644))
	must(os.WriteFile(filepath.Join(ch, "1.0.0", "vmlinuz"), []byte("0123456789"), 0o644))
	must(os.WriteFile(filepath.Join(ch, "1.0.0", "index.html"), []byte("<html>"), 0o644))
	must(os.WriteFile(filepath.Join(ch, ".incoming-2.0.0-123", "vmlinuz"), []byte("half"), 0o644))
	must(os.WriteFile(filepath.Join(base, "secret"), []byte("secret"), 0o600))
	must(os.Symlink(filepath.Join(base, "secret"), filepath.Join(ch, "escape")))
	must(os.Symlink("../secret", filepath.Join(ch, "1.0.0", "rel-escape")))
	must(os.WriteFile(filepath.Join(ch, "update.key"), []byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"), 0o644))
	must(os.WriteFile(filepath.Join(ch, "1.0.0", "id_ed25519"), []byte("x\n-----BEGIN OPENSSH PRIVATE KEY-----\n"), 0o644))
	must(os.WriteFile(filepath.Join(ch, "1.0.0", "root-only"), []byte("only root reads this"), 0o640))

	h := Serve(ch)
	tests := []struct {
		name, method, path, rng string
		status                  int
		body, cache             string
	}{
		{name: "file", path: "/1.0.0/vmlinuz", status: 200, body: "0123456789", cache: "immutable"},
		{name: "range", path: "/1.0.0/vmlinuz", rng: "bytes=4-", status: 206, body: "456789"},
		{name: "head", method: "HEAD", path: "/1.0.0/vmlinuz", status: 200},
		{name: "top manifest not cached", path: "/manifest.json", status: 200, body: "{}", cache: "no-cache"},
		{name: "root listing", path: "/", status: 404},
		{name: "version listing", path: "/1.0.0/", status: 404},
		{name: "version folder", path: "/1.0.0", status: 404},
		{name: "index.html served only by name", path: "/1.0.0/index.html", status: 301},
		{name: "incoming folder", path: "/.incoming-2.0.0-123/vmlinuz", status: 404},
		{name: "dotdot", path: "/../secret", status: 404},
		{name: "dotdot inside", path: "/1.0.0/../../secret", status: 404},
		{name: "absolute symlink", path: "/escape", status: 404},
		{name: "relative symlink", path: "/1.0.0/rel-escape", status: 404},
		{name: "missing", path: "/2.0.0/vmlinuz", status: 404},
		{name: "private key", path: "/update.key", status: 404},
		{name: "private key of another kind", path: "/1.0.0/id_ed25519", status: 404},
		{name: "not world-readable", path: "/1.0.0/root-only", status: 404},
		{name: "post", method: "POST", path: "/1.0.0/vmlinuz", status: 405},
		{name: "put", method: "PUT", path: "/manifest.json", status: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = "GET"
			}
			req := httptest.NewRequest(method, "http://slate"+tc.path, nil)
			// NewRequest keeps "..": the handler must cope with raw paths.
			req.URL.Path = tc.path
			if tc.rng != "" {
				req.Header.Set("Range", tc.rng)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d (body %q)", rec.Code, tc.status, body)
			}
			if strings.Contains(string(body), "secret") || strings.Contains(string(body), "half") {
				t.Errorf("leaked content: %q", body)
			}
			if tc.body != "" && string(body) != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
			if tc.cache != "" && !strings.Contains(rec.Header().Get("Cache-Control"), tc.cache) {
				t.Errorf("Cache-Control %q, want %q", rec.Header().Get("Cache-Control"), tc.cache)
			}
			if rec.Code == 404 && strings.Contains(rec.Header().Get("Cache-Control"), "immutable") {
				t.Error("a 404 is marked immutable")
			}
		})
	}

	// A missing channel folder is a clear 503, not a crash.
	rec := httptest.NewRecorder()
	Serve(filepath.Join(base, "nope")).ServeHTTP(rec, httptest.NewRequest("GET", "/manifest.json", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("missing folder: status %d", rec.Code)
	}
}
