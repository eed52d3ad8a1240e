package updater

import (
	"errors"

	"github.com/slateos/slate/internal/redact"
)

// Channel URLs may carry credentials (https://user:pass@host/...) or
// tokens in the query; they must not reach the console, the status or the
// state file. Every message the updater prints, returns or stores goes
// through Redact.

// RedactURL keeps a URL's scheme, host and path and replaces its user
// information with *** and every query value with ***.
func RedactURL(raw string) string { return redact.URL(raw) }

// Redact redacts every URL in a message.
func Redact(msg string) string { return redact.Message(msg) }

// redactedError keeps the chain of an error (errors.Is) while its text is
// redacted.
type redactedError struct{ err error }

func (e redactedError) Error() string { return Redact(e.err.Error()) }
func (e redactedError) Unwrap() error { return e.err }

// redactErr wraps err so that its message is redacted.
func redactErr(err error) error {
	if err == nil {
		return nil
	}
	var r redactedError
	if errors.As(err, &r) {
		return err
	}
	return redactedError{err}
}
