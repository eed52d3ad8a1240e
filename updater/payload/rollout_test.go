package payload

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseRolloutSpec(t *testing.T) {
	h := time.Hour
	tests := []struct {
		in   string
		want []Wave
		err  string
	}{
		{in: "10%:0h,50%:24h,100%:72h", want: []Wave{{10, 0}, {50, 24 * h}, {100, 72 * h}}},
		{in: "100%:0h", want: []Wave{{100, 0}}},
		{in: " 34%:0h , 100%:1h ", want: []Wave{{34, 0}, {100, h}}},
		{in: "5%:30m,100%:1h30m", want: []Wave{{5, 30 * time.Minute}, {100, 90 * time.Minute}}},
		{in: "50%:0,100%:10s", want: []Wave{{50, 0}, {100, 10 * time.Second}}},
		{in: "", err: "empty"},
		{in: "50%:0h", err: "wave 1: the last wave's share must be 100%"},
		{in: "50%:0h,40%:1h,100%:2h", err: "wave 2: share 40% must be more than wave 1's 50%"},
		{in: "50%:2h,100%:1h", err: "wave 2: after 1h must be later than wave 1's 2h"},
		{in: "50%:1h,100%:1h", err: "wave 2: after 1h must be later"},
		{in: "0%:0h,100%:1h", err: "wave 1: share 0% is out of range"},
		{in: "101%:0h", err: "out of range"},
		{in: "50:0h,100%:1h", err: "wave 1: share \"50\" must end in %"},
		{in: "50%,100%:1h", err: "wave 1: \"50%\" is not SHARE%:AFTER"},
		{in: "x%:0h,100%:1h", err: "not a whole percentage"},
		{in: "+5%:0h,100%:1h", err: "not a whole percentage"},
		{in: "50%:-1h,100%:1h", err: "wave 1: after \"-1h\" is negative"},
		{in: "50%:1d,100%:2d", err: "not a duration"},
		{in: "50%:1,100%:2h", err: "wave 1: after \"1\" is not a duration"},
		{in: "50%:1ms,100%:2h", err: "not a whole number of seconds"},
		{in: "100%:9000h", err: "out of range"},
		{in: strings.Repeat("1%:0h,", 17) + "100%:1h", err: "at most 16"},
		{in: strings.Repeat("x", 2000), err: "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRolloutSpec(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			again, err := ParseRolloutSpec(FormatRolloutSpec(got))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("%q does not round-trip: %v %v", FormatRolloutSpec(got), again, err)
			}
		})
	}
}

func FuzzParseRolloutSpec(f *testing.F) {
	for _, s := range []string{"10%:0h,50%:24h,100%:72h", "100%:0h", "34%:0h,100%:1h", "1%:1s,100%:8784h", "50%:1.5h,100%:2h", "%:,", "50%:-0h,100%:1h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseRolloutSpec(s)
		if err != nil {
			return
		}
		if err := ValidateWaves(w); err != nil {
			t.Fatalf("accepted %q with invalid waves: %v", s, err)
		}
		again, err := ParseRolloutSpec(FormatRolloutSpec(w))
		if err != nil || !reflect.DeepEqual(again, w) {
			t.Fatalf("%q: formatted %q does not round-trip: %v", s, FormatRolloutSpec(w), err)
		}
		// Every place in [0,1) is in some wave.
		r := Rollout{Waves: w}
		for _, p := range []float64{0, 0.0099, 0.5, 0.999999} {
			if i := r.WaveOf(p); i < 0 || i >= len(w) || p*100 >= float64(w[i].Share) {
				t.Fatalf("place %v in wave %d of %v", p, i, w)
			}
		}
	})
}

// topWithRollout is a valid top manifest carrying a rollout.
func topWithRollout() *Manifest {
	m, err := ParseManifest(baseManifestJSON())
	if err != nil {
		panic(err)
	}
	pub := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	m.Published, m.Expires = pub, pub.Add(DefaultExpiry)
	m.Rollout = &Rollout{Waves: []Wave{{10, 0}, {50, 24 * time.Hour}, {100, 72 * time.Hour}}, Start: pub.Add(-time.Hour), Paused: true, PausedAt: pub}
	return m
}

