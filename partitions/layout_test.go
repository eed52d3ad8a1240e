package partitions

import "testing"

func TestPlan(t *testing.T) {
	l, err := Plan(3<<30, 256<<20, 1<<30, "x")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Parts) != 4 || l.Part(NumState).End() != 3<<30-Align {
		t.Fatalf("layout %+v", l)
	}
	for _, p := range l.Parts {
		if p.Start%Align != 0 || p.Size%Align != 0 {
			t.Errorf("%s not aligned: %+v", p.Label, p)
		}
	}
	l2, _ := Plan(3<<30, 256<<20, 1<<30, "x")
	l3, _ := Plan(3<<30, 256<<20, 1<<30, "y")
	if l.GUID != l2.GUID || l.GUID == l3.GUID || l.Parts[1].GUID == l.Parts[2].GUID {
		t.Errorf("GUIDs not derived from the seed: %s %s %s", l.GUID, l2.GUID, l3.GUID)
	}
	if _, err := Plan(2<<30, 256<<20, 1<<30, "x"); err == nil {
		t.Error("accepted a disk with no room for STATE")
	}
}
