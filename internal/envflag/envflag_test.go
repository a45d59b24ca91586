package envflag

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

type settings struct {
	linger time.Duration
	max    int
	tls    bool
	logs   string
}

func newSet() (*flag.FlagSet, *settings) {
	s := &settings{}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.DurationVar(&s.linger, "kafka-linger", 5*time.Millisecond, "")
	fs.IntVar(&s.max, "shim-max-in-flight", 50000, "")
	fs.BoolVar(&s.tls, "kafka-tls", false, "")
	fs.StringVar(&s.logs, "shim-logs", "dns.log", "")
	return fs, s
}

func TestMalformedVariableNamesIt(t *testing.T) {
	for v, val := range map[string]string{"KAFKA_LINGER": "5", "SHIM_MAX_IN_FLIGHT": "50k", "KAFKA_TLS": "yes"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv(v, val)
			fs, _ := newSet()
			err := Parse(fs, nil, "")
			if err == nil || !strings.Contains(err.Error(), v) {
				t.Fatalf("%s=%s: got %v, want an error naming %s", v, val, err, v)
			}
		})
	}
}

func TestFlagWinsEmptyIsUnset(t *testing.T) {
	t.Setenv("KAFKA_LINGER", "20ms")
	t.Setenv("SHIM_MAX_IN_FLIGHT", "7")
	t.Setenv("SHIM_LOGS", "")
	fs, s := newSet()
	if err := Parse(fs, []string{"-shim-max-in-flight=9"}, ""); err != nil {
		t.Fatal(err)
	}
	if s.linger != 20*time.Millisecond || s.max != 9 || s.logs != "dns.log" {
		t.Fatalf("got %+v", *s)
	}
}

func TestPrefixAndStrayArgument(t *testing.T) {
	t.Setenv("PCAPOVERTCP_SHIM_LOGS", "x.log")
	fs, s := newSet()
	if err := Parse(fs, nil, "PCAPOVERTCP"); err != nil || s.logs != "x.log" {
		t.Fatalf("prefixed variable: %v %+v", err, *s)
	}
	if got := Var("PCAPOVERTCP_", "max-clients"); got != "PCAPOVERTCP_MAX_CLIENTS" {
		t.Fatalf("Var = %s", got)
	}
	fs, _ = newSet()
	if err := Parse(fs, []string{"extra"}, ""); err == nil || !strings.Contains(err.Error(), `"extra"`) {
		t.Fatalf("stray argument: %v", err)
	}
	fs, _ = newSet()
	if err := Parse(fs, []string{"-h"}, ""); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
}

func TestUsageListsVariables(t *testing.T) {
	fs, _ := newSet()
	var b strings.Builder
	fs.SetOutput(&b)
	Usage(fs, "", "intro\n")()
	for _, want := range []string{"intro", "-kafka-linger, KAFKA_LINGER (default 5ms)", "-shim-logs, SHIM_LOGS"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, b.String())
		}
	}
}
