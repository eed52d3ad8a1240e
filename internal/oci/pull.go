package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sirupsen/logrus"
)

// Bounds on what a registry may send.
const (
	maxManifestBytes = 4 << 20
	maxConfigBytes   = 8 << 20
	maxLayers        = 256
	// maxLayerBytes bounds one compressed layer (its descriptor's size).
	maxLayerBytes = 16 << 30
)

// PullOptions says where to cache and how to reach the registry.
type PullOptions struct {
	// CacheDir holds the content-addressed cache ($SLATE_CACHE/oci).
	CacheDir string
	// Insecure allows plain http to the image's registry (its host and
	// port only). Without it, the registry is reached over https, an RFC
	// 1918 address or a *.local name too, and http is used only for a
	// loopback registry (localhost, 127.0.0.0/8, ::1) that does not
	// answer https. Every other host (token servers, blob redirects) is
	// https either way.
	Insecure bool
	// Offline makes no network request at all: a tag is resolved to the
	// digest it resolved to last time (recorded in the cache), and every
	// blob must be cached.
	Offline bool
	// Keychain gives credentials; nil is authn.DefaultKeychain
	// (~/.docker/config.json, $DOCKER_CONFIG).
	Keychain authn.Keychain
	// Transport is the HTTP transport (tests); nil is ggcr's default.
	Transport http.RoundTripper
	// Log receives a line per blob fetched (Info) or found in the cache
	// (Debug); nil is logrus' standard logger.
	Log logrus.FieldLogger
}

// Image is a pulled image: every blob it needs is in the cache, verified.
type Image struct {
	// Ref is the reference as given, Name its canonical form
	// ("index.docker.io/library/alpine:3.20").
	Ref, Name string
	// Digest is what the reference resolves to (the digest a spec pins:
	// an index's when the registry serves an index); Manifest is the
	// linux/amd64 image manifest's digest (equal to Digest without an
	// index).
	Digest, Manifest string
	Config           ImageConfig

	layers  []layer
	diffIDs []string
	cache   *cache
}

type layer struct {
	digest string
	size   int64
}

// Pull resolves ref and makes sure the manifest, the config blob and every
// layer blob are in the cache with the right digests, fetching what is
// missing.
//
// Network use: a reference pinned by digest whose blobs are all cached
// makes no request at all. A tag always costs a registry ping (GET /v2/,
// plus the token exchange the registry asks for) and one manifest HEAD
// (a GET if the registry does not answer HEAD with a digest), since only
// the registry knows what the tag names now; PullOptions.Offline uses the
// digest the tag resolved to last time instead.
func Pull(ctx context.Context, ref string, opts PullOptions) (*Image, error) {
	if opts.CacheDir == "" {
		return nil, errors.New("pull: no cache folder")
	}
	var nopts []name.Option
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", ref, err)
	}
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	p := &puller{ctx: ctx, ref: r, opts: opts, cache: &cache{dir: opts.CacheDir}, log: opts.Log.WithField("image", ref)}
	img, err := p.pull()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	img.Ref = ref
	return img, nil
}

type puller struct {
	ctx   context.Context
	ref   name.Reference
	opts  PullOptions
	cache *cache

	client *http.Client // made on first use
	log    logrus.FieldLogger
}

