package updater

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// Channel URLs may carry credentials (https://user:pass@host/...) or
// tokens in the query; they must not reach the console, the status or the
// state file. Every message the updater prints, returns or stores goes
// through Redact.

// urlRe finds URLs inside a message; Go's own errors quote them
// (Get "https://...": ...), so a quote ends one.
var urlRe = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)

// RedactURL keeps a URL's scheme, host and path and replaces its user
// information with *** and every query value with ***.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" && u.User == nil {
		// unparsable: cut at the first @ and ? to be safe
		if i := strings.LastIndex(raw, "@"); i >= 0 {
			if j := strings.Index(raw, "://"); j >= 0 && j < i {
				raw = raw[:j+3] + "***" + raw[i:]
			}
		}
		if i := strings.Index(raw, "?"); i >= 0 {
			raw = raw[:i+1] + "***"
		}
		return raw
	}
	if u.User != nil {
		u.User = url.User("***")
	}
	if u.RawQuery != "" {
		var parts []string
		for _, kv := range strings.Split(u.RawQuery, "&") {
			k, _, _ := strings.Cut(kv, "=")
			parts = append(parts, k+"=***")
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = "***", ""
	}
	s := u.String()
	// url.String escapes the stars of the user name
	return strings.Replace(s, "%2A%2A%2A@", "***@", 1)
}

// Redact redacts every URL in a message.
func Redact(msg string) string {
	if !strings.Contains(msg, "://") {
		return msg
	}
	return urlRe.ReplaceAllStringFunc(msg, RedactURL)
}

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
