package stage1

import (
	"time"

	"github.com/sirupsen/logrus"
)

// processStart is set when the package is initialised, before main runs.
var processStart = time.Now()

// Main runs init. It does not return: it either execs /sbin/init of the
// slot's root, or reports the failure and reboots (or waits, with
// slate.debug) so boot counting can do its work.
func Main() {
	b := &boot{sys: linuxSys{}, start: time.Now(), procStart: processStart, logSetup: productionLog, ramLimit: ramRootLimit}
	if b.failed(b.run()) {
		logrus.Error("slate.debug is set: waiting instead of rebooting")
		for {
			time.Sleep(time.Hour)
		}
	}
	logrus.Error("rebooting in 5 s")
	time.Sleep(5 * time.Second)
	_ = b.sys.Reboot()
	for {
		time.Sleep(time.Hour)
	}
}
