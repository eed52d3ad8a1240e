package imageinfo

import (
	"testing"

	"github.com/slateos/slate/configs"
)

// TestServicesAsBefore pins the services of image.json in the spec's form,
// byte for byte as images built before PID 1 had its own service model
// (supervisor.Service) carried them: an image of the same spec stays
// byte-identical, and PID 1 converts them on the machine.
func TestServicesAsBefore(t *testing.T) {
	spec, err := configs.Parse([]byte(goldenSpec), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Marshal(spec, "6.1.0-test")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != golden {
		t.Errorf("image.json changed:\n%s\nwant\n%s", b, golden)
	}
}

const goldenSpec = "name: sys\nversion: 2.0.0\nnetwork: {dhcp: true}\nusers:\n- {name: web, uid: 1000}\nservices:\n" +
	"- {name: a, command: /usr/bin/a, args: [x, y], env: {K: v}, restart: always, type: simple, user: web, working_directory: /srv, environment_file: [-/etc/a], after: [b], requires: [b]}\n" +
	"- {name: b, command: /usr/bin/b, type: oneshot}\n"

const golden = `{
  "hostname": "sys",
  "kernel_version": "6.1.0-test",
  "name": "sys",
  "network": {
    "dhcp": true
  },
  "services": [
    {
      "name": "a",
      "command": "/usr/bin/a",
      "args": [
        "x",
        "y"
      ],
      "env": {
        "K": "v"
      },
      "restart": "always",
      "type": "simple",
      "user": "web",
      "working_directory": "/srv",
      "environment_file": [
        "-/etc/a"
      ],
      "after": [
        "b"
      ],
      "requires": [
        "b"
      ]
    },
    {
      "name": "b",
      "command": "/usr/bin/b",
      "restart": "on-failure",
      "type": "oneshot"
    }
  ],
  "version": "2.0.0"
}
`
