package builder

import (
	"crypto/ed25519"
	"fmt"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/updater/payload"
)

// trustedKeyring is the image's /usr/lib/slate/update.pub: the spec's
// trusted public keys, parsed and written again as PEM, so whatever else
// the spec's key files held (a private key, above all) never reaches the
// root image, which is public.
func trustedKeyring(spec *configs.Spec) ([]byte, error) {
	keys, err := spec.ParsePublicKeys()
	if err != nil {
		return nil, err
	}
	ring, err := payload.MarshalPublicKeys(keys)
	if err != nil {
		return nil, fmt.Errorf("root: update.pub: %w", err)
	}
	return ring, nil
}

// loadSignKeys reads the SignKeys and checks the channel before the
// build starts, so a build that could not be published fails in seconds;
// Publish checks the channel again under its lock at the end.
func loadSignKeys(o Options, name string) ([]ed25519.PrivateKey, error) {
	if o.Channel == "" {
		if len(o.SignKeys) > 0 {
			return nil, &OptionError{Field: "SignKeys", Msg: "is for Options.Channel"}
		}
		return nil, nil
	}
	if len(o.SignKeys) == 0 {
		return nil, &OptionError{Field: "Channel", Msg: "needs Options.SignKeys, a private key to sign with (slate keygen writes one)"}
	}
	var keys []ed25519.PrivateKey
	var pubs []ed25519.PublicKey
	for _, p := range o.SignKeys {
		k, err := payload.LoadPrivateKey(p)
		if err != nil {
			return nil, &OptionError{Field: "SignKeys", Msg: p, Err: err}
		}
		keys = append(keys, k)
		pubs = append(pubs, k.Public().(ed25519.PublicKey))
	}
	if _, err := payload.CheckChannel(o.Channel, name, pubs, o.Force); err != nil {
		return nil, &OptionError{Field: "Channel", Msg: o.Channel, Err: err}
	}
	return keys, nil
}

// rolloutWaves parses Options.Rollout (nil when empty); it is checked
// before the build, so a typo fails in a second, not after the build.
func rolloutWaves(o Options) ([]payload.Wave, error) {
	if o.Rollout == "" {
		return nil, nil
	}
	if o.Channel == "" {
		return nil, &OptionError{Field: "Rollout", Msg: "is for Options.Channel"}
	}
	waves, err := payload.ParseRolloutSpec(o.Rollout)
	if err != nil {
		return nil, &OptionError{Field: "Rollout", Msg: "bad waves", Err: err}
	}
	return waves, nil
}
