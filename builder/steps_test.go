package builder

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/updater/payload"
)

// TestSteps: a build has the fixed steps, one more per extra format family
// and one for the channel, so a progress bar sized by Steps ends full.
func TestSteps(t *testing.T) {
	fixed := []string{"inputs", "kernel modules", "disk image", "initramfs", "root filesystem", "ESP"}
	tail := []string{"checksums"}
	end := []string{"output folder"}
	cat := func(parts ...[]string) []string { return slices.Concat(parts...) }
	tests := []struct {
		name string
		o    Options
		want []string
	}{
		{"default raw", Options{}, cat(fixed, tail, end)},
		{"raw", Options{Formats: []string{"raw"}}, cat(fixed, tail, end)},
		{"qcow2", Options{Formats: []string{"qcow2"}}, cat(fixed, []string{"qcow2"}, tail, end)},
		{"pxe", Options{Formats: []string{"pxe"}}, cat(fixed, []string{"RAM boot files"}, tail, end)},
		{"pxe and iso share a step", Options{Formats: []string{"pxe,iso"}}, cat(fixed, []string{"RAM boot files"}, tail, end)},
		{"everything published", Options{Formats: []string{"raw", "qcow2", "pxe", "iso"}, Channel: "ch", SignKeys: []string{"k"}},
			cat(fixed, []string{"RAM boot files", "qcow2"}, tail, []string{"channel"}, end)},
		{"raw published", Options{Channel: "ch", SignKeys: []string{"k"}}, cat(fixed, tail, []string{"channel"}, end)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			o.Spec = ramSpec(t)
			got, err := Steps(o)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Steps = %q\nwant    %q", got, tt.want)
			}
		})
	}
}

// TestOptionErrorsNameTheField: the library's errors name the Options
// field at fault, never a command-line flag.
func TestOptionErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name, field string
		o           Options
	}{
		{"no spec", "Spec", Options{}},
		{"unknown format", "Formats", Options{Formats: []string{"zip"}}},
		{"empty format", "Formats", Options{Formats: []string{" , "}}},
		{"root URL without pxe", "RootURL", Options{RootURL: "http://srv/r"}},
		{"bad root URL", "RootURL", Options{Formats: []string{"pxe"}, RootURL: "ftp://srv/r"}},
		{"embedded root without pxe", "EmbedRoot", Options{EmbedRoot: true}},
		{"keys without a channel", "SignKeys", Options{SignKeys: []string{"k"}}},
		{"channel without keys", "Channel", Options{Channel: "ch"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			if tt.field != "Spec" {
				o.Spec = ramSpec(t)
			}
			_, err := Steps(o)
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Field != tt.field {
				t.Fatalf("Steps = %v; want an OptionError for %s", err, tt.field)
			}
			if !strings.HasPrefix(err.Error(), "Options."+tt.field+": ") || strings.Contains(err.Error(), "--") {
				t.Errorf("error %q: want it to start with Options.%s and name no flag", err, tt.field)
			}
		})
	}
}

// recorder is a Progress that keeps what it was told.
type recorder struct {
	plan, steps []string
	done        int
}

func (r *recorder) Plan(s []string) { r.plan = append([]string(nil), s...) }
func (r *recorder) Step(n string)   { r.steps = append(r.steps, n) }
func (r *recorder) Done()           { r.done++ }

// TestBuildProgressCountsItsSteps: a real build (raw and pxe, published)
// plans exactly the steps it then runs, as Steps names them.
func TestBuildProgressCountsItsSteps(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images")
	}
	cache := ramCache(t)
	slate := staticSlate(t)
	spec, err := configs.Load(filepath.Join("..", "configs", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	if err := payload.GenerateKey(keys); err != nil {
		t.Fatal(err)
	}
	var rec recorder
	o := Options{Spec: spec, OutDir: filepath.Join(t.TempDir(), "out"), Formats: []string{"raw,pxe"}, CacheDir: cache, Slate: slate,
		Channel: filepath.Join(t.TempDir(), "channel"), SignKeys: []string{filepath.Join(keys, payload.PrivateKeyFile)}, Progress: &rec}
	want, err := Steps(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rec.plan, want) || !slices.Equal(rec.steps, want) || rec.done != 1 {
		t.Errorf("planned %q, ran %q, Done %d times; want %q once", rec.plan, rec.steps, rec.done, want)
	}
	if len(want) != 10 {
		t.Errorf("a published raw+pxe build has %d steps, want 10: %q", len(want), want)
	}
}
