package provision_test

import (
	"slices"
	"testing"

	"github.com/slateos/slate/ignition"
	"github.com/slateos/slate/system"
)

// The updater's name is reserved: a unit named like it would replace it.
func TestUpdaterIsReserved(t *testing.T) {
	if !slices.Contains(ignition.ReservedServices, system.UpdaterService.Name) {
		t.Fatalf("ignition.ReservedServices %q lacks the updater %q", ignition.ReservedServices, system.UpdaterService.Name)
	}
}
