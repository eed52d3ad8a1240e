package configs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// parseErrs parses yaml and returns the paths of every error, and the
// whole message.
func parseErrs(t *testing.T, yaml string) ([]string, string) {
	t.Helper()
	_, err := Parse([]byte(yaml), "t.yaml")
	if err == nil {
		return nil, ""
	}
	var list ErrorList
	if errors.As(err, &list) {
		var paths []string
		for _, e := range list {
			paths = append(paths, e.Path)
		}
		return paths, err.Error()
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not an *Error", err, err)
	}
	return []string{e.Path}, err.Error()
}

// TestParseReportsEveryTypeError: the decoder stops at its first error;
// Parse reports them all, each with its line.
func TestParseReportsEveryTypeError(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		paths []string
		msgs  []string
	}{
		{"three kinds", base + "hostname: [a]\nnetwork:\n  dhcp: maybe\ndisk:\n  root: 12XB\n",
			[]string{"$.disk.root", "$.hostname", "$.network.dhcp"},
			[]string{"t.yaml:7: $.disk.root: \"12XB\" is not a size", "t.yaml:3: $.hostname: expected a string, found a list", "t.yaml:5: $.network.dhcp: expected true or false"}},
		{"unknown fields and a bad mode", base + "colour: red\nroot:\n  files:\n  - {src: a, dst: /a, mode: \"0999\", owners: me}\n",
			[]string{"$.colour", "$.root.files[0].mode", "$.root.files[0].owners"},
			[]string{"unknown field (allowed here: name, version", `"0999" is not a mode`}},
		{"in list items", base + "services:\n- {name: a, command: /a, args: x}\n- {name: b, command: [/b]}\nusers:\n- {name: u, uid: one}\n",
			[]string{"$.services[0].args", "$.services[1].command", "$.users[0].uid"},
			[]string{"args: expected a sequence", "command: expected a string, found a list", "uid: expected an integer"}},
		{"only what the decoder refuses", base + "colour: red\nusers:\n- {name: a, uid: \"1000\"}\n- {name: b, uid: 1001.0}\nhostname: 123\nservices:\n- {name: a, command: /a, env: {K: 1}}\n",
			[]string{"$.colour"}, []string{"unknown field"}},
		{"a single error stays one", base + "network:\n  dhcp: maybe\n", []string{"$.network.dhcp"}, []string{"t.yaml:4:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			paths, msg := parseErrs(t, tt.yaml)
			if !slices.Equal(paths, tt.paths) {
				t.Errorf("paths %q, want %q\n%s", paths, tt.paths, msg)
			}
			for _, m := range tt.msgs {
				if !strings.Contains(msg, m) {
					t.Errorf("errors lack %q:\n%s", m, msg)
				}
			}
		})
	}
}