func (p *puller) pull() (*Image, error) {
	digest, pinned := "", false
	if d, ok := p.ref.(name.Digest); ok {
		digest, pinned = d.DigestStr(), true
		if _, err := checkDigest(digest); err != nil {
			return nil, err
		}
	} else if p.opts.Offline {
		d, err := p.cache.tag(p.ref.Name())
		if err != nil {
			return nil, fmt.Errorf("offline, and the tag was never resolved before (%w)", err)
		}
		digest = d
	} else {
		d, err := p.resolveTag()
		if err != nil {
			return nil, err
		}
		digest = d
	}

	top, err := p.manifest(digest, pinned)
	if err != nil {
		return nil, err
	}
	img := &Image{Name: p.ref.Name(), Digest: digest, Manifest: digest, cache: p.cache}
	m, err := parseTop(top)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", digest, err)
	}
	if m.index != nil {
		child, err := pickPlatform(m.index)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", digest, err)
		}
		b, err := p.manifest(child, true)
		if err != nil {
			return nil, err
		}
		if m, err = parseTop(b); err != nil || m.image == nil {
			if err == nil {
				err = errors.New("an index, not an image manifest")
			}
			return nil, fmt.Errorf("manifest %s (linux/amd64 of index %s): %w", child, digest, err)
		}
		img.Manifest = child
	}
	mf := m.image
	if len(mf.Layers) > maxLayers {
		return nil, fmt.Errorf("manifest %s: %d layers, more than %d", img.Manifest, len(mf.Layers), maxLayers)
	}

	cfgDigest := mf.Config.Digest.String()
	if mt := mf.Config.MediaType; mt != types.OCIConfigJSON && mt != types.DockerConfigJSON {
		return nil, fmt.Errorf("manifest %s: config media type %q: not a container image", img.Manifest, mt)
	}
	if mf.Config.Size < 0 || mf.Config.Size > maxConfigBytes {
		return nil, fmt.Errorf("config %s: size %d out of bounds", cfgDigest, mf.Config.Size)
	}
	if err := p.blob(cfgDigest, mf.Config.Size, "config"); err != nil {
		return nil, err
	}
	cfgBytes, err := p.cache.read(cfgDigest, maxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", cfgDigest, err)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(cfgBytes))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", cfgDigest, err)
	}
	if (cf.OS != "" && cf.OS != PlatformOS) || (cf.Architecture != "" && cf.Architecture != PlatformArchitecture) {
		return nil, fmt.Errorf("config %s: the image is for %s/%s, not %s/%s", cfgDigest, cf.OS, cf.Architecture, PlatformOS, PlatformArchitecture)
	}
	img.Config = imageConfig(cf)
	for _, d := range cf.RootFS.DiffIDs {
		img.diffIDs = append(img.diffIDs, d.String())
	}
	if len(img.diffIDs) != len(mf.Layers) {
		return nil, fmt.Errorf("config %s: %d diff_ids for %d layers", cfgDigest, len(img.diffIDs), len(mf.Layers))
	}
	for i, l := range mf.Layers {
		d := l.Digest.String()
		if l.Size < 0 || l.Size > maxLayerBytes {
			return nil, fmt.Errorf("layer %d (%s): size %d out of bounds", i, d, l.Size)
		}
		if !layerMediaType(l.MediaType) {
			return nil, fmt.Errorf("layer %d (%s): media type %q is no layer slate can unpack", i, d, l.MediaType)
		}
		if err := p.blob(d, l.Size, fmt.Sprintf("layer %d", i)); err != nil {
			return nil, err
		}
		img.layers = append(img.layers, layer{digest: d, size: l.Size})
	}
	if !pinned && !p.opts.Offline {
		if err := p.cache.setTag(p.ref.Name(), digest); err != nil {
			return nil, err
		}
	}
	return img, nil
}

func layerMediaType(mt types.MediaType) bool {
	switch mt {
	case types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer, types.DockerLayer, types.DockerUncompressedLayer:
		return true
	}
	return false
}

func imageConfig(cf *v1.ConfigFile) ImageConfig {
	c := cf.Config
	ic := ImageConfig{
		Entrypoint: slices.Clone(c.Entrypoint), Cmd: slices.Clone(c.Cmd), Env: slices.Clone(c.Env),
		User: c.User, WorkingDir: c.WorkingDir, StopSignal: c.StopSignal,
	}
	for port := range c.ExposedPorts {
		ic.ExposedPorts = append(ic.ExposedPorts, port)
	}
	slices.Sort(ic.ExposedPorts)
	return ic
}

type topManifest struct {
	index *v1.IndexManifest
	image *v1.Manifest
}

// parseTop tells an index from an image manifest by its mediaType (and,
// for old Docker manifests without one, by which list it has).
func parseTop(b []byte) (topManifest, error) {
	var probe struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     types.MediaType `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
		Layers        json.RawMessage `json:"layers"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return topManifest{}, err
	}
	if probe.SchemaVersion != 2 {
		return topManifest{}, fmt.Errorf("schemaVersion %d (only 2 is supported)", probe.SchemaVersion)
	}
	switch {
	case probe.MediaType == types.OCIImageIndex || probe.MediaType == types.DockerManifestList ||
		(probe.MediaType == "" && probe.Manifests != nil):
		ix, err := v1.ParseIndexManifest(bytes.NewReader(b))
		if err != nil {
			return topManifest{}, err
		}
		return topManifest{index: ix}, nil
	case probe.MediaType == types.OCIManifestSchema1 || probe.MediaType == types.DockerManifestSchema2 ||
		(probe.MediaType == "" && probe.Layers != nil):
		mf, err := v1.ParseManifest(bytes.NewReader(b))
		if err != nil {
			return topManifest{}, err
		}
		return topManifest{image: mf}, nil
	}
	return topManifest{}, fmt.Errorf("media type %q is no image manifest or index", probe.MediaType)
}

