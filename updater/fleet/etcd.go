package fleet

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/redact"
)

// Dial connects to etcd as conn says, reading the CA, the client
// certificate and key and the password from the machine's files now (they
// are secrets delivered by Ignition, never baked into the public root).
// The client connects lazily: an unreachable etcd shows up as the error
// of the first request.
func Dial(conn configs.EtcdConn) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   conn.Endpoints,
		DialTimeout: conn.DialTimeout.D(),
		Username:    conn.Username,
		// etcd's client logs every retry through zap; slate reports
		// its own errors.
		Logger: zap.NewNop(),
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = configs.DefaultDialTime.D()
	}
	if conn.PasswordFile != "" {
		pw, err := readSecretLine(conn.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("etcd password: %w", err)
		}
		cfg.Password = pw
	}
	https := false
	for _, ep := range conn.Endpoints {
		https = https || strings.HasPrefix(ep, "https://")
	}
	if https || conn.CA != "" || conn.Cert != "" {
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if conn.CA != "" {
			pem, err := readBounded(conn.CA, 1<<20)
			if err != nil {
				return nil, fmt.Errorf("etcd CA: %w", err)
			}
			t.RootCAs = x509.NewCertPool()
			if !t.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("etcd CA %s: no PEM certificate in it", conn.CA)
			}
		}
		if conn.Cert != "" {
			c, err := tls.LoadX509KeyPair(conn.Cert, conn.Key)
			if err != nil {
				return nil, fmt.Errorf("etcd client certificate %s and key %s: %w", conn.Cert, conn.Key, err)
			}
			t.Certificates = []tls.Certificate{c}
		}
		cfg.TLS = t
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", endpoints(conn), explain(err))
	}
	return cli, nil
}

func readBounded(p string, n int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, n+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if int64(len(b)) > n {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, n)
	}
	return b, nil
}

func readSecretLine(p string) (string, error) {
	b, err := readBounded(p, 4096)
	if err != nil {
		return "", err
	}
	line, _, _ := bufio.NewReader(strings.NewReader(string(b))).ReadLine()
	if len(line) == 0 {
		return "", fmt.Errorf("%s: the first line is empty", p)
	}
	return string(line), nil
}

func endpoints(c configs.EtcdConn) string {
	var s []string
	for _, e := range c.Endpoints {
		s = append(s, redact.URL(e))
	}
	return strings.Join(s, ",")
}

// explain adds what an etcd error means to someone reading the console.
func explain(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "authentication failed"):
		return fmt.Errorf("%w (check update.lock.etcd username and password_file)", err)
	case strings.Contains(msg, "permission denied"):
		return fmt.Errorf("%w (the etcd user needs a role with readwrite on the prefix)", err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w (is etcd reachable at the endpoints?)", err)
	}
	return err
}

// Keys of the lock in etcd.
func semaphoreKey(prefix, group string) string {
	if group == "" {
		return prefix + "/rebootlock/semaphore"
	}
	// locksmith escapes the group the same way
	return prefix + "/rebootlock/groups/" + url.PathEscape(group) + "/semaphore"
}

func holdsPrefix(prefix, group string) string {
	return strings.TrimSuffix(semaphoreKey(prefix, group), "semaphore") + "slate/holds/"
}

// Etcd is locksmith's reboot semaphore in etcd: one JSON document changed
// only by compare-and-swap on its revision, so locksmithctl status and
// unlock keep working on it. Unlike locksmith, a hold records when it was
// taken (beside the document) and one older than TTL may be taken over.
type Etcd struct {
	Conn   configs.EtcdConn
	Group  string
	Max    int           // when the document is created
	TTL    time.Duration // 0: holds are never taken over
	ID     string        // this machine's id (the holder's name)
	Report Reporter      // nil: Console
	// Backoff between attempts; zero: DefaultBackoff.
	Backoff Backoff
	// Now is the clock for hold times (nil: time.Now).
	Now func() time.Time
	// Client is used if set; else one is dialled from Conn on first use.
	Client *clientv3.Client

	mu sync.Mutex
}

func (e *Etcd) String() string {
	s := "etcd " + endpoints(e.Conn)
	if e.Group != "" {
		s += " group " + e.Group
	}
	return s
}

func (e *Etcd) report(state string, kv ...any) {
	r := e.Report
	if r == nil {
		r = Console
	}
	r(state, append([]any{"lock", e.String()}, kv...)...)
}

func (e *Etcd) now() time.Time {
	if e.Now != nil {
		return e.Now().UTC()
	}
	return time.Now().UTC()
}

func (e *Etcd) client() (*clientv3.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.Client != nil {
		return e.Client, nil
	}
	c, err := Dial(e.Conn)
	if err != nil {
		return nil, err
	}
	e.Client = c
	return c, nil
}

// Close closes a client Etcd dialled itself.
func (e *Etcd) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.Client == nil {
		return nil
	}
	err := e.Client.Close()
	e.Client = nil
	return err
}

