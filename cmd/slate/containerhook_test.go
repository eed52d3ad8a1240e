package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestContainerHookCommand(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"container-hook", "network", "web"}, "", "want NAME ADDRESS GATEWAY, got 1 arguments"},
		{[]string{"container-hook", "network", "web", "10.88.0.2/16", "10.88.0.1"}, "", "container web: OCI state on stdin: empty"},
		{[]string{"container-hook", "network", "--log-level", "debug", "x"}, "", "container name \"--log-level\" does not start"},
	} {
		root := newRoot()
		var out, errOut bytes.Buffer
		root.SetArgs(tc.args)
		root.SetIn(strings.NewReader(tc.stdin))
		root.SetOut(&out)
		root.SetErr(&errOut)
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("slate %s: %v (stderr %q), want an error with %q on stderr", strings.Join(tc.args, " "), err, errOut.String(), tc.want)
		}
	}
	// Hidden from people.
	root := newRoot()
	var out bytes.Buffer
	root.SetArgs([]string{"--help"})
	root.SetOut(&out)
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "container-hook") {
		t.Error("container-hook is listed in slate --help")
	}
}
