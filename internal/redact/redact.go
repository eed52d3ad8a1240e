// Package redact hides what a URL may carry that must not be printed or
// stored: credentials (https://user:pass@host/...) and tokens in the query
// or fragment. Channel, Ignition and root URLs go through it before they
// reach the console, a status or a state file.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// urlRe finds URLs inside a message; Go's own errors quote them
// (Get "https://...": ...), so a quote ends one.
var urlRe = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)

// URL keeps a URL's scheme, host and path and replaces its user
// information with *** and every query value with ***.
func URL(raw string) string {
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

// Message redacts every URL in a message.
func Message(msg string) string {
	if !strings.Contains(msg, "://") {
		return msg
	}
	return urlRe.ReplaceAllStringFunc(msg, URL)
}
