package configs

import (
	"strings"
	"testing"
	"time"
)

func TestZZSlow(t *testing.T) {
	big := MaxSpecSize - 1000
	cases := map[string]string{
		"deep flow":   strings.Repeat("[", big/2) ,
		"deep block":  func() string { var b strings.Builder; for i := 0; i < 2000; i++ { b.WriteString(strings.Repeat(" ", i) + "a:\n") }; return b.String() }(),
		"many keys":   func() string { var b strings.Builder; b.WriteString(base + "services:\n- name: a\n  command: /a\n  env:\n"); for i := 0; b.Len() < big; i++ { b.WriteString("    K" + strings.Repeat("x", 3) + itoa(i) + ": v\n") }; return b.String() }(),
		"many services": func() string { var b strings.Builder; b.WriteString(base + "services:\n"); for i := 0; b.Len() < big; i++ { b.WriteString("- {name: s" + itoa(i) + ", command: /a}\n") }; return b.String() }(),
		"aliases":     func() string { var b strings.Builder; b.WriteString(base + "x0: &a0 [a]\n"); for i := 1; i < 30; i++ { b.WriteString("x" + itoa(i) + ": &a" + itoa(i) + " [*a" + itoa(i-1) + ", *a" + itoa(i-1) + "]\n") }; return b.String() }(),
		"console aliases": func() string { var b strings.Builder; b.WriteString(base + "console: &a0 [a, b]\nkernel:\n  args: *a0\n  modules: *a0\n"); return b.String() }(),
		"long string": base + "hostname: " + strings.Repeat("a", big) + "\n",
		"long comment": base + "#" + strings.Repeat("a", big) + "\n",
		"many docs": strings.Repeat("---\n", big/4),
		"many merges": func() string { var b strings.Builder; b.WriteString(base + "services:\n- &s0 {name: a, command: /a}\n"); for i := 1; i < 25; i++ { b.WriteString("- &s" + itoa(i) + "\n  <<: [*s" + itoa(i-1) + ", *s" + itoa(i-1) + "]\n") }; return b.String() }(),
	}
	for name, in := range cases {
		start := time.Now()
		_, err := Parse([]byte(in), "x")
		msg := ""
		if err != nil { msg = err.Error(); if len(msg) > 150 { msg = msg[:150] } }
		t.Logf("%s (%d bytes): %v: %s", name, len(in), time.Since(start), msg)
	}
}

func itoa(i int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + string([]byte(fmtInt(i)))) }
func fmtInt(i int) string { if i < 10 { return string(rune('0'+i)) }; return fmtInt(i/10) + string(rune('0'+i%10)) }