// pickPlatform chooses the linux/amd64 manifest of an index (the first
// one, as Docker does; attestation manifests have platform unknown).
func pickPlatform(ix *v1.IndexManifest) (string, error) {
	var seen []string
	for _, m := range ix.Manifests {
		if m.Platform == nil {
			continue
		}
		if m.Platform.OS == PlatformOS && m.Platform.Architecture == PlatformArchitecture {
			if _, err := checkDigest(m.Digest.String()); err != nil {
				return "", err
			}
			return m.Digest.String(), nil
		}
		seen = append(seen, m.Platform.OS+"/"+m.Platform.Architecture)
	}
	return "", fmt.Errorf("no %s/%s image (it has: %s)", PlatformOS, PlatformArchitecture, strings.Join(seen, ", "))
}

// manifestAccept is every manifest type slate reads.
var manifestAccept = strings.Join([]string{
	string(types.OCIImageIndex), string(types.OCIManifestSchema1),
	string(types.DockerManifestList), string(types.DockerManifestSchema2),
}, ",")

// manifest returns manifest d from the cache or the registry. pinned says
// d came from the reference or a verified parent (the wording of a
// mismatch differs only in what it blames).
func (p *puller) manifest(d string, pinned bool) ([]byte, error) {
	b, err := p.cache.read(d, maxManifestBytes)
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, errMiss) {
		return nil, err
	}
	if p.opts.Offline {
		return nil, fmt.Errorf("offline, and manifest %s is not in the cache", d)
	}
	resp, err := p.get(http.MethodGet, "manifests", d, manifestAccept)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d, err)
	}
	defer resp.Body.Close()
	if _, err := p.cache.put(d, -1, maxManifestBytes, resp.Body); err != nil {
		var mm *digestMismatch
		if errors.As(err, &mm) {
			what := "the tag resolved to"
			if pinned {
				what = "pinned"
			}
			return nil, fmt.Errorf("manifest digest mismatch: %s %s, the registry served %s", what, d, mm.got)
		}
		return nil, fmt.Errorf("manifest %s: %w", d, err)
	}
	return p.cache.read(d, maxManifestBytes)
}

// blob makes sure blob d (size bytes) is cached and intact.
func (p *puller) blob(d string, size int64, what string) error {
	_, err := p.cache.verify(d, size)
	if err == nil {
		p.log.Debugf("%s %s: cached", what, d)
		return nil
	}
	if !errors.Is(err, errMiss) {
		return fmt.Errorf("%s (%s): %w", what, d, err)
	}
	if p.opts.Offline {
		return fmt.Errorf("offline, and %s (%s) is not in the cache", what, d)
	}
	p.log.Infof("fetching %s %s (%d bytes)", what, d, size)
	resp, err := p.get(http.MethodGet, "blobs", d, "")
	if err != nil {
		return fmt.Errorf("%s (%s): %w", what, d, err)
	}
	defer resp.Body.Close()
	if _, err := p.cache.put(d, size, size, resp.Body); err != nil {
		var mm *digestMismatch
		if errors.As(err, &mm) {
			return fmt.Errorf("%s digest mismatch: the manifest says %s, the registry served %s", what, d, mm.got)
		}
		return fmt.Errorf("%s (%s): %w", what, d, err)
	}
	return nil
}

// resolveTag asks the registry which manifest the tag names now.
func (p *puller) resolveTag() (string, error) {
	resp, err := p.get(http.MethodHead, "manifests", p.ref.Identifier(), manifestAccept)
	if err == nil {
		resp.Body.Close()
		if d := resp.Header.Get("Docker-Content-Digest"); d != "" {
			if _, err := checkDigest(d); err != nil {
				return "", fmt.Errorf("tag %s: the registry's Docker-Content-Digest: %w", p.ref.Identifier(), err)
			}
			return d, nil
		}
	} else if isUnreachable(err) || isNotFound(err) {
		return "", err
	}
	// No digest from HEAD: hash what GET returns and keep it.
	resp, err = p.get(http.MethodGet, "manifests", p.ref.Identifier(), manifestAccept)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	hr := newHashingReader(io.LimitReader(resp.Body, maxManifestBytes+1))
	b, err := io.ReadAll(hr)
	if err != nil {
		return "", fmt.Errorf("tag %s: %w", p.ref.Identifier(), err)
	}
	if len(b) > maxManifestBytes {
		return "", fmt.Errorf("tag %s: manifest larger than %d bytes", p.ref.Identifier(), maxManifestBytes)
	}
	d := hr.digest()
	if _, err := p.cache.put(d, int64(len(b)), maxManifestBytes, bytes.NewReader(b)); err != nil {
		return "", err
	}
	return d, nil
}

