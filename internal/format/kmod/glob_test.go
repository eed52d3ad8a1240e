package kmod

import (
	"slices"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		// real aliases (Debian 6.1) against real modaliases
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF4d00001042sv00001AF4sd00001042bc01sc80i00", true},        // virtio_pci, virtio-blk device
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00008086d00000D57sv00000000sd00000000bc06sc00i00", false},       // not Red Hat
		{"virtio:d00000002v*", "virtio:d00000002v00001AF4", true},                                               // virtio_blk
		{"virtio:d00000002v*", "virtio:d00000001v00001AF4", false},                                              // a NIC
		{"virtio:d00000001v*", "virtio:d00000001v00001AF4", true},                                               // virtio_net
		{"pci:v*d*sv*sd*bc01sc08i02*", "pci:v0000144Dd0000A808sv0000144Dsd0000A801bc01sc08i02", true},           // nvme by class
		{"pci:v*d*sv*sd*bc01sc08i02*", "pci:v0000144Dd0000A808sv0000144Dsd0000A801bc01sc06i01", false},          // AHCI class
		{"pci:v*d*sv*sd*bc01sc06i01*", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", true},           // ahci by class (QEMU q35)
		{"pci:v00008086d000025ABsv*sd*bc*sc*i*", "pci:v00008086d000025ABsv00001AF4sd00001100bc08sc80i00", true}, // i6300esb
		{"acpi*:QEMU0002:*", "acpi:QEMU0002:", true},                                                            // qemu_fw_cfg
		{"acpi*:QEMU0002:*", "acpi:PNP0A08:PNP0A03:", false},
		{"cpu:type:x86,ven*fam*mod*:feature:*0094*", "cpu:type:x86,ven0002fam0019mod0011:feature:,0000,0093,0094,0095", true}, // crc32c_intel
		{"cpu:type:x86,ven*fam*mod*:feature:*0094*", "cpu:type:x86,ven0002fam0019mod0011:feature:,0000,0093,0095", false},
		// brackets, from usb_storage and uas
		{"usb:v13FDp3940d0[0-2]*dc*dsc*dp*ic*isc*ip*in*", "usb:v13FDp3940d0150dc00dsc00dp00ic08isc06ip50in00", true},
		{"usb:v13FDp3940d0[0-2]*dc*dsc*dp*ic*isc*ip*in*", "usb:v13FDp3940d0350dc00dsc00dp00ic08isc06ip50in00", false},
		{"usb:v152Dp0567d011[4-7]dc*dsc*dp*ic*isc*ip*in*", "usb:v152Dp0567d0116dc00dsc00dp00ic08isc06ip62in00", true},
		{"usb:v152Dp0567d011[4-7]dc*dsc*dp*ic*isc*ip*in*", "usb:v152Dp0567d0118dc00dsc00dp00ic08isc06ip62in00", false},
		{"mdio:0000000000100010010101100001????", "mdio:00000000001000100101011000010110", true},
		{"mdio:0000000000100010010101100001????", "mdio:0000000000100010010101100001011", false},
		// fnmatch corners
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "a/b", true}, // no FNM_PATHNAME
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbY", false},
		{"a*", "b", false},
		{"*a", "bba", true},
		{"**a", "ba", true},
		{"?", "", false},
		{"[!a]", "b", true},
		{"[!a]", "a", false},
		{"[^a]", "b", true},
		{"[]a]", "]", true},
		{"[]a]", "a", true},
		{"[a-]", "-", true},
		{"[abc", "[abc", true}, // unclosed: literal
		{"[abc", "a", false},
		{"\\*", "*", true},
		{"\\*", "a", false},
		{"a\\", "a\\", true},
		{"[[:digit:]]x", "7x", true},
		{"[[:digit:]]x", "ax", false},
		{"[[:upper:][:digit:]]", "Q", true},
		{"[[:xdigit:]]", "f", true},
		{"[\\]]", "]", true},
		{"[a-c]", "d", false},
	}
	for _, tt := range tests {
		if got := match(tt.pattern, tt.name); got != tt.want {
			t.Errorf("match(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestAliasIndex(t *testing.T) {
	x := newAliasIndex([]aliasEntry{
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "virtio_pci"},
		{"virtio:d00000002v*", "virtio_blk"},
		{"virtio:d00000001v*", "virtio_net"},
		{"pci:v*d*sv*sd*bc01sc08i02*", "nvme"},
		{"pci:v0000106Bd00002005sv*sd*bc*sc*i*", "nvme"},
		{"crc32c", "crc32c_intel"},
		{"crc32c", "crc32c_generic"},
		{"crypto-crc32c", "crc32c_generic"},
		{"*", "catch_all"},
	})
	tests := []struct {
		name string
		want []string
	}{
		{"virtio:d00000002v00001AF4", []string{"virtio_blk", "catch_all"}},
		{"pci:v00001AF4d00001042sv00001AF4sd00001042bc01sc80i00", []string{"virtio_pci", "catch_all"}},
		{"pci:v0000106Bd00002005sv00000000sd00000000bc01sc08i02", []string{"nvme", "catch_all"}},
		{"crc32c", []string{"crc32c_intel", "crc32c_generic", "catch_all"}},
		{"crc32", []string{"catch_all"}},
	}
	for _, tt := range tests {
		if got := x.lookup(tt.name); !slices.Equal(got, tt.want) {
			t.Errorf("lookup(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
	var nilIndex *aliasIndex
	if got := nilIndex.lookup("x"); got != nil {
		t.Errorf("nil index lookup = %v", got)
	}
}

// TestAliasIndexAgreesWithScan checks the prefix index against trying every
// alias of the real kernel, for real and made-up modaliases.
func TestAliasIndexAgreesWithScan(t *testing.T) {
	ix := realIndex(t)
	var entries []aliasEntry
	for _, m := range ix.Modules() {
		for _, a := range m.Aliases {
			entries = append(entries, aliasEntry{a, m.Name})
		}
	}
	x := newAliasIndex(entries)
	names := []string{
		"pci:v00001AF4d00001042sv00001AF4sd00001042bc01sc80i00",
		"pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00",
		"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
		"virtio:d00000002v00001AF4",
		"usb:v13FDp3940d0150dc00dsc00dp00ic08isc06ip50in00",
		"acpi:QEMU0002:",
		"cpu:type:x86,ven0002fam0019mod0011:feature:,0000,0093,0094,0095",
		"fs-ext4", "crc32c", "platform:serial8250", "nothing:at:all",
	}
	for _, n := range names {
		var want []string
		seen := map[string]bool{}
		for _, e := range entries {
			if match(e.pattern, n) && !seen[e.module] {
				seen[e.module] = true
				want = append(want, e.module)
			}
		}
		if got := x.lookup(n); !slices.Equal(got, want) {
			t.Errorf("lookup(%q) = %v, scan says %v", n, got, want)
		}
	}
}

func BenchmarkAliasLookup(b *testing.B) {
	ix := realIndex(b)
	b.ResetTimer()
	for b.Loop() {
		ix.aliases.lookup("pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00")
	}
}
