package updater

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/renameio/v2"
)

// DefaultStateFile keeps what the updater must remember across boots and
// slots: it is on STATE, which both slots share.
const DefaultStateFile = "/var/lib/slate/update/state.json"

// State is the updater's memory.
type State struct {
	// Failed versions are never applied again automatically.
	Failed map[string]Failure `json:"failed,omitempty"`
	// LastCheck and LastError of the last check or apply.
	LastCheck time.Time `json:"last_check,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	// Staged is the version written to the idle slot and waiting for a reboot.
	Staged string `json:"staged,omitempty"`
	// Blessed is the last version blessed on this machine.
	Blessed string `json:"blessed,omitempty"`
	// Writing is the slot being written now: its old content is gone
	// from the moment its entry was removed. Left set after a power cut
	// or crash, the next start turns it into Lost.
	Writing *SlotWrite `json:"writing,omitempty"`
	// Lost is a slot whose old content was given up for an update that
	// then failed: it holds no version until an update succeeds.
	Lost *SlotWrite `json:"lost,omitempty"`
}

// SlotWrite is an update written into a slot.
type SlotWrite struct {
	Slot    string    `json:"slot"`
	Version string    `json:"version"`
	At      time.Time `json:"at"`
	Error   string    `json:"error,omitempty"`
}

// Describe says what became of the slot, for status.
func (w *SlotWrite) Describe() string {
	s := fmt.Sprintf("an update to %s failed while writing it at %s", w.Version, w.At.UTC().Format(time.RFC3339))
	if w.Error != "" {
		s += ": " + w.Error
	}
	return s
}

// Failure records why a version was given up.
type Failure struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// LoadState reads the state file; a missing file is an empty state.
func LoadState(p string) (*State, error) {
	st := &State{Failed: map[string]Failure{}}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read updater state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		// A damaged state file must not stop updates for good: start
		// over, keeping the bad copy for people to look at.
		_ = os.Rename(p, p+".bad")
		return &State{Failed: map[string]Failure{}}, nil //nolint:nilerr // a damaged state is set aside and started over, see above
	}
	if st.Failed == nil {
		st.Failed = map[string]Failure{}
	}
	return st, nil
}

// Save writes the state atomically, readable by root only: it holds
// error messages, which name servers and paths.
func (s *State) Save(p string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("save updater state: %w", err)
	}
	if err := renameio.WriteFile(p, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save updater state: %w", err)
	}
	return nil
}