func (e *Etcd) prefix() string {
	if e.Conn.Prefix == "" {
		return configs.DefaultLockPrefix
	}
	return e.Conn.Prefix
}

// requestTimeout bounds one round trip, so a retry reports an etcd that
// does not answer.
func (e *Etcd) requestTimeout() time.Duration {
	if d := e.Conn.DialTimeout.D(); d > 0 {
		return d
	}
	return configs.DefaultDialTime.D()
}

// LockState is the lock as read from etcd.
type LockState struct {
	Key      string
	Doc      *Semaphore
	Holds    map[string]Hold // by holder; a holder without a record has none
	Revision int64           // the document's ModRevision; 0: absent
}

// Read returns the lock's document and hold records.
func (e *Etcd) Read(ctx context.Context) (*LockState, error) {
	cli, err := e.client()
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, e.requestTimeout())
	defer cancel()
	key, hp := semaphoreKey(e.prefix(), e.Group), holdsPrefix(e.prefix(), e.Group)
	resp, err := cli.Txn(rctx).Then(clientv3.OpGet(key), clientv3.OpGet(hp, clientv3.WithPrefix(), clientv3.WithLimit(MaxHolders+1))).Commit()
	if err != nil {
		return nil, fmt.Errorf("read %s from %s: %w", key, e, explain(err))
	}
	ls := &LockState{Key: key, Holds: map[string]Hold{}}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
		ls.Revision = kvs[0].ModRevision
		if ls.Doc, err = ParseSemaphore(kvs[0].Value); err != nil {
			return nil, fmt.Errorf("%s in %s: %w", key, e, err)
		}
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		id := strings.TrimPrefix(string(kv.Key), hp)
		h, err := parseHold(kv.Value)
		if err != nil {
			// a damaged record: the hold's time is unknown, as for
			// a locksmith holder
			continue
		}
		ls.Holds[id] = h
	}
	return ls, nil
}

// errFull: every place is held, none stale; staleIn is how long until
// the oldest recorded hold may be taken over (0: none will be).
type errFull struct {
	holders []string
	staleIn time.Duration
}

// retryIn lets retry try again as the first hold turns stale, rather
// than a backoff later: a machine that died holding the lock delays the
// fleet by the ttl, not by the ttl and a minute.
func (e errFull) retryIn() time.Duration { return e.staleIn }

func (e errFull) Error() string {
	return fmt.Sprintf("the reboot lock is full: held by %s", strings.Join(e.holders, ","))
}

// errRace: the document changed between read and swap.
var errRace = errors.New("the semaphore changed meanwhile")

// Acquire takes a place in the semaphore. While the lock is full, or etcd
// cannot be reached, it keeps trying; it reports state=locking once, again
// with err= on each failure, and took_over= when it took a stale hold.
func (e *Etcd) Acquire(ctx context.Context) error {
	if e.ID == "" {
		return errors.New("reboot lock: this machine has no id (/etc/machine-id)")
	}
	e.report("locking", "id", e.ID)
	var last string
	return retry(ctx, e.Backoff, func() error {
		for range 10 { // a lost race is tried again at once
			stale, err := e.tryAcquire(ctx)
			if errors.Is(err, errRace) {
				continue
			}
			if err != nil {
				return err
			}
			kv := []any{"id", e.ID}
			if stale != "" {
				// said on the locking line, as the console table has it
				e.report("locking", "id", e.ID, "took_over", stale)
				kv = append(kv, "took_over", stale)
			}
			e.report("locked", kv...)
			return nil
		}
		return errRace
	}, func(err error) {
		if msg := err.Error(); msg != last { // say each new reason once
			last = msg
			e.report("locking", "id", e.ID, "err", msg)
		}
	})
}

// tryAcquire makes one attempt; stale is the holder taken over.
func (e *Etcd) tryAcquire(ctx context.Context) (stale string, err error) {
	ls, err := e.Read(ctx)
	if err != nil {
		return "", err
	}
	now := e.now()
	doc := ls.Doc
	if doc == nil {
		m := e.Max
		if m < 1 {
			m = configs.DefaultLockMax
		}
		doc = &Semaphore{Max: m, Holders: []string{}}
	}
	if doc.Has(e.ID) {
		// held already (a restart before the reboot, a release that
		// never came) or held without a record (taken by an older
		// slate or by hand): the hold is taken again now, so a hold
		// older than the ttl is not taken over while this machine
		// reboots on it
		return "", e.swap(ctx, ls, doc, []clientv3.Op{e.putHold(now)})
	}
	if len(doc.Holders) >= doc.Max {
		stale = e.staleHolder(ls, doc, now)
		if stale == "" {
			return "", errFull{holders: doc.Holders, staleIn: e.staleIn(ls, doc, now)}
		}
		doc.Holders = slices.DeleteFunc(doc.Holders, func(h string) bool { return h == stale })
	}
	doc.Holders = append(doc.Holders, e.ID)
	// the stale holder's record goes in swap, with every record whose
	// holder is gone
	return stale, e.swap(ctx, ls, doc, []clientv3.Op{e.putHold(now)})
}

