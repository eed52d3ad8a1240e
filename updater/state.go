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
		return &State{Failed: map[string]Failure{}}, nil
	}
	if st.Failed == nil {
		st.Failed = map[string]Failure{}
	}
	return st, nil
}

// Save writes the state atomically.
func (s *State) Save(p string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("save updater state: %w", err)
	}
	if err := renameio.WriteFile(p, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("save updater state: %w", err)
	}
	return nil
}
