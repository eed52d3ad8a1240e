package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/updater/fleet/fleettest"
)

func startEtcd(t testing.TB) string {
	ep, _ := fleettest.StartEtcd(t)
	return ep
}

func conn(ep string) configs.EtcdConn {
	return configs.EtcdConn{Endpoints: []string{ep}, Prefix: configs.DefaultLockPrefix, DialTimeout: configs.Duration(2 * time.Second)}
}

func client(t testing.TB, c configs.EtcdConn) *clientv3.Client {
	cli, err := Dial(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// lines records what a lock reports.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) report(state string, kv ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := "state=" + state
	for i := 0; i+1 < len(kv); i += 2 {
		s += fmt.Sprintf(" %v=%v", kv[i], kv[i+1])
	}
	l.l = append(l.l, s)
}

func (l *lines) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.l {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.l, "\n")
}

var fast = Backoff{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond}

func newLock(ep, id string, l *lines) *Etcd {
	return &Etcd{Conn: conn(ep), ID: id, Max: 1, TTL: 30 * time.Minute, Report: l.report, Backoff: fast}
}

func TestEtcdLockOneHolderAtATime(t *testing.T) {
	ep := startEtcd(t)
	cli := client(t, conn(ep))
	key := semaphoreKey(configs.DefaultLockPrefix, "")
	// every revision of the document, as a watcher sees it
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	var hist []Semaphore
	var hmu sync.Mutex
	watching := make(chan struct{})
	go func() {
		w := cli.Watch(wctx, key, clientv3.WithRev(1), clientv3.WithCreatedNotify())
		close(watching)
		for resp := range w {
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				s, err := ParseSemaphore(ev.Kv.Value)
				hmu.Lock()
				if err != nil {
					hist = append(hist, Semaphore{Max: -1})
				} else {
					hist = append(hist, *s)
				}
				hmu.Unlock()
			}
		}
	}()
	<-watching
	var wg sync.WaitGroup
	var inside, most int
	var mu sync.Mutex
	l := &lines{}
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lk := newLock(ep, fmt.Sprintf("machine%d", i), l)
			defer lk.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := lk.Acquire(ctx); err != nil {
				t.Errorf("machine%d: %v", i, err)
				return
			}
			mu.Lock()
			inside++
			most = max(most, inside)
			mu.Unlock()
			time.Sleep(100 * time.Millisecond) // the "reboot"
			mu.Lock()
			inside--
			mu.Unlock()
			if err := lk.Release(ctx); err != nil {
				t.Errorf("machine%d release: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if most != 1 {
		t.Errorf("%d machines held the lock at once", most)
	}
	time.Sleep(200 * time.Millisecond)
	wcancel()
	hmu.Lock()
	defer hmu.Unlock()
	// created, then per machine: taken and released
	if len(hist) < 6 {
		t.Errorf("%d revisions of the document, want at least 6: %+v", len(hist), hist)
	}
	for i, s := range hist {
		if s.Max != 1 || len(s.Holders) > 1 || s.Semaphore != s.Max-len(s.Holders) {
			t.Errorf("revision %d: %+v: more than one holder or a bad count", i, s)
		}
	}
	if last := hist[len(hist)-1]; len(last.Holders) != 0 || last.Semaphore != 1 {
		t.Errorf("after every release: %+v", last)
	}
	for i := range 3 {
		if !l.has(fmt.Sprintf("state=locked lock=etcd %s id=machine%d", ep, i)) || !l.has(fmt.Sprintf("state=released lock=etcd %s id=machine%d", ep, i)) {
			t.Errorf("machine%d's lines missing:\n%s", i, l)
		}
	}
	// the hold records went with their holds
	resp, err := cli.Get(context.Background(), holdsPrefix(configs.DefaultLockPrefix, ""), clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 0 {
		t.Errorf("hold records left: %v %v", resp, err)
	}
}

func TestEtcdLockReleaseAndRecursion(t *testing.T) {
	ep := startEtcd(t)
	l := &lines{}
	a := newLock(ep, "aaaa", l)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	// a restart before the reboot takes it again
	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	ls, err := a.Read(ctx)
	if err != nil || len(ls.Doc.Holders) != 1 || ls.Holds["aaaa"].Taken.IsZero() {
		t.Fatalf("after two acquires: %+v %v", ls, err)
	}
	b := newLock(ep, "bbbb", l)
	bctx, bcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if err := b.Acquire(bctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b took a full lock: %v", err)
	}
	bcancel()
	if !l.has("full: held by aaaa") {
		t.Errorf("no line says who holds it:\n%s", l)
	}
	for range 2 { // idempotent
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	// by hand, as slate fleet lock --release does
	if held, err := a.ReleaseHolder(ctx, "bbbb"); err != nil || !held {
		t.Fatalf("release bbbb by hand: %v %v", held, err)
	}
	ls, _ = a.Read(ctx)
	if len(ls.Doc.Holders) != 0 || len(ls.Holds) != 0 {
		t.Errorf("after release by hand: %+v", ls)
	}
}

func TestEtcdLockTakeOver(t *testing.T) {
	ep := startEtcd(t)
	l := &lines{}
	dead := newLock(ep, "dead", l)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := dead.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	young := newLock(ep, "young", l)
	young.Now = func() time.Time { return time.Now().Add(29 * time.Minute) }
	yctx, ycancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if err := young.Acquire(yctx); err == nil {
		t.Fatal("a hold younger than the ttl was taken over")
	}
	ycancel()
	late := newLock(ep, "late", l)
	late.Now = func() time.Time { return time.Now().Add(31 * time.Minute) }
	if err := late.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if !l.has("state=locking lock=etcd " + ep + " id=late took_over=dead") {
		t.Errorf("no took_over line:\n%s", l)
	}
	ls, _ := late.Read(ctx)
	if len(ls.Doc.Holders) != 1 || ls.Doc.Holders[0] != "late" {
		t.Errorf("holders %v", ls.Doc.Holders)
	}
	if _, ok := ls.Holds["dead"]; ok {
		t.Error("the stale hold's record stayed")
	}
	// the dead machine comes back: releasing a hold it lost is no error
	// and does not touch the new holder's
	if err := dead.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if ls, _ := late.Read(ctx); !ls.Doc.Has("late") {
		t.Error("a stale holder's release removed the new holder")
	}
}

// A machine waiting for a full lock tries again as the hold turns
// stale, not a backoff later.
func TestEtcdLockTakeOverAtTTL(t *testing.T) {
	ep := startEtcd(t)
	l := &lines{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dead := newLock(ep, "dead", l)
	if err := dead.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	taken := time.Now()
	next := newLock(ep, "next", l)
	next.TTL = 1500 * time.Millisecond
	next.Backoff = Backoff{Min: 10 * time.Second, Max: time.Minute}
	if err := next.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(taken); d < next.TTL || d > next.TTL+2*time.Second {
		t.Errorf("taken over %s after the hold, ttl %s", d, next.TTL)
	}
	if !l.has("id=next took_over=dead") {
		t.Errorf("no took_over line:\n%s", l)
	}
}

func TestEtcdLockBadDocuments(t *testing.T) {
	ep := startEtcd(t)
	cli := client(t, conn(ep))
	key := semaphoreKey(configs.DefaultLockPrefix, "")
	for _, tc := range []struct{ doc, want string }{
		{`{"semaphore":1,"max":1,"holders":[`, "not locksmith's JSON"},
		{`{"semaphore":0,"max":0,"holders":[]}`, "max is 0"},
		{`{"semaphore":1,"max":1,"holders":[7]}`, "not a list of strings"},
	} {
		if _, err := cli.Put(context.Background(), key, tc.doc); err != nil {
			t.Fatal(err)
		}
		l := &lines{}
		lk := newLock(ep, "m1", l)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := lk.Acquire(ctx)
		cancel()
		lk.Close()
		if err == nil || l.has("state=locked") {
			t.Errorf("%s: acquired", tc.doc)
		}
		if !l.has(tc.want) || !l.has(key) {
			t.Errorf("%s: lines do not say %q of %s:\n%s", tc.doc, tc.want, key, l)
		}
		// the document is left as it was, for people to fix
		resp, _ := cli.Get(context.Background(), key)
		if string(resp.Kvs[0].Value) != tc.doc {
			t.Errorf("%s was changed to %s", tc.doc, resp.Kvs[0].Value)
		}
	}
}

func TestEtcdLockUnreachable(t *testing.T) {
	ep := fleettest.ClosedPort(t)
	lines := &lines{}
	lk := newLock(ep, "m1", lines)
	lk.Conn.DialTimeout = configs.Duration(200 * time.Millisecond)
	defer lk.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	err := lk.Acquire(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire returned %v, want the context's deadline", err)
	}
	if lines.has("state=locked") {
		t.Fatal("acquired a lock from an unreachable etcd")
	}
	if !lines.has("state=locking lock=etcd "+ep+" id=m1 err=") || !lines.has("reachable") {
		t.Errorf("no clear error line:\n%s", lines)
	}
}

func TestEtcdLockAuth(t *testing.T) {
	ep := startEtcd(t)
	root := client(t, conn(ep))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := configs.DefaultLockPrefix
	for _, step := range []func() error{
		func() error { _, err := root.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.RoleAdd(ctx, "fleet"); return err },
		func() error {
			_, err := root.RoleGrantPermission(ctx, "fleet", p, clientv3.GetPrefixRangeEnd(p), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := root.UserAdd(ctx, "slate", "right"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "slate", "fleet"); return err },
		func() error { _, err := root.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	for _, pw := range []string{"right", "wrong"} {
		f := filepath.Join(dir, pw)
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		l := &lines{}
		lk := newLock(ep, "m-"+pw, l)
		lk.Conn.Username, lk.Conn.PasswordFile = "slate", f
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		err := lk.Acquire(actx)
		acancel()
		lk.Close()
		switch pw {
		case "right":
			if err != nil {
				t.Errorf("right password: %v\n%s", err, l)
			}
		case "wrong":
			if err == nil || l.has("state=locked") {
				t.Fatal("acquired with a wrong password")
			}
			if !l.has("authentication failed") || !l.has("password_file") {
				t.Errorf("wrong password: no clear line:\n%s", l)
			}
		}
	}
}

func TestEtcdLockLocksmithDocument(t *testing.T) {
	ep := startEtcd(t)
	cli := client(t, conn(ep))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// as locksmith writes it: tabs, a holder of its own, max 2, in a group
	key := "coreos.com/updateengine/rebootlock/groups/db/semaphore"
	doc := "{\n\t\"semaphore\": 1,\n\t\"max\": 2,\n\t\"holders\": [\n\t\t\"69d27b356a94476da859461d3a3bc6fd\"\n\t]\n}"
	if _, err := cli.Put(ctx, key, doc); err != nil {
		t.Fatal(err)
	}
	l := &lines{}
	lk := newLock(ep, "0123456789abcdef0123456789abcdef", l)
	lk.Group, lk.Max = "db", 1 // the document's max wins over the config's
	if err := lk.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	got := string(resp.Kvs[0].Value)
	want := `{"semaphore":0,"max":2,"holders":["69d27b356a94476da859461d3a3bc6fd","0123456789abcdef0123456789abcdef"]}`
	if got != want {
		t.Errorf("document\n%s\nwant\n%s", got, want)
	}
	// the locksmith holder has no record: it never expires
	lk2 := newLock(ep, "ffff", l)
	lk2.Group = "db"
	lk2.Now = func() time.Time { return time.Now().Add(24 * time.Hour) }
	// the slate holder's does: ffff takes it over, never locksmith's
	if err := lk2.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if !l.has("took_over=0123456789abcdef0123456789abcdef") {
		t.Errorf("lines:\n%s", l)
	}
	ls, _ := lk2.Read(ctx)
	if !ls.Doc.Has("69d27b356a94476da859461d3a3bc6fd") {
		t.Error("locksmith's holder was removed")
	}
}

// A hold this machine has had for longer than the ttl (a release that
// never came) is taken again by its next Acquire: its time is the new
// one, and a machine that comes later does not take it over.
func TestEtcdLockReacquireRefreshesHold(t *testing.T) {
	ep := startEtcd(t)
	l := &lines{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	old := newLock(ep, "again", l)
	old.Now = func() time.Time { return time.Now().Add(-time.Hour) }
	if err := old.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	again := newLock(ep, "again", l)
	if err := again.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	ls, err := again.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := ls.Holds["again"]; !ok || time.Since(r.Taken) > time.Minute {
		t.Fatalf("the hold was not taken again: %+v", ls.Holds)
	}
	other := newLock(ep, "other", l)
	octx, ocancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer ocancel()
	if err := other.Acquire(octx); err == nil {
		t.Fatal("a hold just taken again was taken over")
	}
	if ls, _ := again.Read(ctx); !ls.Doc.Has("again") || ls.Doc.Has("other") {
		t.Errorf("holders %v", ls.Doc.Holders)
	}
}
