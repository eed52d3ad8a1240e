package sshd

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/accounts"
	"github.com/slateos/slate/internal/bootlog"
)

// Prepare makes what sshd needs under root ("/" on the machine) before
// it starts: the privilege-separation folder, the host keys (see
// EnsureHostKeys) and a home for each user with keys in
// AuthorizedKeysDir that has none yet (homes live on STATE, empty on a
// first boot). It returns the host keys, ed25519 first.
func Prepare(root string, log logrus.FieldLogger) ([]HostKey, error) {
	priv := filepath.Join(root, configs.SSHDHome)
	if err := os.MkdirAll(priv, 0o755); err != nil {
		return nil, fmt.Errorf("ssh: %w", err)
	}
	// sshd refuses a privilege-separation folder others may write to
	if err := os.Chmod(priv, 0o755); err != nil {
		return nil, fmt.Errorf("ssh: %w", err)
	}
	if err := os.Lchown(priv, 0, 0); err != nil {
		return nil, fmt.Errorf("ssh: %w", err)
	}
	keys, err := EnsureHostKeys(root, log)
	if err != nil {
		return nil, err
	}
	if err := makeHomes(root, log); err != nil {
		return nil, err
	}
	return keys, nil
}

// makeHomes gives every user named in AuthorizedKeysDir the home
// /etc/passwd names (0700, owned by the user) when it is missing. A home
// that cannot be made (on the read-only root) is only a warning: the user
// still logs in, in /.
func makeHomes(root string, log logrus.FieldLogger) error {
	ents, err := os.ReadDir(filepath.Join(root, AuthorizedKeysDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ssh: %w", err)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		return fmt.Errorf("ssh: %w", err)
	}
	for _, e := range ents {
		u, ok := accounts.LookupUser(string(passwd), e.Name())
		if !ok || u.Name != e.Name() || u.Home == "" || !strings.HasPrefix(u.Home, "/") || u.Home == "/" {
			continue
		}
		home := filepath.Join(root, u.Home)
		if _, err := os.Lstat(home); err == nil || !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := mkHome(home, int(u.UID), int(u.GID)); err != nil {
			log.WithError(err).WithField("user", u.Name).Warn("ssh: no home for the user")
		}
	}
	return nil
}

func mkHome(home string, uid, gid int) error {
	if err := os.MkdirAll(filepath.Dir(home), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(home, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(home, 0o700); err != nil {
		return err
	}
	return os.Lchown(home, uid, gid)
}

// Event is the console line of the machine's identity, one per start of
// sshd: the ed25519 key's type, fingerprint, whether it was made now
// (state=new) or kept from STATE (state=kept), and its public key
// (base64 of the wire form, as in known_hosts), so that whoever reads
// the console can trust the key before the first connection.
func Event(keys []HostKey) []any {
	sorted := append([]HostKey(nil), keys...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Type == "ed25519" && sorted[j].Type != "ed25519" })
	k := sorted[0]
	state := "kept"
	if k.New {
		state = "new"
	}
	return []any{"host_key", k.Type, "fingerprint", k.Fingerprint(), "state", state,
		"key", base64.StdEncoding.EncodeToString(k.Public.Marshal())}
}

// Main is `slate ssh-prepare`, run by PID 1 before each start of sshd.
// Its SLATE-SSH line goes to the console itself, not through the
// supervisor's "[sshd] " prefix, so it reads like every contract line.
func Main() error {
	console := io.Writer(os.Stdout)
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		defer f.Close()
		console = f
	}
	bootlog.Setup(os.Stdout, "slate-ssh")
	bootlog.SetEvents(console)
	keys, err := Prepare("/", logrus.StandardLogger())
	if err != nil {
		bootlog.Event("SSH", "state", "failed", "err", err.Error())
		return err
	}
	for _, k := range keys {
		logrus.WithFields(logrus.Fields{"type": k.Type, "fingerprint": k.Fingerprint(), "new": k.New}).Info("ssh host key")
	}
	bootlog.Event("SSH", Event(keys)...)
	return nil
}

// Identity is what a SLATE-SSH line says about the machine.
type Identity struct {
	Type, Fingerprint, State string
	// Key is the public key in its wire form.
	Key ssh.PublicKey
}

// ParseEvent reads a SLATE-SSH line (as Event writes it) and checks that
// its key has the fingerprint it names: a console line is only trusted
// whole.
func ParseEvent(line string) (Identity, error) {
	kind, kvs, err := bootlog.Parse(line)
	if err != nil {
		return Identity{}, err
	}
	if kind != "SSH" {
		return Identity{}, fmt.Errorf("SLATE-%s is not a SLATE-SSH line", kind)
	}
	var id Identity
	var blob string
	for _, kv := range kvs {
		switch kv.Key {
		case "host_key":
			id.Type = kv.Value
		case "fingerprint":
			id.Fingerprint = kv.Value
		case "state":
			id.State = kv.Value
		case "key":
			blob = kv.Value
		}
	}
	if id.State == "failed" {
		return id, errors.New("the machine could not prepare sshd")
	}
	b, err := base64.StdEncoding.DecodeString(blob)
	if err != nil {
		return Identity{}, fmt.Errorf("SLATE-SSH key=: %w", err)
	}
	if id.Key, err = ssh.ParsePublicKey(b); err != nil {
		return Identity{}, fmt.Errorf("SLATE-SSH key=: %w", err)
	}
	if got := ssh.FingerprintSHA256(id.Key); got != id.Fingerprint {
		return Identity{}, fmt.Errorf("SLATE-SSH: the key's fingerprint is %s, the line says %q", got, id.Fingerprint)
	}
	return id, nil
}

// KnownHosts is a known_hosts file that trusts id for host:port, in
// OpenSSH's form ("[127.0.0.1]:2222 ssh-ed25519 AAAA...").
func (id Identity) KnownHosts(host string, port int) []byte {
	return []byte(knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort(host, strconv.Itoa(port)))}, id.Key) + "\n")
}
