package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Bounds of a semaphore document: locksmith's are tiny; anything much
// larger is not one.
const (
	MaxDocument = 64 << 10
	MaxHolders  = 1000
	MaxHolderID = 256
)

// Semaphore is locksmith's reboot lock document:
// {"semaphore":N,"max":M,"holders":["id",...]}. Semaphore is the number of
// free places; locksmith keeps it at Max-len(Holders) (set-max shifts both).
type Semaphore struct {
	Semaphore int      `json:"semaphore"`
	Max       int      `json:"max"`
	Holders   []string `json:"holders"`
}

// ParseSemaphore reads a semaphore document strictly: valid JSON, one
// object, max at least 1, holders distinct non-empty strings within the
// bounds. Unknown fields are kept out of the result but do not fail: they
// are not slate's to judge.
func ParseSemaphore(b []byte) (*Semaphore, error) {
	if len(b) > MaxDocument {
		return nil, fmt.Errorf("semaphore document: %d bytes, at most %d", len(b), MaxDocument)
	}
	var raw struct {
		Semaphore *int            `json:"semaphore"`
		Max       *int            `json:"max"`
		Holders   json.RawMessage `json:"holders"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("semaphore document is not locksmith's JSON object: %w", err)
	}
	if dec.More() {
		return nil, errors.New("semaphore document: data after the JSON object")
	}
	if raw.Max == nil {
		return nil, errors.New(`semaphore document has no "max"`)
	}
	if raw.Semaphore == nil {
		return nil, errors.New(`semaphore document has no "semaphore"`)
	}
	s := &Semaphore{Semaphore: *raw.Semaphore, Max: *raw.Max}
	if s.Max < 1 {
		return nil, fmt.Errorf("semaphore document: max is %d: no machine could ever reboot (set it with locksmithctl set-max or slate fleet lock)", s.Max)
	}
	if len(raw.Holders) > 0 && !bytes.Equal(bytes.TrimSpace(raw.Holders), []byte("null")) {
		if err := json.Unmarshal(raw.Holders, &s.Holders); err != nil {
			return nil, fmt.Errorf("semaphore document: holders is not a list of strings: %w", err)
		}
	}
	if len(s.Holders) > MaxHolders {
		return nil, fmt.Errorf("semaphore document: %d holders, at most %d", len(s.Holders), MaxHolders)
	}
	for i, h := range s.Holders {
		if h == "" || len(h) > MaxHolderID {
			return nil, fmt.Errorf("semaphore document: holder %d is %d bytes: want 1 to %d", i, len(h), MaxHolderID)
		}
		if slices.Index(s.Holders, h) != i {
			return nil, fmt.Errorf("semaphore document: holder %q appears twice", h)
		}
	}
	if s.Holders == nil {
		s.Holders = []string{}
	}
	return s, nil
}

// Marshal writes the document as locksmith does, semaphore recomputed.
func (s *Semaphore) Marshal() []byte {
	c := *s
	c.Semaphore = c.Max - len(c.Holders)
	if c.Holders == nil {
		c.Holders = []string{}
	}
	b, _ := json.Marshal(c)
	return b
}

// Has reports whether id holds the lock.
func (s *Semaphore) Has(id string) bool { return slices.Contains(s.Holders, id) }

// Hold is slate's record of one hold, kept beside the document (see
// holdKey) so that locksmith, which rewrites the document from its own
// struct and would drop an extra field, never loses it.
type Hold struct {
	Taken time.Time `json:"taken"`
}

func parseHold(b []byte) (Hold, error) {
	var h Hold
	if len(b) > 4096 {
		return h, fmt.Errorf("hold record: %d bytes, at most 4096", len(b))
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("hold record: %w", err)
	}
	if h.Taken.IsZero() {
		return h, errors.New("hold record has no time")
	}
	return h, nil
}
