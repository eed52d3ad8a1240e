package pid1

import (
	"net/netip"
	"time"

	"github.com/slateos/slate/internal/bootlog"
	"github.com/slateos/slate/internal/format/kmod"
	"github.com/slateos/slate/internal/imageinfo"
	"github.com/slateos/slate/internal/run/cnet"
)

// setupContainerNetwork sets up the host side of the containers' bridge
// network once, before the supervisor starts any container, when the
// image has a container on the bridge. It needs no uplink (the rules
// name no outside interface), so it does not wait for DHCP. A failure is
// reported and the boot goes on: services still start, and each bridge
// container's network hook then fails (no bridge), so the container
// fails to start with that reason rather than the whole machine.
func setupContainerNetwork(info *imageinfo.Info, modDir string) {
	h, ok, err := cnet.FromImage(info)
	if err == nil && !ok {
		return
	}
	if err == nil {
		h.Modules = &kmod.Loader{Dir: modDir, SysModule: "/sys/module"}
		t := time.Now()
		if err = cnet.SetupHost(h); err == nil {
			bootlog.Event("BRIDGE", "iface", h.Bridge, "addr", netip.PrefixFrom(h.Gateway, h.Subnet.Bits()).String(),
				"ports", len(h.Ports), "took", bootlog.Since(t))
			return
		}
	}
	bootlog.Event("BRIDGE", "iface", cnet.DefaultBridge, "err", err.Error())
}
