package supervisor

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// A status file that cannot be written is said once in the log, whether
// its folder cannot be made or the file itself cannot be written.
func TestStatusFileWriteFailureIsLogged(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A folder where the file should be: renaming the new file over it
	// fails even for root.
	isDir := filepath.Join(dir, "status.json")
	if err := os.Mkdir(isDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path string }{
		{"folder cannot be made", filepath.Join(notDir, "run", "status.json")},
		{"file cannot be written", isDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hook := logtest.NewLocal(logrus.StandardLogger())
			defer logrus.StandardLogger().ReplaceHooks(make(logrus.LevelHooks))
			s := newSupervisor(Config{StatusFile: tc.path})
			s.setReady()
			s.setReady()
			var warned int
			for _, e := range hook.AllEntries() {
				if e.Level == logrus.WarnLevel && e.Message == "supervisor: cannot write the status file" {
					warned++
				}
			}
			if warned != 1 {
				t.Fatalf("%d warnings about the status file %s, want 1", warned, tc.path)
			}
		})
	}
}
