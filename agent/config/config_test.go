package config

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/agent/filter"
	"github.com/pano-observability/pano/agent/tracer"
	"github.com/pano-observability/pano/internal/envflag"
)

// load runs Load with args and, of the settings' variables, exactly those
// in env: the others are emptied, which counts as unset, so a variable of
// the shell running the tests changes nothing.
func load(t *testing.T, args []string, env map[string]string) (*Config, error) {
	t.Helper()
	for _, s := range settings() {
		t.Setenv(envflag.Var("", s.flag), "")
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	return Load(args, io.Discard)
}

func TestDefaults(t *testing.T) {
	c, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.EnablePCA || filter.Format(c.Filter) != "udp,53;tcp,53" || c.ServerAddr != "127.0.0.1:57012" ||
		c.MetricsAddr != "127.0.0.1:9103" || c.AttachMode != tracer.ModeAuto || c.SnapLen != 65535 ||
		c.DedupWindow != 2*time.Millisecond || c.RingBufferSize != 16<<20 || c.ClientQueue != 8<<20 ||
		c.MaxClients != 16 || c.LogLevel != slog.LevelInfo || len(c.Interfaces) != 0 ||
		len(c.Exclude) != 1 || c.Exclude[0] != "lo" || c.Nanosecond || c.Streams != 1 ||
		strings.Join(c.StreamAddrs(), ",") != "127.0.0.1:57012" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestEnvironmentAndFlags(t *testing.T) {
	e := map[string]string{
		"ENABLE_PCA":         "true",
		"PCA_FILTER":         "udp,53",
		"PCA_SERVER_PORT":    "1234",
		"PCA_SERVER_ADDR":    "::",
		"INTERFACES":         "eth0, veth*",
		"EXCLUDE_INTERFACES": "",
		"LOG_LEVEL":          "debug",
		"METRICS_ADDR":       "off",
		"ATTACH_MODE":        "tc",
		"SNAPLEN":            "1500",
		"DEDUP_WINDOW":       "0",
		"RING_BUFFER_SIZE":   "64MiB",
		"PCA_ALLOW":          "127.0.0.0/8,10.1.2.3/8",
	}
	c, err := load(t, nil, e)
	if err != nil {
		t.Fatal(err)
	}
	if filter.Format(c.Filter) != "udp,53" || c.ServerAddr != "[::]:1234" || strings.Join(c.Interfaces, "|") != "eth0|veth*" ||
		len(c.Exclude) != 1 || c.LogLevel != slog.LevelDebug || c.MetricsAddr != "" || c.AttachMode != tracer.ModeTC ||
		c.SnapLen != 1500 || c.DedupWindow != 0 || c.RingBufferSize != 64<<20 || len(c.Allow) != 2 || c.Allow[1].String() != "10.0.0.0/8" {
		t.Fatalf("from environment: %+v", c)
	}
	// A flag wins over its variable.
	c, err = load(t, []string{"-pca-server-port=999", "-pca-filter=tcp,53", "-attach-mode", "tcx", "-exclude-interfaces=lo,docker*"}, e)
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerAddr != "[::]:999" || filter.Format(c.Filter) != "tcp,53" || c.AttachMode != tracer.ModeTCX || len(c.Exclude) != 2 {
		t.Fatalf("flags over environment: %+v", c)
	}
}

// A malformed value fails Load naming where it came from: the variable
// when set by the environment, the flag when set on the command line.
func TestErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct{ env, val string }{
		{"ENABLE_PCA", "maybe"},
		{"ENABLE_PCA", "yes"},
		{"PCA_FILTER", "icmp,1"},
		{"PCA_SERVER_PORT", "70000"},
		{"PCA_SERVER_PORT", "http"},
		{"PCA_ALLOW", "10.0.0.0/40"},
		{"PCA_MAX_CLIENTS", "0"},
		{"PCA_MAX_CLIENTS", "50k"},
		{"PCA_CLIENT_QUEUE", "lots"},
		{"LOG_LEVEL", "loud"},
		{"METRICS_ADDR", "9103"},
		{"ATTACH_MODE", "xdp"},
		{"SNAPLEN", "0"},
		{"SNAPLEN", "65536"},
		{"DEDUP_WINDOW", "-1s"},
		{"DEDUP_WINDOW", "5"},
		{"RING_BUFFER_SIZE", "16XB"},
		{"PCA_STREAMS", "0"},
		{"PCA_STREAMS", "65"},
		{"PCA_STREAMS", "four"},
	} {
		flagName := strings.ToLower(strings.ReplaceAll(tc.env, "_", "-"))
		t.Run(tc.env+"="+tc.val, func(t *testing.T) {
			_, err := load(t, nil, map[string]string{tc.env: tc.val})
			if err == nil || !strings.Contains(err.Error(), `"`+tc.env+`"`) || !strings.Contains(err.Error(), `"`+tc.val+`"`) {
				t.Errorf("variable: error %v, want one naming %s and %q", err, tc.env, tc.val)
			}
			_, err = load(t, []string{"-" + flagName + "=" + tc.val}, nil)
			if err == nil || !strings.Contains(err.Error(), "-"+flagName+":") {
				t.Errorf("flag: error %v, want one naming -%s", err, flagName)
			}
		})
	}
	if _, err := load(t, []string{"stray"}, nil); err == nil || !strings.Contains(err.Error(), `"stray"`) {
		t.Errorf("a positional argument: %v", err)
	}
}

// A flag wins over its variable, which is then not even parsed: a
// malformed one is no error.
func TestFlagWinsOverMalformedVariable(t *testing.T) {
	c, err := load(t, []string{"-snaplen=1500", "-dedup-window=0"}, map[string]string{"SNAPLEN": "lots", "DEDUP_WINDOW": "5", "LOG_LEVEL": "debug"})
	if err != nil {
		t.Fatal(err)
	}
	if c.SnapLen != 1500 || c.DedupWindow != 0 || c.LogLevel != slog.LevelDebug {
		t.Fatalf("got snaplen %d, dedup %v, log level %v", c.SnapLen, c.DedupWindow, c.LogLevel)
	}
}

// A ring buffer must hold two records of the largest packet kept; the
// error names both settings and the size that would do.
func TestRingMustHoldTwoPackets(t *testing.T) {
	_, err := load(t, nil, map[string]string{"RING_BUFFER_SIZE": "64KiB"})
	if err == nil || !strings.Contains(err.Error(), "RING_BUFFER_SIZE") || !strings.Contains(err.Error(), "SNAPLEN=65535") ||
		!strings.Contains(err.Error(), "at least 262144") {
		t.Errorf("64KiB ring with the default snaplen: error %v, want one naming RING_BUFFER_SIZE, SNAPLEN=65535 and 262144", err)
	}
	c, err := load(t, nil, map[string]string{"RING_BUFFER_SIZE": "64KiB", "SNAPLEN": "1500"})
	if err != nil || c.RingBufferSize != 64<<10 {
		t.Errorf("64KiB ring with SNAPLEN=1500: %v", err)
	}
	if _, err := load(t, nil, map[string]string{"RING_BUFFER_SIZE": "256KiB"}); err != nil {
		t.Errorf("256KiB ring with the default snaplen: %v", err)
	}
}

func TestStreams(t *testing.T) {
	c, err := load(t, []string{"-pca-streams=4"}, map[string]string{"PCA_SERVER_PORT": "57012", "PCA_SERVER_ADDR": "::1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.StreamAddrs(), ","); c.Streams != 4 || got != "[::1]:57012,[::1]:57013,[::1]:57014,[::1]:57015" {
		t.Errorf("4 streams from 57012: %d, %s", c.Streams, got)
	}
	c, err = load(t, nil, map[string]string{"PCA_STREAMS": "3", "PCA_SERVER_PORT": "0"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.StreamAddrs(), ","); got != "127.0.0.1:0,127.0.0.1:0,127.0.0.1:0" {
		t.Errorf("port 0: %s", got)
	}
	_, err = load(t, nil, map[string]string{"PCA_STREAMS": "4", "PCA_SERVER_PORT": "65534"})
	if err == nil || !strings.Contains(err.Error(), "PCA_STREAMS") || !strings.Contains(err.Error(), "65535") {
		t.Errorf("streams past port 65535: %v", err)
	}
	if _, err := load(t, nil, map[string]string{"PCA_STREAMS": "2", "PCA_SERVER_PORT": "65534"}); err != nil {
		t.Errorf("2 streams from 65534: %v", err)
	}
}

// The variables keep the names deployments set (netobserv's agent's
// among them); -help lists each with its flag, and the notes.
func TestHelpDocumentsEverySetting(t *testing.T) {
	vars := []string{"ENABLE_PCA", "PCA_FILTER", "PCA_SERVER_ADDR", "PCA_SERVER_PORT", "PCA_STREAMS", "PCA_ALLOW", "PCA_MAX_CLIENTS",
		"PCA_CLIENT_QUEUE", "PCA_NANOSECOND", "INTERFACES", "EXCLUDE_INTERFACES", "LOG_LEVEL", "METRICS_ADDR", "ATTACH_MODE", "SNAPLEN",
		"DEDUP_WINDOW", "RING_BUFFER_SIZE"}
	var got []string
	for _, s := range settings() {
		got = append(got, envflag.Var("", s.flag))
	}
	if strings.Join(got, " ") != strings.Join(vars, " ") {
		t.Errorf("variables %v, want %v", got, vars)
	}
	var out bytes.Buffer
	_, err := Load([]string{"-help"}, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-help: %v", err)
	}
	for _, s := range settings() {
		if want := "-" + s.flag + ", " + envflag.Var("", s.flag); !strings.Contains(out.String(), want) {
			t.Errorf("-help lacks %q:\n%s", want, out.String())
		}
	}
	for _, want := range []string{"-snaplen, SNAPLEN (default 65535)", "PCA_SERVER_PORT+i", "GOMAXPROCS defaults to 1", "cap_add: [BPF, NET_ADMIN, PERFMON]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-help does not mention %s", want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"4096": 4096, "64KiB": 64 << 10, "16MiB": 16 << 20, "16m": 16 << 20, "1G": 1 << 30, " 2 MB ": 2 << 20} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "0", "3GiB", "1.5M"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}
