package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rollout waves: the channel's top manifest may say that a version reaches
// the fleet in steps. Each machine has a stable place in [0,1) for each
// version (the updater hashes its machine id with the version); wave i
// holds the machines whose place is below Waves[i].Share percent and not
// in an earlier wave, and opens Waves[i].After after Start. There is no
// server: the waves are part of the signed manifest, so a mirror cannot
// change them, and a publisher changes them by re-signing the top
// (slate channel rollout|pause|resume).

// Bounds of a rollout.
const (
	MaxWaves     = 16
	MaxWaveAfter = 366 * 24 * time.Hour
)

// Wave is one step of a rollout.
type Wave struct {
	// Share is the percentage of machines (1 to 100) that have the
	// version once this wave is open, this wave's and the earlier ones'
	// together; the last wave's is 100.
	Share int
	// After is how long after Rollout.Start the wave opens: whole
	// seconds, from 0 to MaxWaveAfter, growing from wave to wave.
	After time.Duration
}

// Rollout is the optional "rollout" of a channel's top manifest. A top
// manifest without one offers its version to every machine at once.
type Rollout struct {
	Waves []Wave // at least one, at most MaxWaves, see ValidateWaves
	// Start is when the waves count from: when the version was first
	// published into the top manifest. A refresh, a new rollout for the
	// same version, a pause or a resume keep it, so re-signing never
	// restarts the waves.
	Start time.Time
	// Paused stops every machine that has not begun to apply the version
	// (one already writing its idle slot goes on); PausedAt is when.
	Paused   bool
	PausedAt time.Time
}

// AllAtOnce is the rollout of a channel without one: every machine at once.
var AllAtOnce = []Wave{{Share: 100, After: 0}}

// WaveOf returns the index of the wave that holds place (0 <= place < 1).
func (r *Rollout) WaveOf(place float64) int {
	for i, w := range r.Waves {
		if place*100 < float64(w.Share) {
			return i
		}
	}
	return len(r.Waves) - 1
}

// Opens is when wave i opens.
func (r *Rollout) Opens(i int) time.Time { return r.Start.Add(r.Waves[i].After) }

// ValidateWaves checks a list of waves: 1 to MaxWaves of them, shares
// strictly growing from 1 to 100 and ending at 100, After in whole
// seconds, from 0 to MaxWaveAfter, strictly growing. Errors name the wave
// (1-based) as a person wrote it.
func ValidateWaves(waves []Wave) error {
	if len(waves) == 0 {
		return errors.New("no waves")
	}
	if len(waves) > MaxWaves {
		return fmt.Errorf("%d waves, at most %d", len(waves), MaxWaves)
	}
	for i, w := range waves {
		if w.Share < 1 || w.Share > 100 {
			return fmt.Errorf("wave %d: share %d%% is out of range (1%% to 100%%)", i+1, w.Share)
		}
		if w.After < 0 || w.After > MaxWaveAfter {
			return fmt.Errorf("wave %d: after %s is out of range (0 to %s)", i+1, w.After, formatAfter(MaxWaveAfter))
		}
		if w.After%time.Second != 0 {
			return fmt.Errorf("wave %d: after %s is not a whole number of seconds", i+1, w.After)
		}
		if i > 0 {
			p := waves[i-1]
			if w.Share <= p.Share {
				return fmt.Errorf("wave %d: share %d%% must be more than wave %d's %d%% (shares are cumulative)", i+1, w.Share, i, p.Share)
			}
			if w.After <= p.After {
				return fmt.Errorf("wave %d: after %s must be later than wave %d's %s", i+1, formatAfter(w.After), i, formatAfter(p.After))
			}
		}
	}
	if last := waves[len(waves)-1]; last.Share != 100 {
		return fmt.Errorf("wave %d: the last wave's share must be 100%%, got %d%% (the rest of the fleet would never update)", len(waves), last.Share)
	}
	return nil
}

