package pid1

import (
	"bytes"
	"testing"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/bootlog"
	"github.com/slateos/slate/internal/imageinfo"
)

// Only the paths that touch no network are tested here (internal/run/cnet
// tests the set-up itself in namespaces of its own): an image without a
// bridge container prints nothing, and one whose description is wrong
// reports it on the console without stopping the boot.
func TestSetupContainerNetworkReports(t *testing.T) {
	var con bytes.Buffer
	bootlog.SetEvents(&con)
	t.Cleanup(func() { bootlog.SetEvents(nil) })

	hostOnly := &imageinfo.Info{Containers: []imageinfo.Container{{Container: configs.Container{Name: "h", Network: configs.NetworkHost}}}}
	setupContainerNetwork(hostOnly, t.TempDir())
	setupContainerNetwork(&imageinfo.Info{}, t.TempDir())
	if con.Len() != 0 {
		t.Errorf("no bridge container, yet the console got %q", con.String())
	}

	bad := &imageinfo.Info{
		Network:    configs.Network{ContainerSubnet: "10.88.0.0/31"},
		Containers: []imageinfo.Container{{Container: configs.Container{Name: "web"}, Address: "10.88.0.2/16", Gateway: "10.88.0.1"}},
	}
	setupContainerNetwork(bad, t.TempDir())
	want := "SLATE-BRIDGE iface=slate0 err=\"network.container_subnet: container subnet 10.88.0.0/31 is too small for a bridge and a container\"\n"
	if con.String() != want {
		t.Errorf("console:\n got %q\nwant %q", con.String(), want)
	}
}
