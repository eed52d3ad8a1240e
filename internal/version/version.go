// Package version holds slate's own version, set at link time with
// -ldflags "-X github.com/slateos/slate/internal/version.Version=...".
package version

// Version of this slate binary.
var Version = "0.1.0-dev"