// staleHolder is the oldest holder whose hold is older than TTL; holders
// without a record (locksmith's) never expire, as in locksmith.
func (e *Etcd) staleHolder(ls *LockState, doc *Semaphore, now time.Time) string {
	if e.TTL <= 0 || len(doc.Holders)-1 >= doc.Max {
		// with more holders than places (max lowered), taking one
		// over would still leave no place: wait for the others
		return ""
	}
	var ids []string
	for _, h := range doc.Holders {
		if r, ok := ls.Holds[h]; ok && now.Sub(r.Taken) > e.TTL {
			ids = append(ids, h)
		}
	}
	if len(ids) == 0 {
		return ""
	}
	sort.Slice(ids, func(i, j int) bool { return ls.Holds[ids[i]].Taken.Before(ls.Holds[ids[j]].Taken) })
	return ids[0]
}

// staleIn is how long until the first recorded hold turns stale (0: no
// hold ever will: no ttl, no records, or more holders than places).
func (e *Etcd) staleIn(ls *LockState, doc *Semaphore, now time.Time) time.Duration {
	if e.TTL <= 0 || len(doc.Holders)-1 >= doc.Max {
		return 0
	}
	var first time.Duration
	for _, h := range doc.Holders {
		r, ok := ls.Holds[h]
		if !ok {
			continue
		}
		// a hold is stale once strictly older than the ttl
		if d := r.Taken.Add(e.TTL).Sub(now) + 10*time.Millisecond; d > 0 && (first == 0 || d < first) {
			first = d
		}
	}
	return first
}

func (e *Etcd) putHold(now time.Time) clientv3.Op {
	b := fmt.Appendf(nil, `{"taken":%q}`, now.Format(time.RFC3339Nano))
	return clientv3.OpPut(holdsPrefix(e.prefix(), e.Group)+e.ID, string(b))
}

// swap writes doc if the document is still at ls.Revision (absent when
// 0), with ops in the same transaction; the records of holders not in doc
// (released, taken over, or unlocked by locksmithctl) are deleted in it.
func (e *Etcd) swap(ctx context.Context, ls *LockState, doc *Semaphore, ops []clientv3.Op) error {
	cli, err := e.client()
	if err != nil {
		return err
	}
	hp := holdsPrefix(e.prefix(), e.Group)
	for id := range ls.Holds {
		if !doc.Has(id) {
			ops = append(ops, clientv3.OpDelete(hp+id))
		}
	}
	cmp := clientv3.Compare(clientv3.ModRevision(ls.Key), "=", ls.Revision)
	if ls.Revision == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(ls.Key), "=", 0)
	}
	rctx, cancel := context.WithTimeout(ctx, e.requestTimeout())
	defer cancel()
	resp, err := cli.Txn(rctx).If(cmp).Then(append([]clientv3.Op{clientv3.OpPut(ls.Key, string(doc.Marshal()))}, ops...)...).Commit()
	if err != nil {
		return fmt.Errorf("swap %s in %s: %w", ls.Key, e, explain(err))
	}
	if !resp.Succeeded {
		return errRace
	}
	return nil
}

// Release removes this machine from the holders (and its record).
func (e *Etcd) Release(ctx context.Context) error {
	if e.ID == "" {
		return errors.New("reboot lock: this machine has no id (/etc/machine-id)")
	}
	var last string
	return retry(ctx, e.Backoff, func() error {
		for range 10 {
			held, err := e.ReleaseHolder(ctx, e.ID)
			if errors.Is(err, errRace) {
				continue
			}
			if err == nil && held {
				e.report("released", "id", e.ID)
			}
			return err
		}
		return errRace
	}, func(err error) {
		if msg := err.Error(); msg != last {
			last = msg
			e.report("releasing", "id", e.ID, "err", msg)
		}
	})
}

// ReleaseHolder removes id from the holders in one attempt (slate fleet
// lock --release): held says whether it was a holder. errRace when the
// document changed meanwhile.
func (e *Etcd) ReleaseHolder(ctx context.Context, id string) (held bool, err error) {
	ls, err := e.Read(ctx)
	if err != nil {
		return false, err
	}
	hp := holdsPrefix(e.prefix(), e.Group)
	if ls.Doc == nil || !ls.Doc.Has(id) {
		if _, ok := ls.Holds[id]; ok {
			cli, err := e.client()
			if err != nil {
				return false, err
			}
			rctx, cancel := context.WithTimeout(ctx, e.requestTimeout())
			defer cancel()
			if _, err := cli.Delete(rctx, hp+id); err != nil {
				return false, fmt.Errorf("delete %s%s: %w", hp, id, explain(err))
			}
		}
		return false, nil
	}
	doc := *ls.Doc
	doc.Holders = slices.DeleteFunc(slices.Clone(doc.Holders), func(h string) bool { return h == id })
	return true, e.swap(ctx, ls, &doc, nil) // with id's record
}
