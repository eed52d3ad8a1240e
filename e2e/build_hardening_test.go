package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/internal/qemu"
	"github.com/slateos/slate/updater/payload"
)

// testCA is a certificate authority made by the test, and a server
// certificate it signed for the host as the guest sees it (10.0.2.2)
// and as the test sees it (127.0.0.1).
type testCA struct {
	pem    []byte // the CA certificate, PEM
	server tls.Certificate
}

func newTestCA(t testing.TB) testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "slate e2e test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: qemu.HostAddr},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP(qemu.HostAddr), net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{
		pem:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		server: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}
}

// serveTLS serves h over https on the host's loopback and returns the
// port.
func serveTLS(t testing.TB, h http.Handler, cert tls.Certificate) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return l.Addr().(*net.TCPAddr).Port
}

// TestHTTPSWithOwnCA: an image whose spec names a CA file (root.ca_bundle)
// fetches its Ignition config and its update over https from servers
// whose certificates that CA signed; without a CA store in the root both
// fail with "unknown authority". The same boot checks the hardening of
// the root from inside: a host file's setuid bit is gone, the CA bundle
// is in place and /etc is mounted nosuid,nodev.
func TestHTTPSWithOwnCA(t *testing.T) {
	needQEMU(t)
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	keys := filepath.Join(dir, "keys")
	root := filepath.Join(dir, "channel")
	suid := filepath.Join(dir, "probe-suid")
	for _, err := range []error{
		os.WriteFile(caFile, ca.pem, 0o644),
		os.MkdirAll(root, 0o755),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if b, err := exec.Command("cp", probeBin, suid).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, b)
	}
	if err := os.Chmod(suid, 0o4755); err != nil {
		t.Fatal(err)
	}
	if out, err := slate(t, "keygen", "-o", keys); err != nil {
		t.Fatalf("slate keygen: %v\n%s", err, out)
	}
	ign := `{"ignition":{"version":"3.4.0"},"systemd":{"units":[{"name":"hello.service","enabled":true,` +
		`"contents":"[Service]\nType=oneshot\nExecStart=/usr/local/bin/probe say HTTPS-IGNITION-UNIT ran\n[Install]\nWantedBy=multi-user.target\n"}]}}`
	mux := http.NewServeMux()
	mux.HandleFunc("/config.ign", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(ign)) })
	mux.Handle("/channel/", http.StripPrefix("/channel", payload.Serve(root)))
	port := serveTLS(t, mux, ca.server)

	// The test's own client trusts only the test CA: the server is right.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d/config.ign", port)); err != nil {
		t.Fatalf("the test's https server: %v", err)
	} else {
		resp.Body.Close()
	}

	spec := func(version string) string {
		body := fmt.Sprintf(`name: slate-https
version: %[1]s
kernel:
  args: ["ignition.config.url=https://%[2]s:%[3]d/config.ign"]
root:
  ca_bundle: %[4]s
  files:
    - {src: %[5]s, dst: /usr/local/bin/probe, mode: "0755"}
    - {src: %[6]s, dst: /usr/local/bin/probe-suid}
services:
  - name: web
    command: /usr/local/bin/probe
    args: [sleep]
  - name: checks
    type: oneshot
    restart: never
    command: /usr/local/bin/probe-suid
    args: [modes, /usr/local/bin/probe-suid, /etc/ssl/certs/ca-certificates.crt, /etc/shadow]
  - name: mounts
    type: oneshot
    restart: never
    command: /usr/local/bin/probe
    args: [mounts, /etc, /var, /home]
update:
  channel: https://%[2]s:%[3]d/channel/
  public_key: %[7]s
  check_interval: 20s
  reboot: "off"
  health:
    hold: 3s
`, version, qemu.HostAddr, port, caFile, probeBin, suid, filepath.Join(keys, "update.pub"))
		p := filepath.Join(dir, "spec-"+version+".yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// 1.0.0 is the machine's; the channel holds only 1.1.0.
	v1 := build(t, spec("1.0.0"))
	build(t, spec("1.1.0"), "--channel", root, "--sign", filepath.Join(keys, "update.key"))

	vm := boot(t, machine(t, v1), qemu.Options{Network: true})
	t0 := time.Now()
	nthMatch(t, vm, `^SLATE-IGNITION state=applied source=cmdline`, 1, 3*time.Minute)
	nthMatch(t, vm, `HTTPS-IGNITION-UNIT ran`, 1, time.Minute)
	nthMatch(t, vm, `^SLATE-READY version=1\.0\.0 slot=a$`, 1, 2*time.Minute)
	t.Logf("boot to SLATE-READY, Ignition fetched over https: %s", time.Since(t0).Round(time.Millisecond))
	ca1 := fmt.Sprintf(`MODE path=/etc/ssl/certs/ca-certificates\.crt mode=644 uid=0 size=%d$`, len(ca.pem))
	nthMatch(t, vm, `MODE path=/usr/local/bin/probe-suid mode=755 uid=0 `, 1, time.Minute)
	nthMatch(t, vm, ca1, 1, time.Minute)
	nthMatch(t, vm, `MODE path=/etc/shadow mode=600 uid=0 `, 1, time.Minute)
	for _, d := range []string{"/etc", "/var", "/home"} {
		m := nthMatch(t, vm, `MOUNT dir=`+d+` opts=(\S+)`, 1, time.Minute)
		for _, o := range []string{"nosuid", "nodev"} {
			if !strings.Contains(","+m[1]+",", ","+o+",") {
				t.Errorf("%s is mounted %s, without %s", d, m[1], o)
			}
		}
	}
	nthMatch(t, vm, `^SLATE-UPDATE state=downloading version=1\.1\.0`, 1, 2*time.Minute)
	t.Logf("boot to the download of 1.1.0 over https: %s", time.Since(t0).Round(time.Millisecond))
	nthMatch(t, vm, `^SLATE-UPDATE state=staged version=1\.1\.0 slot=b`, 1, 3*time.Minute)
	t.Logf("boot to an update staged over https: %s", time.Since(t0).Round(time.Millisecond))
	noneMatch(t, vm.Lines(), `unknown authority|x509:`, "a certificate was refused")
}

// TestBuildRefusesEarly: mistakes that used to build, or to fail late
// with a confusing message, stop the build before it writes anything,
// with the field or variable at fault.
func TestBuildRefusesEarly(t *testing.T) {
	needBuild(t)
	dir := t.TempDir()
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, "motd"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "name: t\nversion: 1.0.0\nroot:\n  files:\n    - {src: files, dst: /opt/files}\n")
	tests := []struct {
		name string
		spec string
		out  string
		env  []string
		want []string
	}{
		{"output inside a copied folder", good, filepath.Join(files, "out"), nil,
			[]string{"$.root.files[0].src", filepath.Join(files, "out"), files}},
		{"bad SOURCE_DATE_EPOCH", good, filepath.Join(dir, "out1"), []string{"SOURCE_DATE_EPOCH=2024-01-01"},
			[]string{`SOURCE_DATE_EPOCH="2024-01-01" is not a time`}},
		{"service command not in the image", write("cmd.yaml", "name: t\nversion: 1.0.0\nservices:\n  - {name: a, command: /usr/bin/nothing}\n"),
			filepath.Join(dir, "out2"), nil, []string{"$.services[0].command: /usr/bin/nothing is not in the image"}},
		{"unknown service user", write("user.yaml", "name: t\nversion: 1.0.0\nservices:\n  - {name: a, command: /usr/bin/slate, user: web}\n"),
			filepath.Join(dir, "out3"), nil, []string{"user.yaml:4: $.services[0].user: no user \"web\""}},
		{"disk beyond the output filesystem", write("big.yaml", "name: t\nversion: 1.0.0\ndisk:\n  size: 100T\n"),
			filepath.Join(dir, "out4"), nil, []string{"$.disk.size: 100TiB: the filesystem of the output folder"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(slateBin, "build", "-c", tt.spec, "-o", tt.out)
			cmd.Env = append(append(os.Environ(), "SLATE_CACHE="+cacheDir()), tt.env...)
			b, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("slate build succeeded:\n%s", b)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("output lacks %q:\n%s", w, b)
				}
			}
			if strings.Contains(string(b), ".slate-build-") {
				t.Errorf("the error names a temporary folder:\n%s", b)
			}
			if _, err := os.Stat(tt.out); err == nil {
				t.Errorf("the failed build left %s behind", tt.out)
			}
		})
	}
}
