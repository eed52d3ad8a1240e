package machineid

import (
	"os"
	"path/filepath"
	"testing"
)

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"0123456789abcdef0123456789abcdef", true},
		{"0123456789ABCDEF0123456789abcdef", false},
		{"0123456789abcdef0123456789abcde", false},
		{"0123456789abcdef0123456789abcdeg", false},
		{"00000000000000000000000000000000", false},
		{"", false},
	} {
		if got := Valid(tc.id); got != tc.ok {
			t.Errorf("Valid(%q) = %v, want %v", tc.id, got, tc.ok)
		}
	}
}

func TestEnsure(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "machine-id")
	id, created, replaced, err := Ensure(p)
	if err != nil || !created || replaced || !Valid(id) {
		t.Fatalf("first boot: %q created=%v replaced=%v err=%v", id, created, replaced, err)
	}
	again, created, _, err := Ensure(p)
	if err != nil || created || again != id {
		t.Fatalf("second boot changed the id: %q -> %q (created=%v, %v)", id, again, created, err)
	}
	// a config's id wins
	cfg := "fedcba9876543210fedcba9876543210"
	if err := os.WriteFile(p, []byte(cfg+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, created, _, err := Ensure(p); err != nil || created || got != cfg {
		t.Fatalf("config id: got %q created=%v err=%v", got, created, err)
	}
	// an invalid one is replaced
	if err := os.WriteFile(p, []byte("not-an-id\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, created, replaced, err := Ensure(p)
	if err != nil || !created || !replaced || !Valid(got) {
		t.Fatalf("invalid id: got %q created=%v replaced=%v err=%v", got, created, replaced, err)
	}
	if rb, _ := Read(p); rb != got {
		t.Fatalf("file holds %q, Ensure returned %q", rb, got)
	}
	a, _ := New()
	b, _ := New()
	if a == b {
		t.Fatal("two new ids are equal")
	}
}