// MaxRolloutSpec bounds the length of a rollout spec string.
const MaxRolloutSpec = 1024

// ParseRolloutSpec reads waves written as "10%:0h,50%:24h,100%:72h": each
// wave a share in percent, a colon, and a Go duration (24h, 30m, 1h30m,
// 0h) after the version's publishing. The waves must pass ValidateWaves.
func ParseRolloutSpec(s string) ([]Wave, error) {
	waves, err := parseRolloutSpec(s)
	if err != nil {
		return nil, fmt.Errorf("rollout %q: %w", truncate(s, 80), err)
	}
	return waves, nil
}

func parseRolloutSpec(s string) ([]Wave, error) {
	if len(s) > MaxRolloutSpec {
		return nil, fmt.Errorf("longer than %d bytes", MaxRolloutSpec)
	}
	if strings.TrimSpace(s) == "" {
		return nil, errors.New(`empty; want waves like "10%:0h,50%:24h,100%:72h"`)
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxWaves {
		return nil, fmt.Errorf("%d waves, at most %d", len(parts), MaxWaves)
	}
	waves := make([]Wave, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		share, after, ok := strings.Cut(p, ":")
		if !ok {
			return nil, fmt.Errorf("wave %d: %q is not SHARE%%:AFTER, like 50%%:24h", i+1, p)
		}
		num, ok := strings.CutSuffix(share, "%")
		if !ok {
			return nil, fmt.Errorf("wave %d: share %q must end in %% (like 50%%)", i+1, share)
		}
		n, err := strconv.Atoi(num)
		if err != nil || num == "" || num[0] == '+' || num[0] == '-' {
			return nil, fmt.Errorf("wave %d: share %q is not a whole percentage", i+1, share)
		}
		d, err := parseAfter(after)
		if err != nil {
			return nil, fmt.Errorf("wave %d: %w", i+1, err)
		}
		waves = append(waves, Wave{Share: n, After: d})
	}
	if err := ValidateWaves(waves); err != nil {
		return nil, err
	}
	return waves, nil
}

// parseAfter reads a wave's after: a Go duration with a unit (0h, 24h,
// 30m), not negative.
func parseAfter(s string) (time.Duration, error) {
	if s == "" || len(s) > 32 {
		return 0, fmt.Errorf("after %q is not a duration like 24h or 30m", truncate(s, 40))
	}
	if s[0] == '-' {
		return 0, fmt.Errorf("after %q is negative", s)
	}
	if s[0] == '+' {
		return 0, fmt.Errorf("after %q is not a duration like 24h or 30m", s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("after %q is not a duration like 24h or 30m", s)
	}
	return d, nil
}

// FormatRolloutSpec writes waves as ParseRolloutSpec reads them.
func FormatRolloutSpec(waves []Wave) string {
	parts := make([]string, len(waves))
	for i, w := range waves {
		parts[i] = strconv.Itoa(w.Share) + "%:" + formatAfter(w.After)
	}
	return strings.Join(parts, ",")
}

// formatAfter writes a duration in its largest whole unit: 72h, 90m, 45s.
func formatAfter(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// The JSON form, inside the signed manifest:
//
//	"rollout": {
//	  "start": "2026-12-01T10:00:00Z",
//	  "waves": [{"share": 10, "after": "0h"}, {"share": 100, "after": "72h"}],
//	  "paused": true, "paused_at": "2026-12-01T12:00:00Z"
//	}
//
// paused and paused_at appear only while paused.
type jsonRollout struct {
	Start    string     `json:"start"`
	Waves    []jsonWave `json:"waves"`
	Paused   bool       `json:"paused,omitempty"`
	PausedAt string     `json:"paused_at,omitempty"`
}

type jsonWave struct {
	Share int    `json:"share"`
	After string `json:"after"`
}

func (r *Rollout) toJSON() *jsonRollout {
	if r == nil {
		return nil
	}
	jr := &jsonRollout{Start: formatOptionalTime(r.Start), Waves: make([]jsonWave, len(r.Waves)), Paused: r.Paused}
	for i, w := range r.Waves {
		jr.Waves[i] = jsonWave{Share: w.Share, After: formatAfter(w.After)}
	}
	if r.Paused {
		jr.PausedAt = formatOptionalTime(r.PausedAt)
	}
	return jr
}

// rolloutField reads the optional $.rollout strictly: unknown and repeated
// fields, nulls and wrong types are errors naming their path; at most
// MaxWaves waves are read.
func rolloutField(obj map[string]json.RawMessage) (*Rollout, error) {
	if _, ok := obj["rollout"]; !ok {
		return nil, nil
	}
	raw, err := required(obj, "$", "rollout")
	if err != nil {
		return nil, err
	}
	const p = "$.rollout"
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	ro, err := readObject(dec, p)
	if err != nil {
		return nil, err
	}
	if err := checkKeys(ro, p, []string{"start", "waves", "paused", "paused_at"}); err != nil {
		return nil, err
	}
	r := &Rollout{}
	start, err := stringField(ro, p, "start")
	if err != nil {
		return nil, err
	}
	if r.Start, err = parseCreated(start); err != nil {
		return nil, fieldErr(p+".start", "%q is not an RFC 3339 time in 1970..9999, like 2026-11-25T10:00:00Z", start)
	}
	rawWaves, err := required(ro, p, "waves")
	if err != nil {
		return nil, err
	}
	wdec := json.NewDecoder(bytes.NewReader(rawWaves))
	wdec.UseNumber()
	if tok, err := wdec.Token(); err != nil || tok != json.Delim('[') {
		return nil, fieldErr(p+".waves", "must be an array")
	}
	for i := 0; wdec.More(); i++ {
		wp := fmt.Sprintf("%s.waves[%d]", p, i)
		if i >= MaxWaves {
			return nil, fieldErr(p+".waves", "more than %d waves", MaxWaves)
		}
		wo, err := readObject(wdec, wp)
		if err != nil {
			return nil, err
		}
		if err := checkKeys(wo, wp, []string{"share", "after"}); err != nil {
			return nil, err
		}
		share, err := intField(wo, wp, "share")
		if err != nil {
			return nil, err
		}
		if share < 1 || share > 100 {
			return nil, fieldErr(wp+".share", "must be a percentage from 1 to 100, got %d", share)
		}
		after, err := stringField(wo, wp, "after")
		if err != nil {
			return nil, err
		}
		d, err := parseAfter(after)
		if err != nil {
			return nil, &FieldError{Path: wp + ".after", Err: err}
		}
		r.Waves = append(r.Waves, Wave{Share: int(share), After: d})
	}
	if _, err := wdec.Token(); err != nil {
		return nil, fieldErr(p+".waves", "malformed array: %v", err)
	}
	if err := ValidateWaves(r.Waves); err != nil {
		return nil, &FieldError{Path: p + ".waves", Err: err}
	}
	if rawPaused, ok := ro["paused"]; ok {
		if err := json.Unmarshal(bytes.TrimSpace(rawPaused), &r.Paused); err != nil || bytes.Equal(bytes.TrimSpace(rawPaused), []byte("null")) {
			return nil, fieldErr(p+".paused", "must be true or false")
		}
	}
	_, hasAt := ro["paused_at"]
	switch {
	case r.Paused && !hasAt:
		return nil, fieldErr(p+".paused_at", "required field is missing (paused is true)")
	case !r.Paused && hasAt:
		return nil, fieldErr(p+".paused_at", "only allowed while paused is true")
	case r.Paused:
		at, err := stringField(ro, p, "paused_at")
		if err != nil {
			return nil, err
		}
		if r.PausedAt, err = parseCreated(at); err != nil {
			return nil, fieldErr(p+".paused_at", "%q is not an RFC 3339 time in 1970..9999, like 2026-11-25T10:00:00Z", at)
		}
	}
	return r, nil
}
