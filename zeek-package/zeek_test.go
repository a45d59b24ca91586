package zeekpackage_test

// The package built and run by real Zeek: the Dockerfile's own steps, the
// plugin's options, every script parsed, and the btests.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// TestImageBuild runs zeek-package/Dockerfile's steps against real Zeek,
// with RUN_TESTS=1 as build-me.sh's users can: configure, build and
// install the plugin, install the scripts as site script "pano", then the
// image's own checks (zeek -NN lists the packet source; zeek -a local
// pano parses) and the package's btests. A failing step fails the test
// with its Dockerfile line and output, as it would fail ./build-me.sh.
func TestImageBuild(t *testing.T) {
	home := testenv.FindZeek(t)
	testenv.RequireProgram(t, "btest", "btest from PyPI: pip install btest")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	realPlugins := pluginFolders(t, home)
	img, err := testenv.BuildZeekImage(ctx, home, ".", dir, testenv.ZeekImageOptions{BuildArgs: map[string]string{"RUN_TESTS": "1"}})
	if err != nil {
		t.Fatalf("the image's build steps failed:\n%v", err)
	}
	log, err := os.ReadFile(img.Log)
	if err != nil {
		t.Fatal(err)
	}
	// The btests did run, all of them.
	tests, _ := filepath.Glob("tests/pano/*.zeek")
	want := regexp.MustCompile(`all \d+ tests successful`)
	if m := want.Find(log); m == nil || !strings.Contains(string(m), "all "+itoa(len(tests))+" tests") {
		t.Errorf("the build log does not report all %d btests successful:\n%s", len(tests), log)
	}
	// The plugin is installed where the image's Zeek finds it, with
	// only its own options file as its scripts.
	scripts, _ := filepath.Glob(filepath.Join(img.PluginDir, "Pano_PcapOverTcp", "scripts", "*"))
	if len(scripts) != 1 || filepath.Base(scripts[0]) != "__load__.zeek" {
		t.Errorf("the installed plugin ships scripts %v, want only its __load__.zeek (the package's scripts load by name, as pano)", scripts)
	}
	if _, err := os.Stat(filepath.Join(img.SiteDir, "pano", "__load__.zeek")); err != nil {
		t.Errorf("site script pano is not installed: %v", err)
	}
	if _, err := os.Stat(img.Entrypoint); err != nil {
		t.Errorf("entrypoint: %v", err)
	}
	// The install went where zeek-config said, not into the Zeek the
	// plugin was built against.
	if after := pluginFolders(t, home); after != realPlugins {
		t.Errorf("the build changed the plugin folder of the Zeek at %s: %q, then %q", home, realPlugins, after)
	}
}

// pluginFolders lists the plugins installed in a Zeek's own plugin folder.
func pluginFolders(t *testing.T, home string) string {
	t.Helper()
	dir, err := exec.Command(filepath.Join(home, "bin", "zeek-config"), "--plugin_dir").Output()
	if err != nil {
		t.Fatal(err)
	}
	m, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(dir)), "*"))
	return strings.Join(m, " ")
}

// pluginOptions are the options plugin/scripts/__load__.zeek declares,
// with a value each that is not its default.
func pluginOptions(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("plugin/scripts/__load__.zeek")
	if err != nil {
		t.Fatal(err)
	}
	opts := map[string]string{}
	for _, m := range regexp.MustCompile(`const (\w+): (count|interval) = [^;]+&redef;`).FindAllStringSubmatch(string(b), -1) {
		opts[m[1]] = map[string]string{"count": "12345", "interval": "7sec"}[m[2]]
	}
	if len(opts) < 5 {
		t.Fatalf("found %d options in plugin/scripts/__load__.zeek, want at least 5", len(opts))
	}
	return opts
}

