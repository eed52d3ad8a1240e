package supervisor

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
)

func TestParseEnvironmentFile(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]string
		err  string // part of the error; "" for none
	}{
		{"empty", "", map[string]string{}, ""},
		{"comments and blanks", "# a comment\n\n  ; another\n\t\nA=1\n", map[string]string{"A": "1"}, ""},
		{"plain", "A=1\nB=two words\nC=\n", map[string]string{"A": "1", "B": "two words", "C": ""}, ""},
		{"spaces around", "  A  =  x y  \n", map[string]string{"A": "x y"}, ""},
		{"hash in a value", "A=x#y # not a comment\n", map[string]string{"A": "x#y # not a comment"}, ""},
		{"equals in a value", "URL=http://h/?a=b&c=d\n", map[string]string{"URL": "http://h/?a=b&c=d"}, ""},
		{"single quotes", `A='  $HOME \n "x" '` + "\n", map[string]string{"A": `  $HOME \n "x" `}, ""},
		{"double quotes", `A="a \"b\" \\ \$c \x"` + "\n", map[string]string{"A": `a "b" \ $c \x`}, ""},
		{"mixed quoting", `A=pre"mid dle"'post '` + "\n", map[string]string{"A": "premid dlepost "}, ""},
		{"quoted over lines", "A=\"one\ntwo\"\nB='x\ny'\nC=3\n", map[string]string{"A": "one\ntwo", "B": "x\ny", "C": "3"}, ""},
		{"continuation", "A=one \\\ntwo\nB=\"x\\\ny\"\n", map[string]string{"A": "one two", "B": "xy"}, ""},
		{"unquoted escape", `A=a\ b\\c\"` + "\n", map[string]string{"A": `a b\c"`}, ""},
		{"later wins", "A=1\nA=2\n", map[string]string{"A": "2"}, ""},
		{"export", "export A=1\nexportB=2\n", map[string]string{"A": "1", "exportB": "2"}, ""},
		{"crlf", "A=1\r\nB=\"2\"\r\n", map[string]string{"A": "1", "B": "2"}, ""},
		{"no final newline", "A=1", map[string]string{"A": "1"}, ""},
		{"trailing backslash at end", `A=x\`, map[string]string{"A": "x"}, ""},
		{"no equals", "A=1\nJUSTAWORD\n", nil, "line 2: no '='"},
		{"bad key", "A=1\n\n1A=2\n", nil, `line 3: "1A" is not a variable name`},
		{"key with dash", "A-B=1\n", nil, "not a variable name"},
		{"empty key", "=1\n", nil, "not a variable name"},
		{"unterminated double", "A=\"x\nB=2\n", nil, "line 1: A: unterminated double quote"},
		{"unterminated single", "A=1\nB='x\n", nil, "line 2: B: unterminated single quote"},
		{"line numbers after quotes", "A='x\ny'\nB=\"p\nq\"\nC\n", nil, "line 5: no '='"},
		{"NUL", "A=x\x00y\n", nil, "NUL byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEnvironmentFile(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q (got %q)", err, tt.err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// quoteEnv writes v so that parseEnvironmentFile reads it back.
func quoteEnv(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "`", "\\`")
	return `"` + r.Replace(v) + `"`
}

func FuzzEnvironmentFile(f *testing.F) {
	for _, s := range []string{
		"", "A=1\n", "# c\nA='x y'\nB=\"p\\\"q\"\n", "A=\"one\ntwo\"\n", "A=x\\\ny", "export A=1", "A='", "A=\"\\",
		"\r\n=\n", "A=1\r", "A= \t'' \"\" x \n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		vars, err := parseEnvironmentFile(in)
		if err != nil {
			return
		}
		keys := make([]string, 0, len(vars))
		for k, v := range vars {
			if !validEnvKey(k) {
				t.Fatalf("key %q from %q", k, in)
			}
			if strings.IndexByte(v, 0) >= 0 {
				t.Fatalf("NUL in %s from %q", k, in)
			}
			keys = append(keys, k)
		}
		// What was read, written back quoted, reads the same.
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			b.WriteString(k + "=" + quoteEnv(vars[k]) + "\n")
		}
		again, err := parseEnvironmentFile(b.String())
		if err != nil || !maps.Equal(again, vars) {
			t.Fatalf("round trip of %q: %q, %v; want %q", b.String(), again, err, vars)
		}
	})
}

func TestEnvironmentFileService(t *testing.T) {
	dir := t.TempDir()
	first := filepath.Join(dir, "first")
	second := filepath.Join(dir, "second")
	for p, body := range map[string]string{
		first:  "# defaults\nA=from-first\nB=from-first\nPATH=/opt/bin:/usr/bin\n",
		second: "B='from second'\nC=\"x=y\"\n",
	} {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		files []string
		env   map[string]string
		want  []string // lines of the env helper
		fail  string   // part of the failed line, instead of want
	}{
		{"merged in order, Env wins", []string{first, "-" + filepath.Join(dir, "missing"), second}, map[string]string{"A": "from-env"},
			[]string{"A=from-env", "B=from second", "C=x=y", "PATH=/opt/bin:/usr/bin"}, ""},
		{"missing file", []string{first, filepath.Join(dir, "missing")}, nil, nil, "missing: no such file or directory"},
		{"optional folder is an error", []string{"-" + dir}, nil, nil, "is a directory"},
		{"malformed file", []string{filepath.Join(dir, "bad")}, nil, nil, "line 1: no '='"},
	}
	if err := os.WriteFile(filepath.Join(dir, "bad"), []byte("oops\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := helperService(t, "envy", "env", configs.RestartNever, tt.env)
			svc.EnvironmentFile = tt.files
			cfg, con := testConfig(t, svc)
			r := start(t, cfg)
			con.waitFor(t, `^SLATE-SERVICE name=envy state=stopped$`, 1)
			r.stop(t)
			if tt.fail != "" {
				if n := con.count(`^SLATE-SERVICE name=envy state=failed err=".*` + regexp.QuoteMeta(tt.fail) + `.*"$`); n != 1 {
					t.Errorf("no failed line with %q:\n%s", tt.fail, con)
				}
				return
			}
			var got []string
			for _, l := range con.lines() {
				if kv, ok := strings.CutPrefix(l, "[envy] "); ok && !strings.HasPrefix(kv, helperEnv+"=") {
					got = append(got, kv)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("environment:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
