package cnet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxState bounds the OCI state runc writes on a hook's stdin; a real one
// is a few hundred bytes (its annotations are the container's).
const MaxState = 64 << 10

// State is the part of the OCI runtime state a hook uses.
type State struct {
	OCIVersion string `json:"ociVersion"`
	ID         string `json:"id"`
	Status     string `json:"status"`
	PID        int    `json:"pid"`
	Bundle     string `json:"bundle"`
}

// ParseState reads the OCI state JSON from r: at most MaxState bytes, one
// JSON object with an id and the pid of the container's init.
func ParseState(r io.Reader) (State, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxState+1))
	if err != nil {
		return State{}, fmt.Errorf("OCI state on stdin: %w", err)
	}
	if len(b) > MaxState {
		return State{}, fmt.Errorf("OCI state on stdin: longer than %d bytes", MaxState)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return State{}, errors.New("OCI state on stdin: empty (the hook is run by runc, which writes the container's state there)")
	}
	var s State
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&s); err != nil {
		return State{}, fmt.Errorf("OCI state on stdin: %w", err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return State{}, errors.New("OCI state on stdin: data after the JSON object")
	}
	switch {
	case s.OCIVersion == "":
		return State{}, errors.New("OCI state on stdin: no ociVersion")
	case s.ID == "":
		return State{}, errors.New("OCI state on stdin: no id")
	case s.PID <= 0 || s.PID > maxPID:
		return State{}, fmt.Errorf("OCI state on stdin: pid %d is not a process (the hook must run at createRuntime, when the container's init exists)", s.PID)
	}
	return s, nil
}

// Hook is `slate container-hook network NAME ADDRESS GATEWAY`, runc's
// createRuntime hook of a bridge container: it checks its arguments and
// the state on stdin, then attaches the container to DefaultBridge.
func Hook(args []string, stdin io.Reader) error {
	if len(args) != 3 {
		return fmt.Errorf("want NAME ADDRESS GATEWAY, got %d arguments", len(args))
	}
	name := args[0]
	if err := CheckName(name); err != nil {
		return err
	}
	addr, err := ParseAddress(args[1])
	if err != nil {
		return fmt.Errorf("container %s: %w", name, err)
	}
	gw, err := ParseGateway(args[2], addr)
	if err != nil {
		return fmt.Errorf("container %s: %w", name, err)
	}
	st, err := ParseState(stdin)
	if err != nil {
		return fmt.Errorf("container %s: %w", name, err)
	}
	if st.ID != name {
		return fmt.Errorf("container %s: the OCI state is container %q's", name, st.ID)
	}
	if err := Attach(name, st.PID, addr, gw, DefaultBridge); err != nil {
		return fmt.Errorf("container %s: %w", name, err)
	}
	return nil
}
