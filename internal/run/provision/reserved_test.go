package provision_test

import (
	"slices"
	"testing"

	"github.com/slateos/slate/internal/run/ignition"
	"github.com/slateos/slate/internal/run/pid1"
)

// The updater's name is reserved: a unit named like it would replace it.
func TestUpdaterIsReserved(t *testing.T) {
	if !slices.Contains(ignition.ReservedServices, pid1.UpdaterService.Name) {
		t.Fatalf("ignition.ReservedServices %q lacks the updater %q", ignition.ReservedServices, pid1.UpdaterService.Name)
	}
}
