package payload

import (
	"errors"
	"fmt"
	"time"
)

// Reasons a machine refuses a channel's top manifest although it is
// signed by a trusted key. They appear as reason= on the console
// (SLATE-UPDATE state=failed reason=...) and start the error text that
// `slate update status` shows.
const (
	ReasonExpired   = "channel-expired"
	ReasonRollback  = "channel-rollback"
	ReasonNoExpiry  = "channel-no-expiry"
	ReasonSignature = "bad-signature"
)

// TrustError is a channel that must not be followed, with its reason.
type TrustError struct {
	Reason string
	Err    error
}

func (e *TrustError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *TrustError) Unwrap() error { return e.Err }

// ReasonOf returns the reason of a TrustError in err's chain, or for a
// signature error ReasonSignature; "" otherwise.
func ReasonOf(err error) string {
	var te *TrustError
	switch {
	case errors.As(err, &te):
		return te.Reason
	case errors.Is(err, ErrUntrusted), errors.Is(err, ErrSignatureMismatch), errors.Is(err, ErrMalformedSignature):
		return ReasonSignature
	}
	return ""
}

// Seen is the newest top manifest a machine has verified from its channel.
// It lives on the machine's writable state, so it survives reboots and
// slot changes.
type Seen struct {
	Version   string    `json:"version"`
	Published time.Time `json:"published"`
}

// CheckFresh decides whether a verified top manifest may be followed, given
// the newest one seen before and the time now:
//   - it must carry an expiry (a version folder's own manifest has none:
//     served as the top, it would be a replay that never expires);
//   - it must not have expired (a frozen channel, or a replay of an old
//     one);
//   - it must not be older than the newest seen, by version or, for the
//     same version, by publish time (a replay of an older, still unexpired
//     manifest: it would hide newer versions from the machine).
//
// It returns the Seen to remember (the newer of m and seen). The clock is
// the machine's: one far behind accepts an expired manifest, one far ahead
// refuses a fresh one; the error says which times it compared.
func CheckFresh(m *Manifest, seen Seen, now time.Time) (Seen, error) {
	if m.Expires.IsZero() {
		return seen, &TrustError{Reason: ReasonNoExpiry, Err: fmt.Errorf("the channel's manifest of %s has no expiry (a version folder's manifest served as the channel's?); the publisher must publish or refresh the channel with this slate", m.Version)}
	}
	if !now.Before(m.Expires) {
		return seen, &TrustError{Reason: ReasonExpired, Err: fmt.Errorf("the channel's manifest of %s expired at %s (published %s, now %s); the publisher must run slate channel refresh, or the server is serving an old copy",
			m.Version, m.Expires.UTC().Format(time.RFC3339), m.Published.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
	}
	if seen.Version != "" {
		c := CompareVersions(m.Version, seen.Version)
		if c < 0 || (c == 0 && m.Published.Before(seen.Published)) {
			return seen, &TrustError{Reason: ReasonRollback, Err: fmt.Errorf("the channel offers %s published %s, but this machine has seen %s published %s: an old manifest is being replayed",
				m.Version, m.Published.UTC().Format(time.RFC3339), seen.Version, seen.Published.UTC().Format(time.RFC3339))}
		}
	}
	return Seen{Version: m.Version, Published: m.Published}, nil
}