// unreachableError is a registry that could not be connected to.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return "registry unreachable: " + e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

func isUnreachable(err error) bool {
	var u *unreachableError
	return errors.As(err, &u)
}

func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}

// get sends one registry request for the repository's kind ("manifests",
// "blobs") and id (a tag or a digest) and checks for a 200.
func (p *puller) get(method, kind, id, accept string) (*http.Response, error) {
	if p.client == nil {
		if err := p.connect(); err != nil {
			return nil, err
		}
	}
	repo := p.ref.Context()
	reg := repo.Registry
	u := fmt.Sprintf("%s://%s/v2/%s/%s/%s", registryScheme(reg, p.opts.Insecure), reg.RegistryStr(), repo.RepositoryStr(), kind, id)
	req, err := http.NewRequestWithContext(p.ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		if isNotFound(err) && kind == "manifests" {
			return nil, fmt.Errorf("not found in %s (%w)", repo.Name(), err)
		}
		return nil, err
	}
	return resp, nil
}

// connect pings the registry and sets up authentication (ggcr's
// transport: basic or bearer tokens, from the keychain).
func (p *puller) connect() error {
	kc := p.opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	repo := p.ref.Context()
	auth, err := authn.Resolve(p.ctx, kc, repo)
	if err != nil {
		return fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	base := p.opts.Transport
	if base == nil {
		base = remote.DefaultTransport
	}
	// Transient failures (a reset connection, 429, 5xx) are retried a
	// few times with backoff, as ggcr's remote does; a refused connection
	// is not transient and fails at once.
	base = transport.NewRetry(&schemeGuard{inner: base, registry: repo.RegistryStr(), insecure: p.opts.Insecure},
		transport.WithRetryBackoff(transport.Backoff{Duration: time.Second, Factor: 3, Jitter: 0.1, Steps: 3}),
		transport.WithRetryStatusCodes(http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout))
	t, err := transport.NewWithContext(p.ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		var ne net.Error
		var oe *net.OpError
		if errors.As(err, &oe) || errors.As(err, &ne) {
			return &unreachableError{err: err}
		}
		return fmt.Errorf("registry %s: %w", repo.RegistryStr(), err)
	}
	p.client = &http.Client{Transport: t}
	return nil
}

// registryScheme is the scheme of the URLs slate builds for the image's
// registry: https, unless the image is marked insecure or the registry is
// loopback (localhost, 127.0.0.0/8, ::1). Then it is http, and ggcr's
// ping decides: its transport switches requests to the registry to
// https when the registry answered that. reg.Scheme() is not used: it is
// also http for RFC 1918 addresses and *.local names, so an https
// registry there could not be used without marking it insecure.
func registryScheme(reg name.Registry, insecure bool) string {
	if insecure || loopbackHost(registryHostname(reg.RegistryStr())) {
		return "http"
	}
	return "https"
}

// registryHostname is the host of a registry's "host[:port]", without
// the port or the brackets of an IPv6 address.
func registryHostname(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

// schemeGuard refuses plain http except to the image's registry itself
// (registry, "host[:port]"), and to that only when it is loopback or the
// caller allowed it: a token realm or a redirect target on another host
// is https whatever the image says. ggcr itself also speaks http to RFC
// 1918 addresses and *.local names, which slate does not want without
// the spec saying so.
type schemeGuard struct {
	inner    http.RoundTripper
	registry string
	insecure bool
}

func (g *schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		return g.inner.RoundTrip(req)
	}
	if !sameHost(req.URL.Host, g.registry) {
		return nil, fmt.Errorf("plain http to %s refused: only the image's registry %s may be reached without TLS", req.URL.Host, g.registry)
	}
	if !g.insecure && !loopbackHost(req.URL.Hostname()) {
		return nil, fmt.Errorf("plain http to %s refused: not a loopback registry, and the image is not marked insecure", req.URL.Host)
	}
	return g.inner.RoundTrip(req)
}

// sameHost says whether a plain http URL's host is the registry's
// ("host" and "host:80" are the same).
func sameHost(urlHost, registry string) bool {
	return strings.TrimSuffix(urlHost, ":80") == strings.TrimSuffix(registry, ":80")
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
