package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/slateos/slate/updater"
)

func TestPrintStatusLostSlot(t *testing.T) {
	st := &updater.Status{
		State: "failed", Name: "web", Version: "1.0.0", Slot: "a",
		Current: updater.SlotInfo{Slot: "a", Version: "1.0.0", State: "good"},
		Other:   updater.SlotInfo{Slot: "b", State: "empty", Note: "an update to 2.0.0 failed while writing it at 2026-12-01T23:00:00Z"},
	}
	var b bytes.Buffer
	printStatus(&b, st, false)
	want := "other:    slot b: empty (an update to 2.0.0 failed while writing it at 2026-12-01T23:00:00Z)\n"
	if !strings.Contains(b.String(), want) {
		t.Errorf("status:\n%s\nwant the line %q", b.String(), want)
	}
	st.Other = updater.SlotInfo{Slot: "b", Version: "0.9.0", State: "good"}
	b.Reset()
	printStatus(&b, st, false)
	if !strings.Contains(b.String(), "other:    slot b: 0.9.0 (good)\n") {
		t.Errorf("status:\n%s", b.String())
	}
}
