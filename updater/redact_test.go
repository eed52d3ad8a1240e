package updater

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
)

// The updater's errors keep their chain while their text is redacted.
func TestRedactErr(t *testing.T) {
	base := errors.New("x")
	if err := redactErr(errors.Join(base, errors.New("https://u:p@h/"))); !errors.Is(err, base) || strings.Contains(err.Error(), "u:p") {
		t.Errorf("redactErr: %v", err)
	}
}

// C: a channel URL with credentials never reaches the status, the state
// file, a returned error or a console line.
func TestCredentialsNeverShown(t *testing.T) {
	srv := silent(t)
	secretURL := strings.Replace(srv, "http://", "http://alice:hunter2@", 1) + "?token=tok3n"
	d := testDaemon(t, secretURL, nil)
	d.Config.Timeouts.Header = configs.Duration(200_000_000) // 200ms
	err := d.Check(context.Background())
	if err == nil {
		t.Fatal("check of a dead server succeeded")
	}
	st := d.Status()
	b, _ := os.ReadFile(d.StateFile)
	for what, s := range map[string]string{"error": err.Error(), "status channel": st.Channel, "status error": st.LastError, "state file": string(b)} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "alice") || strings.Contains(s, "tok3n") {
			t.Errorf("%s shows a secret: %s", what, s)
		}
	}
	if !strings.Contains(st.Channel, "***@127.0.0.1") {
		t.Errorf("channel %q: want the host kept and the user replaced", st.Channel)
	}
}
