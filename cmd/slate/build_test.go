package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/slateos/slate/builder"
	"github.com/slateos/slate/configs"
)

// TestBuildErrorsNameFlags: the builder's errors name Options fields; the
// command names its flags instead, and keeps the error chain.
func TestBuildErrorsNameFlags(t *testing.T) {
	spec, err := configs.Parse([]byte("name: x\nversion: 1.0.0\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		o    builder.Options
		want string
	}{
		{"root URL without pxe", builder.Options{RootURL: "http://srv/r"}, "--root-url: is for --format pxe without --embed-root"},
		{"embedded root without pxe", builder.Options{EmbedRoot: true}, "--embed-root: is for --format pxe"},
		{"unknown format", builder.Options{Formats: []string{"zip"}}, `--format: unknown format "zip"`},
		{"keys without a channel", builder.Options{SignKeys: []string{"k"}}, "--sign: is for --channel"},
		{"channel without keys", builder.Options{Channel: "ch"}, "--channel: needs --sign, a private key"},
		{"rollout without a channel", builder.Options{Rollout: "100%:0h"}, "--rollout: is for --channel"},
		{"bad rollout", builder.Options{Channel: "ch", SignKeys: []string{"k"}, Rollout: "50%:0h"}, `--rollout: bad waves: rollout "50%:0h": wave 1: the last wave's share must be 100%`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Spec = spec
			_, err := builder.Steps(tt.o)
			if err == nil {
				t.Fatal("Steps accepted the options")
			}
			got := flagError(err)
			if !strings.HasPrefix(got.Error(), tt.want) || strings.Contains(got.Error(), "Options.") {
				t.Errorf("flagError = %q, want it to start with %q", got, tt.want)
			}
			var oe *builder.OptionError
			if !errors.As(got, &oe) {
				t.Errorf("flagError lost the OptionError: %v", got)
			}
		})
	}
	other := errors.New("$.disk.size: too small")
	if got := flagError(other); got != other { //nolint:errorlint // the very same error must come back, not one that wraps it
		t.Errorf("flagError changed an error that names no option: %v", got)
	}
}

// TestBarProgressCountsTheBuildsSteps: the bar is as long as the steps the
// build planned, and full after the last of them.
func TestBarProgressCountsTheBuildsSteps(t *testing.T) {
	spec, err := configs.Parse([]byte("name: x\nversion: 1.0.0\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, formats := range [][]string{{"raw"}, {"raw,qcow2,pxe"}} {
		steps, err := builder.Steps(builder.Options{Spec: spec, Formats: formats})
		if err != nil {
			t.Fatal(err)
		}
		var w bytes.Buffer
		p := &barProgress{w: &w}
		p.Plan(steps)
		for i, s := range steps {
			if st := p.bar.State(); st.CurrentNum != int64(i) || st.Max != int64(len(steps)) {
				t.Fatalf("%v: before step %d the bar is at %d of %d", formats, i+1, st.CurrentNum, st.Max)
			}
			p.Step(s)
		}
		if st := p.bar.State(); st.CurrentNum != st.Max {
			t.Errorf("%v: after every step the bar is at %d of %d", formats, st.CurrentNum, st.Max)
		}
		p.Done()
	}
}