func TestUsersAndServiceUsers(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		paths []string // nil: valid
		msg   string
	}{
		{"valid", "users:\n- {name: web, uid: 1000}\n- {name: db, uid: 1001, gid: 2000, home: /srv/db, shell: /bin/sh}\ngroups:\n- {name: data, gid: 2000}\n" +
			"services:\n- {name: a, command: /a, user: web}\n- {name: b, command: /b, user: \"1001\"}\n- {name: c, command: /c, user: nobody}\n- {name: d, command: /d, user: \"0\"}\n", nil, ""},
		{"unknown service user", "services:\n- {name: a, command: /a, user: www-data}\n- {name: b, command: /b, user: \"1000\"}\n",
			[]string{"$.services[0].user", "$.services[1].user"}, `no user "www-data" in the image's /etc/passwd (it has root, nobody); declare it in users`},
		{"user without uid", "users:\n- {name: web}\n", []string{"$.users[0].uid"}, "required"},
		{"root's uid", "users:\n- {name: admin, uid: 0}\n", []string{"$.users[0].uid"}, "0 is root"},
		{"uid out of range", "users:\n- {name: big, uid: 70000}\n", []string{"$.users[0].uid"}, "out of range"},
		{"duplicate user name", "users:\n- {name: web, uid: 1000}\n- {name: web, uid: 1001}\n", []string{"$.users[1].name"}, "already at $.users[0]"},
		{"built-in name", "users:\n- {name: root, uid: 1000}\n", []string{"$.users[0].name"}, "built-in"},
		{"duplicate uid", "users:\n- {name: a, uid: 1000}\n- {name: b, uid: 1000}\n", []string{"$.users[1].uid"}, "taken by user a"},
		{"bad user name", "users:\n- {name: Web, uid: 1000}\n- {name: \"a:b\", uid: 1001}\n", []string{"$.users[0].name", "$.users[1].name"}, "not an account name"},
		{"relative home", "users:\n- {name: a, uid: 1000, home: srv}\n", []string{"$.users[0].home"}, "not an absolute path"},
		{"duplicate group", "groups:\n- {name: data, gid: 2000}\n- {name: data, gid: 2001}\n- {name: other, gid: 2000}\n- {name: root, gid: 3000}\n",
			[]string{"$.groups[1].name", "$.groups[2].gid", "$.groups[3].name"}, "already"},
		{"user group name clash", "groups:\n- {name: web, gid: 2000}\nusers:\n- {name: web, uid: 1000}\n", []string{"$.users[0].gid"}, "already at $.groups[0]"},
		{"two users share an explicit group", "users:\n- {name: a, uid: 1000}\n- {name: b, uid: 1001, gid: 1000}\n", nil, ""},
		{"bad gid", "users:\n- {name: a, uid: 1000, gid: 99999}\n", []string{"$.users[0].gid"}, "out of range"},
		{"nogroup as gid", "users:\n- {name: a, uid: 1000, gid: 65534}\n", nil, ""},
		{"file owners", "users:\n- {name: web, uid: 1000}\ngroups:\n- {name: data, gid: 2000}\nroot:\n  files:\n  - {src: a, dst: /a, owner: web, group: data}\n  - {src: a, dst: /b, owner: \"1000\", group: \"0\"}\n  - {src: a, dst: /c, owner: nobody, group: nogroup}\n", nil, ""},
		{"unknown file owners", "root:\n  files:\n  - {src: a, dst: /a, owner: web}\n  - {src: a, dst: /b, group: data}\n  - {src: a, dst: /c, owner: \"1000\"}\n",
			[]string{"$.root.files[0].owner", "$.root.files[1].group", "$.root.files[2].owner"}, `no user "web" in the image's /etc/passwd; declare it in users`},
		{"dst is /etc/passwd", "root:\n  files:\n  - {src: a, dst: /etc/passwd}\n  - {src: a, dst: /etc/shadow}\n  - {src: a, dst: " + CABundlePath + "}\n",
			[]string{"$.root.files[0].dst", "$.root.files[1].dst", "$.root.files[2].dst"}, "declare accounts there"},
		{"dst is /etc/machine-id", "root:\n  files:\n  - {src: a, dst: /etc/machine-id}\n  - {src: a, dst: /etc/motd}\n",
			[]string{"$.root.files[0].dst"}, "set one per machine with Ignition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			paths, msg := parseErrs(t, base+tt.yaml)
			if !slices.Equal(paths, tt.paths) {
				t.Fatalf("paths %q, want %q\n%s", paths, tt.paths, msg)
			}
			if !strings.Contains(msg, tt.msg) {
				t.Errorf("errors lack %q:\n%s", tt.msg, msg)
			}
		})
	}
}

func testCertPEM(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestCABundle(t *testing.T) {
	cert := testCertPEM(t)
	damaged := append([]byte(nil), cert...)
	damaged[len(damaged)/2] = '*'
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("secret")})
	notCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	cat := func(bs ...[]byte) []byte { return slices.Concat(bs...) }
	tests := []struct {
		name string
		data []byte
		want string // "" when fine
	}{
		{"one certificate", cert, ""},
		{"two with comments", cat([]byte("# Test CA\n"), cert, []byte("\n# another\n"), cert), ""},
		{"empty", nil, "no -----BEGIN CERTIFICATE----- block"},
		{"not PEM", []byte("hello\n"), "no -----BEGIN CERTIFICATE----- block"},
		{"a private key", cat(cert, key), fmt.Sprintf(`.pem:%d: PEM block 2 is a "PRIVATE KEY", not a CERTIFICATE`, 1+strings.Count(string(cert), "\n"))},
		{"damaged second block", cat(cert, damaged, cert), "PEM block 2 is damaged"},
		{"truncated last block", cat(cert, cert[:len(cert)-40]), "PEM block 2 is damaged or truncated"},
		{"not a certificate inside", notCert, "PEM block 1 is not a certificate"},
	}
	dir := t.TempDir()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, "ca"+string(rune('a'+i))+".pem")
			if err := os.WriteFile(p, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			err := CheckCABundle(p)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			// CheckFiles reports it at the field.
			spec := &Spec{Dir: dir, Root: Root{CABundle: filepath.Base(p)}}
			err = spec.CheckFiles()
			var e *Error
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckFiles: %v", err)
				}
			} else if !errors.As(err, &e) || e.Path != "$.root.ca_bundle" || !strings.Contains(e.Msg, tt.want) {
				t.Fatalf("CheckFiles: %v, want an error at $.root.ca_bundle", err)
			}
		})
	}
	spec := &Spec{Dir: dir, Root: Root{CABundle: "missing.pem"}}
	var e *Error
	if err := spec.CheckFiles(); !errors.As(err, &e) || e.Path != "$.root.ca_bundle" || !strings.Contains(e.Msg, "does not exist") {
		t.Errorf("missing bundle: %v", err)
	}
}

func FuzzParseCABundle(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("# x\n-----BEGIN CERTIFICATE-----\n"))
	f.Add([]byte("-----END CERTIFICATE-----\n-----BEGIN"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = ParseCABundle("f.pem", data)
	})
}
