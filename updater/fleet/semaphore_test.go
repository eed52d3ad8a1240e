package fleet

import (
	"strings"
	"testing"
)

func TestParseSemaphore(t *testing.T) {
	for _, tc := range []struct{ doc, err string }{
		{`{"semaphore":1,"max":1,"holders":[]}`, ""},
		{`{"semaphore":1,"max":1,"holders":null}`, ""},
		{`{"semaphore":0,"max":1,"holders":["a"],"extra":true}`, ""},
		{`{"semaphore":1,"max":1}`, ""},
		{``, "not locksmith's JSON"},
		{`[]`, "not locksmith's JSON"},
		{`{"max":1,"holders":[]}`, `no "semaphore"`},
		{`{"semaphore":1,"holders":[]}`, `no "max"`},
		{`{"semaphore":1,"max":-3,"holders":[]}`, "max is -3"},
		{`{"semaphore":1,"max":2,"holders":["a","a"]}`, "appears twice"},
		{`{"semaphore":1,"max":2,"holders":[""]}`, "holder 0"},
		{`{"semaphore":1,"max":2,"holders":"a"}`, "not a list of strings"},
		{`{"semaphore":1,"max":1,"holders":[]} {}`, "data after"},
		{`{"semaphore":1,"max":1,"holders":["` + strings.Repeat("x", 300) + `"]}`, "holder 0"},
		{`{"semaphore":1,"max":1,"holders":[]}` + strings.Repeat(" ", MaxDocument), "bytes, at most"},
	} {
		s, err := ParseSemaphore([]byte(tc.doc))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%.60s: %v", tc.doc, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%.60s: error %v, want %q", tc.doc, err, tc.err)
		case err == nil && s.Holders == nil:
			t.Errorf("%.60s: nil holders", tc.doc)
		}
	}
}

func FuzzParseSemaphore(f *testing.F) {
	for _, s := range []string{`{"semaphore":1,"max":1,"holders":[]}`, `{"semaphore":0,"max":2,"holders":["a","b"]}`, `{"max":0}`, `null`, `{"holders":[1]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSemaphore(b)
		if err != nil {
			return
		}
		if s.Max < 1 || len(s.Holders) > MaxHolders {
			t.Fatalf("accepted %+v", s)
		}
		// what slate writes back reads the same
		again, err := ParseSemaphore(s.Marshal())
		if err != nil {
			t.Fatalf("own output %s: %v", s.Marshal(), err)
		}
		if again.Max != s.Max || strings.Join(again.Holders, "\x00") != strings.Join(s.Holders, "\x00") || again.Semaphore != s.Max-len(s.Holders) {
			t.Fatalf("round trip %+v -> %+v", s, again)
		}
	})
}
