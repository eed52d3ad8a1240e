// Package fleet coordinates a fleet's updates on engines fleets already
// run: a reboot lock (locksmith's semaphore document in etcd, or a
// FleetLock server), reports of each machine's state with leases, and
// stop-the-line (a version that failed on enough machines is held back).
//
// Everything read from etcd or a FleetLock server is treated as hostile:
// values are bounded and parsed strictly, and every error names what was
// wrong. A lock that cannot be taken is retried with backoff until the
// caller's context ends; nothing here ever reboots.
package fleet

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/slateos/slate/internal/bootlog"
)

// Lock is a fleet's reboot lock, held by one machine between the reboot
// into a new version and that version's bless (or its rollback).
type Lock interface {
	// Acquire takes the lock, retrying with backoff until it is taken or
	// ctx ends (then it returns ctx's error). Taking a lock already held
	// by this machine succeeds.
	Acquire(ctx context.Context) error
	// Release gives the lock back, retrying until done or ctx ends; a
	// lock not held is no error.
	Release(ctx context.Context) error
	// String names the lock for console lines (no secrets).
	String() string
}

// Reporter receives the state lines of a lock: locking (with err while
// retrying, took_over when a stale hold was taken), locked, released.
type Reporter func(state string, kv ...any)

// Console prints SLATE-UPDATE lines.
func Console(state string, kv ...any) {
	bootlog.Event("UPDATE", append([]any{"state", state}, kv...)...)
}

// Backoff is the wait between attempts: it starts at Min and doubles to
// Max, with up to 20% jitter so a fleet does not retry in step.
type Backoff struct {
	Min, Max time.Duration
}

// DefaultBackoff is 1s to 1m.
var DefaultBackoff = Backoff{Min: time.Second, Max: time.Minute}

func (b Backoff) orDefault() Backoff {
	if b.Min <= 0 {
		b.Min = DefaultBackoff.Min
	}
	if b.Max < b.Min {
		b.Max = max(DefaultBackoff.Max, b.Min)
	}
	return b
}

// retry runs try until it succeeds or ctx ends; onErr sees every error
// before the wait.
func retry(ctx context.Context, b Backoff, try func() error, onErr func(error)) error {
	b = b.orDefault()
	wait := b.Min
	for {
		err := try()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if onErr != nil {
			onErr(err)
		}
		j := time.Duration(rand.Int64N(int64(wait)/5 + 1))
		next := wait + j
		var hint interface{ retryIn() time.Duration }
		if errors.As(err, &hint) {
			if d := hint.retryIn(); d > 0 && d < next {
				next = d
			}
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, b.Max)
	}
}
