package stacktest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// stubDocker is a docker command that records its arguments and fails on
// request: build-me.sh's control flow is tested without a Docker engine.
const stubDocker = `#!/usr/bin/env bash
echo "$*" >>"$STUB_LOG"
case "$*" in
*"$STUB_FAIL_ON"*) if [[ -n $STUB_FAIL_ON ]]; then echo "stub: failing on: $*" >&2; exit 17; fi ;;
esac
exit 0
`

type buildMeRun struct {
	code          int
	output, calls string
}

func runBuildMe(t *testing.T, failOn string, args ...string) buildMeRun {
	t.Helper()
	testenv.RequireProgram(t, "bash", "bash")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte(stubDocker), 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "calls.log")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(testenv.RepoRoot(t), "build-me.sh"), args...)
	cmd.Env = []string{"PATH=" + dir + ":/usr/local/bin:/usr/bin:/bin", "STUB_LOG=" + log, "STUB_FAIL_ON=" + failOn, "HOME=" + dir}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("build-me.sh: %v", err)
	}
	calls, _ := os.ReadFile(log)
	return buildMeRun{code, string(out), string(calls)}
}

func TestBuildMeBuildsEveryImage(t *testing.T) {
	r := runBuildMe(t, "")
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.output)
	}
	images := buildMeImages(t, testenv.RepoRoot(t))
	var builds []string
	for _, l := range strings.Split(r.calls, "\n") {
		if i := strings.Index(l, " build "); i >= 0 && strings.HasPrefix(l, "compose ") {
			builds = append(builds, strings.TrimSpace(l[i+len(" build "):]))
		}
	}
	if len(builds) != len(images) {
		t.Errorf("build-me.sh ran %d builds %v for %d images", len(builds), builds, len(images))
	}
	for image, service := range images {
		if !strings.Contains(r.calls, "compose --profile online --profile offline --profile web build "+service+"\n") {
			t.Errorf("no build of service %s (%s); calls:\n%s", service, image, r.calls)
		}
		if !strings.Contains(r.output, image) {
			t.Errorf("the output does not name %s", image)
		}
	}
	if !strings.Contains(r.calls, "pull --ignore-buildable") {
		t.Errorf("published images were not pulled; calls:\n%s", r.calls)
	}
	for _, pre := range []string{"info", "compose version", "buildx version"} {
		if !strings.Contains(r.calls, pre+"\n") {
			t.Errorf("prerequisite check %q not run", pre)
		}
	}
}

func TestBuildMeStopsAtTheFirstFailure(t *testing.T) {
	r := runBuildMe(t, "build zeek")
	if r.code != 17 {
		t.Errorf("exit %d, want the failing command's 17", r.code)
	}
	if !strings.Contains(r.output, "FAILED while building pano-zeek:local") {
		t.Errorf("the failure does not name the image:\n%s", r.output)
	}
	if strings.Contains(r.calls, "build shim") || strings.Contains(r.calls, "pull") {
		t.Errorf("build-me.sh went on after the failure; calls:\n%s", r.calls)
	}
	if !strings.Contains(r.calls, "build agent") {
		t.Errorf("the image before the failing one was not built; calls:\n%s", r.calls)
	}
}

func TestBuildMeNamesTheMissingPrerequisite(t *testing.T) {
	for _, tc := range []struct{ failOn, want string }{
		{"info", "cannot talk to the Docker daemon"},
		{"compose version", "docker compose plugin"},
		{"buildx version", "docker buildx plugin"},
	} {
		r := runBuildMe(t, tc.failOn)
		if r.code == 0 || !strings.Contains(r.output, tc.want) || !strings.Contains(r.output, "fix:") {
			t.Errorf("with %q failing: exit %d, output:\n%s", tc.failOn, r.code, r.output)
		}
		if strings.Contains(r.calls, " build ") {
			t.Errorf("with %q failing it still built; calls:\n%s", tc.failOn, r.calls)
		}
	}
}

func TestBuildMeArguments(t *testing.T) {
	if r := runBuildMe(t, "", "--no-pull"); r.code != 0 || strings.Contains(r.calls, "pull") {
		t.Errorf("--no-pull: exit %d, calls:\n%s", r.code, r.calls)
	}
	if r := runBuildMe(t, "", "--bogus"); r.code != 2 || !strings.Contains(r.output, "unknown argument") || r.calls != "" {
		t.Errorf("--bogus: exit %d, output %q, calls %q", r.code, r.output, r.calls)
	}
}