// Every option of the packet source exists as soon as the plugin is
// installed, without the package's scripts, and takes a command-line
// redef, as README.md shows (zeek -i pcapovertcp::... PcapOverTcp::X=...).
func TestPluginOptions(t *testing.T) {
	img := testenv.CachedZeekImage(t)
	for name, val := range pluginOptions(t) {
		id := "PcapOverTcp::" + name
		out, err := img.Zeek(context.Background(), id+"="+val, "-e", "print "+id).CombinedOutput()
		if err != nil {
			t.Errorf("zeek %s=%s: %v\n%s", id, val, err, out)
			continue
		}
		got := strings.TrimSpace(string(out))
		if got != val && got != strings.TrimSuffix(val, "sec")+".0 secs" {
			t.Errorf("%s=%s on the command line: Zeek printed %q", id, val, got)
		}
	}
	// Without the plugin the same line fails: the check above can fail.
	cmd := img.Zeek(context.Background(), "PcapOverTcp::read_size=1", "-e", "print PcapOverTcp::read_size")
	cmd.Env = append(cmd.Env, "ZEEK_PLUGIN_PATH="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "unknown identifier") {
		t.Errorf("without the plugin, PcapOverTcp::read_size was accepted (%v): %s", err, out)
	}
}

// loadedScripts returns the scripts Zeek loads for args, less Zeek's own.
func loadedScripts(t *testing.T, img *testenv.ZeekImage, args ...string) []string {
	t.Helper()
	probe := filepath.Join(t.TempDir(), "probe.zeek")
	err := os.WriteFile(probe, []byte(`event zeek_script_loaded(path: string, level: count) { print path; }`+"\n"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	out, err := img.Zeek(context.Background(), append([]string{probe}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("zeek %v: %v\n%s", args, err, out)
	}
	share := filepath.Join(img.Home, "share", "zeek") + "/"
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(l, share) || l == probe {
			continue
		}
		got = append(got, strings.TrimPrefix(l, img.Root+"/"))
	}
	return got
}

// Installing the plugin leaves Zeek stock but for the packet source's
// options; loading pano adds the package's scripts, each once, from the
// site folder. (Built with the package's scripts inside the plugin, Zeek
// loaded them with the plugin alone, and twice with pano: "already
// defined (Pano::forwarded)".)
func TestScriptsLoadWhereExpected(t *testing.T) {
	img := testenv.CachedZeekImage(t)
	alone := loadedScripts(t, img)
	if want := []string{"plugins/Pano_PcapOverTcp/scripts/__load__.zeek"}; strings.Join(alone, " ") != strings.Join(want, " ") {
		t.Errorf("with the plugin alone Zeek loads %q, want only %q", alone, want)
	}
	withPano := loadedScripts(t, img, "pano")
	seen := map[string]int{}
	for _, p := range withPano {
		seen[filepath.Base(p)]++
		if strings.HasPrefix(p, "plugins/") && filepath.Base(p) != "__load__.zeek" {
			t.Errorf("a package script loads from the plugin: %s", p)
		}
	}
	pkgScripts, _ := filepath.Glob("scripts/*.zeek")
	for _, s := range pkgScripts {
		n := seen[filepath.Base(s)]
		if filepath.Base(s) == "__load__.zeek" {
			n-- // the plugin's own __load__.zeek
		}
		if n != 1 {
			t.Errorf("%s loaded %d times with pano, want once (loaded: %q)", s, n, withPano)
		}
	}
}

// Every script of the package and of the plugin parses with real Zeek
// (zeek -a: parse only), alone and all together as the image runs them.
func TestScriptsParse(t *testing.T) {
	img := testenv.CachedZeekImage(t)
	files, _ := filepath.Glob("scripts/*.zeek")
	more, _ := filepath.Glob("plugin/scripts/*.zeek")
	files = append(files, more...)
	if len(files) < 5 {
		t.Fatalf("found %d scripts", len(files))
	}
	for _, f := range files {
		abs, _ := filepath.Abs(f)
		if out, err := img.Zeek(context.Background(), "-a", abs).CombinedOutput(); err != nil {
			t.Errorf("zeek -a %s: %v\n%s", f, err, out)
		}
	}
	if out, err := img.Zeek(context.Background(), "-a", "local", "pano", "Pano::only_forwarded_logs=T").CombinedOutput(); err != nil {
		t.Errorf("zeek -a local pano: %v\n%s", err, out)
	}
}
