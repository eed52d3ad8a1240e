package cnet

import (
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// TestMain checks that the tests leave the namespace they started in as
// they found it: its links, addresses, nftables tables and ip_forward.
// Every goroutine that is not locked to a thread of a test namespace runs
// here, and such threads are never reused.
func TestMain(m *testing.M) {
	before, err := snapshot()
	code := m.Run()
	if err == nil && os.Geteuid() == 0 {
		after, err := snapshot()
		if err != nil || !slices.Equal(before, after) {
			fmt.Fprintf(os.Stderr, "the tests changed the network namespace they run in:\nbefore %q\nafter  %q (%v)\n", before, after, err)
			code = 1
		}
	}
	os.Exit(code)
}

func snapshot() ([]string, error) {
	var out []string
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		out = append(out, "link "+l.Attrs().Name)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		out = append(out, "addr "+a.IPNet.String())
	}
	if c, err := nftables.New(); err == nil {
		tables, err := c.ListTables()
		if err != nil {
			return nil, err
		}
		for _, t := range tables {
			out = append(out, fmt.Sprintf("table %d %s", t.Family, t.Name))
		}
	}
	b, err := os.ReadFile(ipForward)
	if err != nil {
		return nil, err
	}
	return append(out, "ip_forward "+string(b)), nil
}
