package updater

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"

	"github.com/slateos/slate/updater/payload"
)

// The daemon's trust hook: which manifest it may follow. Daemon.update calls
// fetchTrusted instead of reading the manifest itself, and reports
// failures with reasonOf.

// seenFileName is where, beside the state file, the daemon remembers the
// newest channel manifest it has verified (payload.Seen).
const seenFileName = "channel-seen.json"

// fetchTrusted reads the source's manifest, verifies it with the keys of
// the running image and, for the configured channel (not an explicit
// `slate update apply`, which a person chose and which may be a version
// folder without an expiry), refuses an expired manifest or one older
// than the newest seen. The newest seen is remembered before the version
// is applied, so a replay is caught even if the apply then fails.
func (d *Daemon) fetchTrusted(ctx context.Context, src Source, explicit bool) (*payload.Manifest, error) {
	m, err := FetchManifest(ctx, src, d.PublicKeys...)
	if err != nil {
		if r := payload.ReasonOf(err); r != "" {
			// the reason leads, so `slate update status` starts with it
			err = &payload.TrustError{Reason: r, Err: err}
		}
		return nil, err
	}
	if explicit {
		return m, nil
	}
	p := filepath.Join(filepath.Dir(d.StateFile), seenFileName)
	seen, err := loadSeen(p)
	if err != nil {
		return nil, err
	}
	next, err := payload.CheckFresh(m, seen, d.now())
	if err != nil {
		var te *payload.TrustError
		if errors.As(err, &te) {
			err = &payload.TrustError{Reason: te.Reason, Err: fmt.Errorf("%s: %w", src, te.Err)}
		}
		return nil, err
	}
	if m.Name != d.Name {
		// not ours: the daemon refuses it; remembering it would only
		// confuse the rollback check
		return m, nil
	}
	if next != seen {
		if err := saveSeen(p, next); err != nil {
			return nil, err
		}
	}
	d.metrics().availableVersion(m.Version)
	return m, nil
}

// reasonOf is the reason= of a failed check for the console line, if it
// has one (payload.ReasonOf).
func reasonOf(err error) []any {
	if r := payload.ReasonOf(err); r != "" {
		return []any{"reason", r}
	}
	return nil
}

func loadSeen(p string) (payload.Seen, error) {
	var s payload.Seen
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read %s: %w", p, err)
	}
	if err := json.Unmarshal(b, &s); err != nil || (s.Version != "" && payload.ValidateVersion(s.Version) != nil) {
		// Damaged: refusing every update forever would be worse than
		// forgetting; keep the bad copy for people to look at.
		_ = os.Rename(p, p+".bad")
		return payload.Seen{}, nil //nolint:nilerr // a damaged file is set aside and forgotten, see above
	}
	return s, nil
}

func saveSeen(p string, s payload.Seen) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("save %s: %w", p, err)
	}
	if err := renameio.WriteFile(p, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("save %s: %w", p, err)
	}
	return nil
}