func baseManifestJSON() []byte {
	b, err := json.Marshal(baseManifest())
	if err != nil {
		panic(err)
	}
	return b
}

// The rollout is inside the signed bytes: it survives the envelope, and
// changing it breaks the signature.
func TestRolloutInEnvelope(t *testing.T) {
	pub, key := testKeys(t)
	m := topWithRollout()
	data := m.Marshal()
	if !bytes.Contains(data, []byte(`"rollout": {`)) || !bytes.Contains(data, []byte(`"after": "72h"`)) {
		t.Fatalf("marshalled:\n%s", data)
	}
	env := SignEnvelope(data, key)
	got, err := OpenEnvelope([]ed25519.PublicKey{pub}, env)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Rollout, m.Rollout) {
		t.Fatalf("rollout %+v, want %+v", got.Rollout, m.Rollout)
	}
	for _, tamper := range [][2]string{
		{`"share": 10`, `"share": 90`},
		{`"after": "72h"`, `"after": "0h"`},
		{`"paused": true`, `"paused": false`},
	} {
		// the signed bytes are inline in the envelope: change them and
		// keep the signatures
		forged := bytes.Replace(env, []byte(tamper[0]), []byte(tamper[1]), 1)
		if bytes.Equal(forged, env) {
			t.Fatalf("%q not found", tamper[0])
		}
		if _, err := OpenEnvelope([]ed25519.PublicKey{pub}, forged); !errors.Is(err, ErrSignatureMismatch) && !errors.Is(err, ErrUntrusted) {
			t.Errorf("tampered %s: err = %v, want a signature error", tamper[0], err)
		}
	}
}

func TestParseManifestRollout(t *testing.T) {
	good := string(topWithRollout().Marshal())
	tests := []struct {
		name, from, to, want string
	}{
		{"unknown field", `"paused": true`, `"paused": true, "x": 1`, "$.rollout.x: unknown field"},
		{"wave unknown field", `"share": 10,`, `"share": 10, "y": 2,`, "$.rollout.waves[0].y: unknown field"},
		{"share string", `"share": 10`, `"share": "10"`, "$.rollout.waves[0].share: must be a number"},
		{"share fraction", `"share": 10`, `"share": 10.5`, "$.rollout.waves[0].share: must be a whole number"},
		{"share zero", `"share": 10`, `"share": 0`, "$.rollout.waves[0].share: must be a percentage"},
		{"share order", `"share": 50`, `"share": 5`, "$.rollout.waves: wave 2: share 5% must be more"},
		{"bad after", `"after": "24h"`, `"after": "1 day"`, "$.rollout.waves[1].after: after \"1 day\" is not a duration"},
		{"negative after", `"after": "0h"`, `"after": "-1h"`, "$.rollout.waves[0].after: after \"-1h\" is negative"},
		{"after null", `"after": "0h"`, `"after": null`, "$.rollout.waves[0].after: must not be null"},
		{"no start", `"start": "2026-12-01T09:00:00Z",`, ``, "$.rollout.start: required field is missing"},
		{"start after published", `"start": "2026-12-01T09:00:00Z"`, `"start": "2026-12-02T09:00:00Z"`, "$.rollout.start: must not be after published"},
		{"paused not bool", `"paused": true`, `"paused": 1`, "$.rollout.paused: must be true or false"},
		{"paused without time", `,
    "paused_at": "2026-12-01T10:00:00Z"`, ``, "$.rollout.paused_at: required field is missing"},
		{"time without pause", `"paused": true`, `"paused": false`, "$.rollout.paused_at: only allowed while paused"},
		{"duplicate", `"paused": true`, `"paused": true, "paused": true`, "$.rollout.paused: field appears more than once"},
		{"too many waves", `"waves": [`, `"waves": [` + strings.Repeat(`{"share": 1, "after": "0h"}, `, 16), "$.rollout.waves: more than 16 waves"},
		{"rollout in a version manifest", `"published": "2026-12-01T10:00:00Z",`, ``, "$.rollout: only a channel's top manifest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Replace(good, tc.from, tc.to, 1)
			if in == good {
				t.Fatalf("%q not in\n%s", tc.from, good)
			}
			_, err := ParseManifest([]byte(in))
			var fe *FieldError
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &fe) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// whole rollout values
	for _, tc := range []struct{ rollout, want string }{
		{`null`, "$.rollout: must not be null"},
		{`[]`, "$.rollout: must be an object"},
		{`{"start": "2026-12-01T09:00:00Z", "waves": {}}`, "$.rollout.waves: must be an array"},
		{`{"start": "2026-12-01T09:00:00Z", "waves": []}`, "$.rollout.waves: no waves"},
		{`{"start": "2026-12-01T09:00:00Z", "waves": [{"share": 100}]}`, "$.rollout.waves[0].after: required field is missing"},
		{`{"start": "yesterday", "waves": [{"share": 100, "after": "0h"}]}`, "$.rollout.start: \"yesterday\" is not an RFC 3339 time"},
		{`{"start": "2026-12-01T09:00:00Z", "waves": [{"share": 100, "after": "0h"}], "paused": true, "paused_at": "2026-12-03T00:00:00Z"}`, "$.rollout.paused_at: must not be after published"},
	} {
		m := baseManifest()
		m["published"], m["expires"] = "2026-12-01T10:00:00Z", "2026-12-08T10:00:00Z"
		m["rollout"] = json.RawMessage(tc.rollout)
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseManifest(data); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("rollout %s: err = %v, want %q", tc.rollout, err, tc.want)
		}
	}
}

