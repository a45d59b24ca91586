package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// ZeekVersion is the Zeek line the package is built for (its Dockerfile's
// base image, zeek/zeek:8.0.x).
const ZeekVersion = "8.0"

// zeekHelp tells a user where a Zeek for the tests comes from.
const zeekHelp = "install Zeek " + ZeekVersion + " and put its bin/ on PATH or set ZEEK_HOME (see README.md, Tests)"

// FindZeek returns Zeek's installation prefix: $ZEEK_HOME if set, else the
// prefix of the zeek on PATH. It skips the test (fails it under CI) when
// there is none, or when it is not Zeek 8.0.
func FindZeek(t testing.TB) string {
	t.Helper()
	home, err := findZeek()
	if err != nil {
		Missing(t, err.Error())
	}
	return home
}

func findZeek() (string, error) {
	var bin string
	if h := os.Getenv("ZEEK_HOME"); h != "" {
		bin = filepath.Join(h, "bin", "zeek")
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("ZEEK_HOME=%s has no bin/zeek: %s", h, zeekHelp)
		}
	} else {
		p, err := exec.LookPath("zeek")
		if err != nil {
			return "", fmt.Errorf("zeek not found: %s", zeekHelp)
		}
		if bin, err = filepath.EvalSymlinks(p); err != nil {
			return "", fmt.Errorf("zeek: %w", err)
		}
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %v: %s", bin, err, out)
	}
	if !regexp.MustCompile(`version ` + regexp.QuoteMeta(ZeekVersion) + `\.`).Match(out) {
		return "", fmt.Errorf("%s is %s, want Zeek %s.x: %s", bin, strings.TrimSpace(string(out)), ZeekVersion, zeekHelp)
	}
	return filepath.Dir(filepath.Dir(bin)), nil
}

// ZeekImage is Zeek with PANO's package installed by the steps of
// zeek-package/Dockerfile, run for real against a Zeek installation. The
// image's absolute paths are mapped into Root, and Zeek's site and plugin
// folders are private ones under Root (zeek-config, ZEEKPATH and
// ZEEK_PLUGIN_PATH point there), so that a test never changes the Zeek it
// was given.
type ZeekImage struct {
	Home       string            // the Zeek installation used
	Root       string            // where the image's absolute paths live
	SiteDir    string            // the image's `zeek-config --site_dir`
	PluginDir  string            // the image's `zeek-config --plugin_dir`
	Entrypoint string            // the image's ENTRYPOINT, as installed by its RUN steps
	WorkDir    string            // the image's last WORKDIR (the entrypoint's)
	Env        map[string]string // the image's ENV, paths mapped into Root
	Log        string            // every step's output
}

// Environ is the environment a process in the image sees: this
// process's own, with the image's ENV, PATH (the private zeek-config
// first, then Zeek's bin), ZEEKPATH and ZEEK_PLUGIN_PATH; extra
// (KEY=VALUE) override them.
func (z *ZeekImage) Environ(extra ...string) []string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for k, v := range z.Env {
		env[k] = v
	}
	for k, v := range z.zeekEnv() {
		env[k] = v
	}
	for _, kv := range extra {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

func (z *ZeekImage) zeekEnv() map[string]string {
	return map[string]string{
		"PATH":             strings.Join([]string{filepath.Join(z.Root, "zeek-config-bin"), filepath.Join(z.Root, "usr/local/bin"), filepath.Join(z.Home, "bin"), os.Getenv("PATH")}, ":"),
		"ZEEKPATH":         z.zeekPath(),
		"ZEEK_PLUGIN_PATH": z.PluginDir,
	}
}

// zeekPath is the installation's default ZEEKPATH with its site folder
// replaced by the image's.
func (z *ZeekImage) zeekPath() string {
	share := filepath.Join(z.Home, "share", "zeek")
	return strings.Join([]string{".", share, filepath.Join(share, "policy"), z.SiteDir, filepath.Join(share, "builtin-plugins")}, ":")
}

// Zeek returns a command running the installation's zeek as the image
// runs it.
func (z *ZeekImage) Zeek(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(z.Home, "bin", "zeek"), args...)
	cmd.Env = z.Environ()
	return cmd
}

