package updater

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
)

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		{"https://updates.example.com/stable/", "https://updates.example.com/stable/"},
		{"https://user:pass@updates.example.com/stable/", "https://***@updates.example.com/stable/"},
		{"https://token@host/x", "https://***@host/x"},
		{"https://host/x/manifest.json?token=s3cr3t&v=2", "https://host/x/manifest.json?token=***&v=***"},
		{"http://u:p@10.0.2.2:8080/c/?sig=abc", "http://***@10.0.2.2:8080/c/?sig=***"},
		{"http://host/#frag", "http://host/#***"},
		{`fetch: Get "https://u:p@h/m.json?t=1": dial tcp: refused`, `fetch: Get "https://***@h/m.json?t=***": dial tcp: refused`},
		{"GET https://a:b@h/1/root.img.zst: 404 Not Found; again https://c:d@h2/", "GET https://***@h/1/root.img.zst: 404 Not Found; again https://***@h2/"},
		{"no url here: 10.0.0.1:80", "no url here: 10.0.0.1:80"},
		{"update source /var/lib/x: not found", "update source /var/lib/x: not found"},
		{"http://%zz:pw@host/x", "http://***@host/x"},
	}
	for _, c := range cases {
		if got := Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
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

func FuzzRedact(f *testing.F) {
	for _, s := range []string{"https://u:p@h/x?t=1", `Get "http://a@b/c": x`, "x://@?", "http://[::1]:80/?a=b&c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// a secret put in a URL's user information or query never
		// survives, whatever surrounds it
		for _, msg := range []string{
			"fetch " + "https://alice:S3CRETPW@" + s,
			"fetch https://host/p?token=S3CRETPW&" + s,
		} {
			if out := Redact(msg); strings.Contains(out, "S3CRETPW") {
				t.Fatalf("Redact(%q) = %q", msg, out)
			}
		}
	})
}
