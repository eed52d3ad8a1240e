package qemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// qmpMessage is the part of a QMP message slate looks at: a greeting, an
// asynchronous event, a command's return value or its error.
type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Event  string          `json:"event"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

// qmpGreeting connects to QEMU's QMP socket and reads its greeting, which
// QEMU sends once its main loop runs.
func qmpGreeting(socket string, timeout time.Duration) error {
	conn, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return fmt.Errorf("qmp: %w", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("qmp: %w", err)
	}
	var greeting qmpMessage
	if err := json.NewDecoder(conn).Decode(&greeting); err != nil {
		return fmt.Errorf("qmp: greeting: %w", err)
	}
	if greeting.QMP == nil {
		return errors.New("qmp: no greeting")
	}
	return nil
}

// qmpCommand connects to QEMU's QMP socket, leaves capability negotiation and
// runs one command without arguments.
func qmpCommand(socket, command string, timeout time.Duration) error {
	conn, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return fmt.Errorf("qmp: %w", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("qmp: %w", err)
	}
	dec := json.NewDecoder(conn)
	var greeting qmpMessage
	if err := dec.Decode(&greeting); err != nil {
		return fmt.Errorf("qmp: greeting: %w", err)
	}
	if greeting.QMP == nil {
		return errors.New("qmp: no greeting")
	}
	for _, c := range []string{"qmp_capabilities", command} {
		if _, err := fmt.Fprintf(conn, "{\"execute\":%q}\n", c); err != nil {
			return fmt.Errorf("qmp: %s: %w", c, err)
		}
		if err := qmpReply(dec); err != nil {
			return fmt.Errorf("qmp: %s: %w", c, err)
		}
	}
	return nil
}

// qmpReply reads messages until the reply to the last command, skipping the
// events QEMU may send in between.
func qmpReply(dec *json.Decoder) error {
	for {
		var m qmpMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		switch {
		case m.Error != nil:
			return fmt.Errorf("%s: %s", m.Error.Class, m.Error.Desc)
		case m.Return != nil:
			return nil
		}
	}
}
