// Package payload defines slate's update payload: the ed25519 keys that sign
// it, the manifest that describes a version, the signed envelope that carries
// a manifest and its signatures in one file, the channel folder a static web
// server publishes, and the streaming reader that checks every byte of a
// downloaded file against the manifest before the updater writes it to a
// slot.
//
// A channel is a plain folder:
//
//	CHANNEL/manifest.json            envelope of the newest version's manifest,
//	                                 with published and expires
//	CHANNEL/<version>/manifest.json  envelope of the version's own manifest
//	                                 (paths inside are relative to CHANNEL)
//	CHANNEL/<version>/root.img.zst   root partition image, zstd
//	CHANNEL/<version>/vmlinuz        kernel, stored as is
//	CHANNEL/<version>/initrd.img     initramfs, stored as is
//	CHANNEL/.slate-channel.lock      the publishers' flock
//
// The trust chain is: public keys (baked into the running image) → a
// signature in the envelope → exact manifest bytes → size and sha256 of each
// file, both as stored and decompressed. The updater checks a signature
// before parsing (OpenEnvelope), the top manifest's freshness against what
// it has seen (CheckFresh), streams each file through a Verifier
// (OpenFile), usually on top of a fetch.ResumingReader, and trusts nothing it
// wrote until the Verifier has returned io.EOF. Publish and Refresh write
// the channel under the lock, each top manifest with one atomic rename.
package payload