// slate channel rollout|pause|resume: each re-signs the top, keeps the
// envelope valid and the waves' start, and refuses a key that does not
// verify (changing nothing).
func TestRolloutPauseResume(t *testing.T) {
	pub, k := testKeys(t)
	_, other := testKeys(t)
	ch := t.TempDir()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	start := now
	clock := func() time.Time { return now }
	waves, _ := ParseRolloutSpec("10%:0h,100%:24h")
	first, err := publishSmall(t, ch, "demo", "1.0.0", PublishOptions{Keys: keysOf(k), Now: clock, Rollout: waves})
	if err != nil {
		t.Fatal(err)
	}
	want := &Rollout{Waves: waves, Start: start}
	if !reflect.DeepEqual(first.Rollout, want) || !reflect.DeepEqual(readTop(t, ch, pub).Rollout, want) {
		t.Fatalf("published rollout %+v, want %+v", first.Rollout, want)
	}
	if v := readVersionManifest(t, ch, "1.0.0", pub); v.Rollout != nil {
		t.Errorf("the version folder's manifest has a rollout: %+v", v.Rollout)
	}

	steps := []struct {
		name string
		do   func(PublishOptions) (*Manifest, error)
		want Rollout
	}{
		{"rollout", func(o PublishOptions) (*Manifest, error) {
			w, _ := ParseRolloutSpec("34%:0h,100%:1h")
			return SetRollout(ch, w, o)
		}, Rollout{Waves: []Wave{{34, 0}, {100, time.Hour}}, Start: start}},
		{"pause", func(o PublishOptions) (*Manifest, error) { return Pause(ch, o) },
			Rollout{Waves: []Wave{{34, 0}, {100, time.Hour}}, Start: start, Paused: true, PausedAt: start.Add(2 * time.Minute)}},
		{"pause again", func(o PublishOptions) (*Manifest, error) { return Pause(ch, o) },
			Rollout{Waves: []Wave{{34, 0}, {100, time.Hour}}, Start: start, Paused: true, PausedAt: start.Add(2 * time.Minute)}},
		{"refresh", func(o PublishOptions) (*Manifest, error) { return Refresh(ch, o) },
			Rollout{Waves: []Wave{{34, 0}, {100, time.Hour}}, Start: start, Paused: true, PausedAt: start.Add(2 * time.Minute)}},
		{"resume", func(o PublishOptions) (*Manifest, error) { return Resume(ch, o) },
			Rollout{Waves: []Wave{{34, 0}, {100, time.Hour}}, Start: start}},
	}
	for _, s := range steps {
		now = now.Add(time.Minute)
		before := snapshot(t, ch)
		if _, err := s.do(PublishOptions{Keys: keysOf(other), Now: clock}); err == nil || !strings.Contains(err.Error(), "does not verify") {
			t.Fatalf("%s with another key: %v", s.name, err)
		}
		if snapshot(t, ch) != before {
			t.Fatalf("a refused %s changed the channel", s.name)
		}
		m, err := s.do(PublishOptions{Keys: keysOf(k), Now: clock})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		top := readTop(t, ch, pub)
		if !reflect.DeepEqual(*top.Rollout, s.want) || !reflect.DeepEqual(m.Rollout, top.Rollout) {
			t.Fatalf("after %s: %+v, want %+v", s.name, top.Rollout, s.want)
		}
		if !top.Published.Equal(now) || top.Version != "1.0.0" {
			t.Errorf("after %s: published %s version %s", s.name, top.Published, top.Version)
		}
	}

	// A pause stays across a new version; the new one's waves start
	// with its publishing.
	if _, err := Pause(ch, PublishOptions{Keys: keysOf(k), Now: clock}); err != nil {
		t.Fatal(err)
	}
	pausedAt := readTop(t, ch, pub).Published
	now = now.Add(time.Hour)
	m, err := publishSmall(t, ch, "demo", "1.1.0", PublishOptions{Keys: keysOf(k), Now: clock, Rollout: waves})
	if err != nil {
		t.Fatal(err)
	}
	want = &Rollout{Waves: waves, Start: now, Paused: true, PausedAt: pausedAt}
	if !reflect.DeepEqual(m.Rollout, want) {
		t.Fatalf("new version while paused: %+v, want %+v", m.Rollout, want)
	}
	// Without --rollout a new version goes to all at once (still paused).
	now = now.Add(time.Hour)
	m, err = publishSmall(t, ch, "demo", "1.2.0", PublishOptions{Keys: keysOf(k), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if m.Rollout == nil || !m.Rollout.Paused || !reflect.DeepEqual(m.Rollout.Waves, AllAtOnce) {
		t.Fatalf("new version without waves while paused: %+v", m.Rollout)
	}
	if m, err = Resume(ch, PublishOptions{Keys: keysOf(k), Now: clock}); err != nil || m.Rollout.Paused {
		t.Fatalf("resume: %+v %v", m, err)
	}
	now = now.Add(time.Hour)
	if m, err = publishSmall(t, ch, "demo", "1.3.0", PublishOptions{Keys: keysOf(k), Now: clock}); err != nil || m.Rollout != nil {
		t.Fatalf("new version, not paused, no waves: %+v %v", m, err)
	}
	// Bad waves are refused before the channel is touched.
	before := snapshot(t, ch)
	if _, err := SetRollout(ch, []Wave{{50, 0}}, PublishOptions{Keys: keysOf(k), Now: clock}); err == nil || !strings.Contains(err.Error(), "last wave") {
		t.Errorf("bad waves: %v", err)
	}
	if _, err := publishSmall(t, ch, "demo", "1.4.0", PublishOptions{Keys: keysOf(k), Now: clock, Rollout: []Wave{}}); err == nil || !strings.Contains(err.Error(), "rollout: no waves") {
		t.Errorf("empty waves: %v", err)
	}
	if snapshot(t, ch) != before {
		t.Error("refused waves changed the channel")
	}
}

func readVersionManifest(t *testing.T, ch, version string, pub ed25519.PublicKey) *Manifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(ch, version, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenEnvelope([]ed25519.PublicKey{pub}, data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A top manifest without a rollout does not record when its version was
// first published: slate channel rollout (and pause) on it count the
// waves from its last signing, the last publish or refresh, as the README
// says; never from the moment the waves are set.
func TestSetRolloutWithoutRolloutStartsAtLastSigning(t *testing.T) {
	pub, k := testKeys(t)
	ch := t.TempDir()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	o := PublishOptions{Keys: keysOf(k), Now: clock}
	if _, err := publishSmall(t, ch, "demo", "1.0.0", o); err != nil {
		t.Fatal(err)
	}
	now = now.Add(6 * time.Hour)
	refreshed := now
	if _, err := Refresh(ch, o); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	waves, _ := ParseRolloutSpec("10%:0h,100%:24h")
	m, err := SetRollout(ch, waves, o)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Rollout.Start.Equal(refreshed) || !readTop(t, ch, pub).Rollout.Start.Equal(refreshed) {
		t.Errorf("start %s, want the last refresh %s", m.Rollout.Start, refreshed)
	}
}
