package configs

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestServiceRunFields(t *testing.T) {
	s, err := Parse([]byte(base+`services:
  - name: setup
    command: /usr/bin/setup
    type: oneshot
    restart: never
  - name: web
    command: /usr/bin/web
    type: simple
    user: www-data
    working_directory: /srv/web
    environment_file: [/etc/default/web, -/etc/web.local]
    after: [setup]
    requires: [setup]
users:
  - {name: www-data, uid: 33}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []Service{
		{Name: "setup", Command: "/usr/bin/setup", Type: TypeOneshot, Restart: RestartNever},
		{Name: "web", Command: "/usr/bin/web", Type: TypeSimple, Restart: DefaultRestart, User: "www-data",
			WorkingDirectory: "/srv/web", EnvironmentFile: []string{"/etc/default/web", "-/etc/web.local"},
			After: []string{"setup"}, Requires: []string{"setup"}},
	}
	if !reflect.DeepEqual(s.Services, want) {
		t.Errorf("services:\n%+v\nwant:\n%+v", s.Services, want)
	}
}

func TestServiceRunFieldErrors(t *testing.T) {
	svc := "services:\n- {name: a, command: /a}\n"
	for _, tc := range []struct {
		name  string
		yaml  string
		paths []string
		msg   string // part of the first error
	}{
		{"bad type", base + "services:\n- {name: a, command: /a, type: forking}\n",
			[]string{"$.services[0].type"}, "use simple or oneshot"},
		{"oneshot always", base + "services:\n- {name: a, command: /a, type: oneshot, restart: always}\n",
			[]string{"$.services[0].restart"}, "runs once to completion"},
		{"user with colon", base + "services:\n- {name: a, command: /a, user: 'a:b'}\n",
			[]string{"$.services[0].user"}, "not a user name"},
		{"user with space", base + "services:\n- {name: a, command: /a, user: 'a b'}\n",
			[]string{"$.services[0].user"}, "not a user name"},
		{"relative working directory", base + "services:\n- {name: a, command: /a, working_directory: srv}\n",
			[]string{"$.services[0].working_directory"}, "not an absolute path"},
		{"unclean working directory", base + "services:\n- {name: a, command: /a, working_directory: /srv/}\n",
			[]string{"$.services[0].working_directory"}, "not clean"},
		{"relative environment file", base + "services:\n- {name: a, command: /a, environment_file: [/ok, -rel, '-']}\n",
			[]string{"$.services[0].environment_file[1]", "$.services[0].environment_file[2]"}, "optional file"},
		{"after unknown", base + svc + "- {name: b, command: /b, after: [a, c]}\n",
			[]string{"$.services[1].after[1]"}, `no service or container is named "c"`},
		{"requires unknown", base + svc + "- {name: b, command: /b, requires: [nope]}\n",
			[]string{"$.services[1].requires[0]"}, `no service or container is named "nope"`},
		{"self cycle", base + "services:\n- {name: a, command: /a, after: [a]}\n",
			[]string{"$.services[0]"}, "dependency cycle: a -> a"},
		{"three cycle", base + "services:\n- {name: a, command: /a, after: [b]}\n- {name: b, command: /b, requires: [c]}\n- {name: c, command: /c, after: [a]}\n- {name: d, command: /d, after: [a]}\n",
			[]string{"$.services[0]", "$.services[1]", "$.services[2]"}, "dependency cycle: a -> b -> c -> a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "t.yaml")
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			var first *Error
			if !errors.As(err, &first) {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			paths := []string{first.Path}
			var list ErrorList
			if errors.As(err, &list) {
				paths = paths[:0]
				for _, e := range list {
					paths = append(paths, e.Path)
				}
			}
			if !slices.Equal(paths, tc.paths) {
				t.Errorf("paths %q; want %q\n%v", paths, tc.paths, err)
			}
			if !strings.Contains(first.Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", first.Msg, tc.msg)
			}
		})
	}
}

func TestDependencyCycle(t *testing.T) {
	svcs := []Service{
		{Name: "a", After: []string{"b"}},
		{Name: "b", Requires: []string{"c", "ghost"}},
		{Name: "c", After: []string{"a", "b"}},
		{Name: "d", After: []string{"a"}},
	}
	us := (&Spec{Services: svcs}).units()
	for i, want := range []string{"a -> b -> c -> a", "b -> c -> b", "c -> b -> c", ""} {
		if got := strings.Join(unitCycle(us, i), " -> "); got != want {
			t.Errorf("cycle through %s = %q, want %q", svcs[i].Name, got, want)
		}
	}
}
