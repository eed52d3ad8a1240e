// Package payload defines slate's update payload: the ed25519 keys that sign
// it, the manifest that describes a version, the detached signature of that
// manifest, the channel folder a static web server publishes, and the
// streaming reader that checks every byte of a downloaded file against the
// manifest before the updater writes it to a slot.
//
// A channel is a plain folder:
//
//	CHANNEL/manifest.json            copy of the newest version's manifest
//	CHANNEL/manifest.json.sig        and its signature
//	CHANNEL/<version>/manifest.json  paths inside are relative to CHANNEL
//	CHANNEL/<version>/manifest.json.sig
//	CHANNEL/<version>/root.img.zst   root partition image, zstd
//	CHANNEL/<version>/vmlinuz        kernel, stored as is
//	CHANNEL/<version>/initrd.img     initramfs, stored as is
//
// The trust chain is: public key (baked into the image) → signature →
// exact manifest bytes → size and sha256 of each file, both as stored and
// decompressed. The updater checks the signature before parsing
// (OpenManifest), streams each file through a Verifier (OpenFile), usually on
// top of a ResumingReader, and trusts nothing it wrote until the Verifier has
// returned io.EOF.
package payload