// ZeekImageOptions are the build's --build-arg values.
type ZeekImageOptions struct {
	BuildArgs map[string]string
}

var (
	zeekImageMu    sync.Mutex
	zeekImageCache = map[string]*ZeekImage{}
)

// CachedZeekImage returns the package's image built once per package
// content and Zeek installation: the build is kept in the test cache
// (CacheDir) and shared by every test process, so that the whole-chain
// tests start Zeek exactly as the image does without rebuilding it.
func CachedZeekImage(t testing.TB) *ZeekImage {
	t.Helper()
	home := FindZeek(t)
	pkg := filepath.Join(RepoRoot(t), "zeek-package")
	sum, err := treeHash(pkg, home)
	if err != nil {
		t.Fatalf("zeek-package: %v", err)
	}
	zeekImageMu.Lock()
	defer zeekImageMu.Unlock()
	if z := zeekImageCache[sum]; z != nil {
		return z
	}
	dir := filepath.Join(CacheDir(t), "zeek-image", sum[:16])
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	// Other test processes build the same image at the same time.
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	z, err := loadBuiltImage(dir, home)
	if err != nil {
		_ = os.RemoveAll(dir)
		if z, err = BuildZeekImage(context.Background(), home, pkg, dir, ZeekImageOptions{}); err != nil {
			t.Fatalf("building the zeek image: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	zeekImageCache[sum] = z
	return z
}

// loadBuiltImage re-reads a completed build's description.
func loadBuiltImage(dir, home string) (*ZeekImage, error) {
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
		return nil, err
	}
	steps, err := parseDockerfileSteps(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	return describeImage(dir, home, steps, nil)
}

// treeHash identifies a package's content and the Zeek it is built for.
func treeHash(dir, home string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "zeek %s\n", home)
	if fi, err := os.Stat(filepath.Join(home, "bin", "zeek")); err == nil {
		fmt.Fprintf(h, "%d %d\n", fi.Size(), fi.ModTime().UnixNano())
	}
	err := walkBuildContext(dir, func(rel string, d fs.DirEntry) error {
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", rel, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// walkBuildContext calls fn for what docker build would send of dir: every
// file and folder that dir/.dockerignore does not exclude.
func walkBuildContext(dir string, fn func(rel string, d fs.DirEntry) error) error {
	var patterns []string
	if f, err := os.Open(filepath.Join(dir, ".dockerignore")); err == nil {
		patterns, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return fmt.Errorf(".dockerignore: %w", err)
		}
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return fmt.Errorf(".dockerignore: %w", err)
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		skip, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			return err
		}
		if skip {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		return fn(rel, d)
	})
}

// imagePaths are the absolute folders the Dockerfile uses, mapped into
// Root. A RUN step naming any other absolute path fails the build here:
// map it too, so that no test writes outside its own folders.
var imagePaths = []string{"/usr/src/", "/usr/local/", "/zeek/"}

func mapImagePaths(root, s string) (string, error) {
	re := regexp.MustCompile(`(^|[\s=:"'])(/[A-Za-z0-9._/-]*)`)
	var bad error
	out := re.ReplaceAllStringFunc(s, func(m string) string {
		i := strings.Index(m, "/")
		lead, p := m[:i], m[i:]
		for _, pre := range imagePaths {
			if strings.HasPrefix(p+"/", pre) {
				return lead + filepath.Join(root, p)
			}
		}
		if p == "/dev/null" {
			return m
		}
		bad = fmt.Errorf("the Dockerfile uses %s, which the tests do not map (testenv.imagePaths)", p)
		return m
	})
	return out, bad
}

// BuildZeekImage runs zeek-package/Dockerfile's steps against the Zeek at
// home, with the image's paths under dir:
//   - ARG and ENV as Docker expands them;
//   - COPY . copies the package (less what .dockerignore leaves out);
//   - RUN runs with /bin/sh -c in the image's WORKDIR, except apt-get
//     steps: the packages they name must already be installed (Zeek's
//     install.sh installs them);
//   - ENTRYPOINT and WORKDIR are recorded for StartZeek.
//
// zeek-config answers the image's site and plugin folders (dir/site,
// dir/plugins); the site folder starts as a copy of the installation's.
func BuildZeekImage(ctx context.Context, home, pkg, dir string, opts ZeekImageOptions) (*ZeekImage, error) {
	// usr/local/bin is there in every Debian image.
	for _, sub := range []string{"site", "plugins", "zeek-config-bin", "usr/local/bin"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	realConfig := filepath.Join(home, "bin", "zeek-config")
	realSite, err := exec.Command(realConfig, "--site_dir").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --site_dir: %w", realConfig, err)
	}
	if err := os.CopyFS(filepath.Join(dir, "site"), os.DirFS(strings.TrimSpace(string(realSite)))); err != nil {
		return nil, fmt.Errorf("copying Zeek's site folder: %w", err)
	}
	wrapper := fmt.Sprintf(`#!/bin/sh
# zeek-config as the image answers it: its own site and plugin folders.
case "$1" in
--site_dir) echo %q ;;
--plugin_dir) echo %q ;;
--zeekpath) echo %q ;;
*) exec %q "$@" ;;
esac
`, filepath.Join(dir, "site"), filepath.Join(dir, "plugins"), (&ZeekImage{Home: home, SiteDir: filepath.Join(dir, "site")}).zeekPath(), realConfig)
	if err := os.WriteFile(filepath.Join(dir, "zeek-config-bin", "zeek-config"), []byte(wrapper), 0o755); err != nil {
		return nil, err
	}
	df, err := os.ReadFile(filepath.Join(pkg, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	// Kept beside the build, for describing it again (CachedZeekImage).
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o644); err != nil {
		return nil, err
	}
	steps, err := parseDockerfileSteps(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	z, err := describeImage(dir, home, steps, opts.BuildArgs)
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(z.Log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	if err := z.runSteps(ctx, pkg, steps, opts.BuildArgs, logf); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, svcLogTail(z.Log, 40))
	}
	return z, nil
}

type dockerStep struct {
	cmd  string   // lower-case instruction
	args []string // its arguments, JSON form or one shell string
	line int
	text string
}

func parseDockerfileSteps(path string) ([]dockerStep, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var steps []dockerStep
	for _, n := range res.AST.Children {
		st := dockerStep{cmd: strings.ToLower(n.Value), line: n.StartLine, text: n.Original}
		for a := n.Next; a != nil; a = a.Next {
			st.args = append(st.args, a.Value)
		}
		steps = append(steps, st)
	}
	return steps, nil
}

// describeImage reads what a build records (ENV, WORKDIR, ENTRYPOINT)
// without running anything.
func describeImage(dir, home string, steps []dockerStep, buildArgs map[string]string) (*ZeekImage, error) {
	z := &ZeekImage{Home: home, Root: dir, SiteDir: filepath.Join(dir, "site"), PluginDir: filepath.Join(dir, "plugins"), Env: map[string]string{}, Log: filepath.Join(dir, "build.log")}
	vars := map[string]string{}
	for _, st := range steps {
		if err := z.record(st, vars, buildArgs); err != nil {
			return nil, err
		}
	}
	return z, nil
}

// record applies one instruction's effect on the image's description.
func (z *ZeekImage) record(st dockerStep, vars, buildArgs map[string]string) error {
	expand := func(s string) string {
		return os.Expand(s, func(k string) string { return vars[k] })
	}
	switch st.cmd {
	case "arg":
		for _, a := range st.args {
			k, v, _ := strings.Cut(a, "=")
			if b, ok := buildArgs[k]; ok {
				v = b
			}
			vars[k] = v
		}
	case "env":
		// The parser gives key, value pairs.
		for i := 0; i+1 < len(st.args); i += 2 {
			v, err := mapImagePaths(z.Root, expand(st.args[i+1]))
			if err != nil {
				return fmt.Errorf("line %d: %w", st.line, err)
			}
			z.Env[st.args[i]] = v
			vars[st.args[i]] = v
		}
	case "workdir":
		w, err := mapImagePaths(z.Root, expand(st.args[0]))
		if err != nil {
			return fmt.Errorf("line %d: %w", st.line, err)
		}
		z.WorkDir = w
	case "entrypoint":
		if len(st.args) == 0 {
			return fmt.Errorf("line %d: empty ENTRYPOINT", st.line)
		}
		e, err := mapImagePaths(z.Root, st.args[0])
		if err != nil {
			return fmt.Errorf("line %d: %w", st.line, err)
		}
		z.Entrypoint = e
	}
	return nil
}

// runSteps carries out the Dockerfile's build steps, in order: ARG and
// ENV values and the WORKDIR as each RUN sees them. (describeImage has
// already recorded ENV, WORKDIR and ENTRYPOINT as the finished image has
// them.)
func (z *ZeekImage) runSteps(ctx context.Context, pkg string, steps []dockerStep, buildArgs map[string]string, log io.Writer) error {
	vars := map[string]string{} // ARG and ENV so far
	workdir := z.Root
	for _, st := range steps {
		fmt.Fprintf(log, "### step line %d: %s\n", st.line, st.text)
		switch st.cmd {
		case "arg", "env":
			if err := z.record(st, vars, buildArgs); err != nil {
				return err
			}
		case "workdir":
			if err := z.record(st, vars, buildArgs); err != nil {
				return err
			}
			workdir = z.WorkDir
			if err := os.MkdirAll(workdir, 0o755); err != nil {
				return err
			}
		case "copy":
			if len(st.args) != 2 || st.args[0] != "." {
				return fmt.Errorf("line %d: only COPY . DEST is supported here: %s", st.line, st.text)
			}
			dest, err := mapImagePaths(z.Root, st.args[1])
			if err != nil {
				return fmt.Errorf("line %d: %w", st.line, err)
			}
			if err := copyBuildContext(pkg, dest); err != nil {
				return fmt.Errorf("line %d: %w", st.line, err)
			}
		case "run":
			if err := z.run(ctx, st, vars, workdir, log); err != nil {
				return err
			}
		case "from", "volume", "entrypoint", "expose", "label", "cmd":
			// Nothing to run; describeImage recorded what matters.
		default:
			return fmt.Errorf("line %d: instruction %s is not carried out by the tests: teach testenv.ZeekImage", st.line, strings.ToUpper(st.cmd))
		}
	}
	if z.Entrypoint == "" {
		return fmt.Errorf("the Dockerfile has no ENTRYPOINT")
	}
	if _, err := os.Stat(z.Entrypoint); err != nil {
		return fmt.Errorf("the ENTRYPOINT is not installed by the RUN steps: %w", err)
	}
	return nil
}

var aptInstall = regexp.MustCompile(`apt-get install ([^&;|]*)`)

func (z *ZeekImage) run(ctx context.Context, st dockerStep, vars map[string]string, workdir string, log io.Writer) error {
	script := strings.Join(st.args, " ")
	if strings.Contains(script, "apt-get ") {
		// Installing packages is the one step the tests leave to the
		// machine: check they are there instead.
		m := aptInstall.FindStringSubmatch(script)
		if m == nil {
			return fmt.Errorf("line %d: an apt-get step without apt-get install", st.line)
		}
		for _, p := range strings.Fields(m[1]) {
			if strings.HasPrefix(p, "-") {
				continue
			}
			out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", p).Output()
			if err != nil || !strings.Contains(string(out), "install ok installed") {
				return fmt.Errorf("line %d: the image installs the Debian package %s, which this machine lacks: apt-get install %s", st.line, p, p)
			}
		}
		fmt.Fprintf(log, "(packages present)\n")
		return nil
	}
	mapped, err := mapImagePaths(z.Root, script)
	if err != nil {
		return fmt.Errorf("line %d: %w", st.line, err)
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", mapped)
	cmd.Dir = workdir
	var extra []string
	for k, v := range vars {
		extra = append(extra, k+"="+v)
	}
	cmd.Env = z.Environ(extra...)
	cmd.Stdout, cmd.Stderr = log, log
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("line %d of the Dockerfile (%s) failed after %s: %w", st.line, strings.Join(strings.Fields(script), " "), time.Since(start).Round(time.Millisecond), err)
	}
	return nil
}

// copyBuildContext copies the package as COPY . does, less the folders
// .dockerignore names.
func copyBuildContext(src, dest string) error {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	return walkBuildContext(src, func(rel string, d fs.DirEntry) error {
		p := filepath.Join(src, rel)
		target := filepath.Join(dest, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, info.Mode().Perm())
		}
	})
}

// ZeekOptions configure StartZeek; they are the image's environment
// variables (see zeek-package/docker/entrypoint.sh).
type ZeekOptions struct {
	Addr    string   // PCA_SERVER_ADDR, default 127.0.0.1
	Port    int      // PCA_SERVER_PORT (required)
	Workers int      // ZEEK_WORKERS, default 1
	LogDir  string   // ZEEK_LOG_DIR, default a new folder of the test's
	Env     []string // more KEY=VALUE, e.g. ZEEK_ARGS
	// Netns, if set, runs the entrypoint inside that network namespace
	// (ip netns exec, which also bind-mounts /etc/netns/<name>/* over
	// /etc), as a container runs in a network namespace of its own.
	Netns string
}

// Zeek is the image's entrypoint running.
type Zeek struct {
	LogDir string // where dns.log (or worker-i/dns.log) is written
	Output string // the entrypoint's and Zeek's stdout and stderr
	proc   *svcProc
}

// StartZeek runs the image's entrypoint exactly as the container does
// (its ENV, WORKDIR and ENTRYPOINT, with opts as the compose file's
// environment) until the test ends. It returns at once: Zeek connects to
// the stream by itself, and retries until the server is there.
func StartZeek(t testing.TB, img *ZeekImage, opts ZeekOptions) *Zeek {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1"
	}
	if opts.Workers == 0 {
		opts.Workers = 1
	}
	if opts.LogDir == "" {
		opts.LogDir = t.TempDir()
	}
	z := &Zeek{LogDir: opts.LogDir, Output: filepath.Join(t.TempDir(), "zeek.out")}
	cmd := exec.Command(img.Entrypoint)
	if opts.Netns != "" {
		// ip netns exec execs the entrypoint in place: Pid and signals
		// stay the entrypoint's own.
		cmd = exec.Command("ip", "netns", "exec", opts.Netns, img.Entrypoint)
	}
	cmd.Dir = img.WorkDir
	cmd.Env = img.Environ(append([]string{
		"PCA_SERVER_ADDR=" + opts.Addr,
		fmt.Sprintf("PCA_SERVER_PORT=%d", opts.Port),
		fmt.Sprintf("ZEEK_WORKERS=%d", opts.Workers),
		"ZEEK_LOG_DIR=" + opts.LogDir,
	}, opts.Env...)...)
	p, err := svcStart("zeek", z.Output, cmd)
	if err != nil {
		t.Fatal(err)
	}
	z.proc = p
	svcLogOnFailure(t, "zeek", z.Output, 60)
	t.Cleanup(func() { p.stop(10 * time.Second) })
	return z
}

// Pid is the entrypoint's process (Zeek itself with one worker).
func (z *Zeek) Pid() int { return z.proc.cmd.Process.Pid }

// Exited reports whether the entrypoint has ended, and how.
func (z *Zeek) Exited() (bool, error) {
	if !z.proc.exited() {
		return false, nil
	}
	return true, z.proc.err
}

// Kill kills the entrypoint and every Zeek it started with SIGKILL, as a
// crash or an out-of-memory kill ends them, and waits for the entrypoint.
func (z *Zeek) Kill() {
	z.proc.kill()
}

// Stop sends SIGTERM, as docker stop does, and waits up to grace for the
// entrypoint to exit (then kills it). It returns how long the exit took
// and the exit status.
func (z *Zeek) Stop(grace time.Duration) (time.Duration, error) {
	start := time.Now()
	if !z.proc.exited() {
		_ = z.proc.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-z.proc.done:
		case <-time.After(grace):
			_ = syscall.Kill(-z.proc.cmd.Process.Pid, syscall.SIGKILL)
			<-z.proc.done
			return time.Since(start), fmt.Errorf("zeek did not exit within %s of SIGTERM", grace)
		}
	}
	return time.Since(start), z.proc.err
}
