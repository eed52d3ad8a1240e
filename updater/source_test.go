package updater

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/slateos/slate/internal/fetch"
)

// TestSourceManifestBounded: a channel that serves a manifest past 1 MiB
// is refused before its bytes are parsed, with an error that says so and
// names the channel without its token.
func TestSourceManifestBounded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		wantErr bool
	}{
		{"at the bound", maxManifest, false},
		{"past the bound", maxManifest + 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write(bytes.Repeat([]byte("{"), tc.size))
			}))
			defer srv.Close()
			src, err := NewSource(srv.URL+"/ch?token=s3cret", nil)
			if err != nil {
				t.Fatal(err)
			}
			data, _, err := src.Manifest(context.Background())
			if !tc.wantErr {
				if err != nil || len(data) != tc.size {
					t.Fatalf("%d bytes, err %v", len(data), err)
				}
				return
			}
			if !errors.Is(err, fetch.ErrTooLarge) || !strings.Contains(err.Error(), "larger than 1048576 bytes") || strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}
