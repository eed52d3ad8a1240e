package layering

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// load reads the module's real import graph with go list.
func load(t *testing.T) []Package {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", Module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var pkgs []Package
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath    string
			Imports, Deps []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		rel, ok := Rel(p.ImportPath)
		if !ok {
			continue
		}
		pk := Package{Path: rel}
		for _, i := range p.Imports {
			if r, ok := Rel(i); ok {
				pk.Imports = append(pk.Imports, r)
			}
		}
		for _, d := range p.Deps {
			if r, ok := Rel(d); ok {
				pk.Deps = append(pk.Deps, r)
			}
		}
		pkgs = append(pkgs, pk)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages of the module", len(pkgs))
	}
	return pkgs
}

// The module as it is keeps the rules.
func TestModuleKeepsTheLayering(t *testing.T) {
	for _, b := range Check(load(t)) {
		t.Error(b)
	}
}

// The checker itself catches each kind of break (the test of the test).
func TestCheckCatchesBreaks(t *testing.T) {
	tests := []struct {
		name string
		pkgs []Package
		want string
	}{
		{"fine", []Package{{Path: "configs", Imports: []string{"internal/cmdline"}}}, ""},
		{"forbidden import", []Package{{Path: "internal/run/supervisor", Imports: []string{"builder"}, Deps: []string{"builder"}}},
			"internal/run/supervisor imports builder: not allowed"},
		{"build code on the machine through a dependency", []Package{{Path: "internal/run/pid1", Imports: []string{"internal/imageinfo"}, Deps: []string{"internal/imageinfo", "builder"}}},
			"internal/run/pid1 depends on builder: build code must not run on a machine"},
		{"a leaf grows an import", []Package{{Path: "internal/bootlog", Imports: []string{"configs"}}},
			"internal/bootlog imports configs: not allowed (may import: internal/redact)"},
		{"provisioning imports the updater", []Package{{Path: "internal/run/provision", Imports: []string{"updater"}, Deps: []string{"updater"}}},
			"internal/run/provision imports updater: not allowed"},
		{"the GPT code reaches into boot entries", []Package{{Path: "partitions", Imports: []string{"internal/bootentry"}}},
			"partitions imports internal/bootentry: not allowed (may import: nothing of the module)"},
		{"the boot disk finder links the builder", []Package{{Path: "internal/bootdisk", Imports: []string{"partitions"}, Deps: []string{"partitions", "builder"}}},
			"internal/bootdisk depends on builder: build code must not run on a machine"},
		{"a package not in the table", []Package{{Path: "newthing"}}, "newthing: not in the layering table"},
		{"the front end may import anything", []Package{{Path: "cmd/slate", Imports: []string{"builder", "internal/qemu", "internal/run/pid1"}}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(Check(tt.pkgs), "\n")
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("Check = %q, want %q", got, tt.want)
			}
		})
	}
}
