package main

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The built agent refuses a malformed setting at start: exit status 2
// and an error naming the variable, before it loads or serves anything.
// A flag wins over its variable, and -help lists the variables.
func TestSettingsFailLoudly(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "pano-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	run := func(t *testing.T, env []string, args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &exit) && ctx.Err() == nil:
			return string(out), exit.ExitCode()
		}
		t.Fatalf("%v %q: %v (the agent started?)\n%s", env, args, err, out)
		return "", 0
	}

	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{env: []string{"DEDUP_WINDOW=5"}, want: "DEDUP_WINDOW"},
		{env: []string{"PCA_MAX_CLIENTS=50k"}, want: "PCA_MAX_CLIENTS"},
		{env: []string{"ENABLE_PCA=yes"}, want: "ENABLE_PCA"},
		{env: []string{"PCA_SERVER_PORT=http"}, want: "PCA_SERVER_PORT"},
		{env: []string{"PCA_FILTER=icmp,1"}, want: "PCA_FILTER"},
		// ATTACH_MODE is read before SNAPLEN: the error names SNAPLEN only
		// because -attach-mode kept the malformed variable from being read.
		{env: []string{"ATTACH_MODE=xdp", "SNAPLEN=0"}, args: []string{"-attach-mode=tc"}, want: "SNAPLEN"},
	} {
		t.Run(strings.Join(tc.env, ","), func(t *testing.T) {
			out, code := run(t, tc.env, tc.args...)
			if code != 2 || !strings.Contains(out, `"`+tc.want+`"`) || strings.Contains(out, "level=") {
				t.Fatalf("exit %d, output:\n%s\nwant exit 2 and an error naming %s, nothing logged", code, out, tc.want)
			}
			if len(tc.args) > 0 && strings.Contains(out, "ATTACH_MODE") {
				t.Fatalf("ATTACH_MODE was read despite -attach-mode:\n%s", out)
			}
		})
	}

	out, code := run(t, nil, "-help")
	for _, want := range []string{"-pca-filter, PCA_FILTER (default udp,53;tcp,53)", "-enable-pca, ENABLE_PCA", "-ring-buffer-size, RING_BUFFER_SIZE", "GOMAXPROCS"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("-help: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
}
