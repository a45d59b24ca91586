package stacktest

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pano-observability/pano/internal/testenv"
)

// localImage is how images built by build-me.sh are named: never pulled,
// and docker.io/library/pano-* cannot be claimed by anybody else.
var localImage = regexp.MustCompile(`^pano-[a-z0-9-]+:local$`)

// pinnedRef reports whether an image reference names one version: a digest,
// or a tag holding a version number (x.y at least), never latest.
func pinnedRef(ref string) error {
	if strings.Contains(ref, "@sha256:") {
		return nil
	}
	name, tag := ref, ""
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		name, tag = ref[:i], ref[i+1:]
	}
	switch {
	case name == "":
		return fmt.Errorf("empty image name")
	case tag == "":
		return fmt.Errorf("no tag (means latest)")
	case tag == "latest":
		return fmt.Errorf("tag latest")
	case !regexp.MustCompile(`\d+\.\d+`).MatchString(tag):
		return fmt.Errorf("tag %q names no version (x.y)", tag)
	}
	return nil
}

func TestPinnedRef(t *testing.T) {
	for ref, ok := range map[string]bool{
		"apache/kafka:4.3.1": true,
		"quay.io/netobserv/flowlogs-pipeline:v1.11.0-community": true,
		"debian:12.12-slim":                         true,
		"localhost:5000/x:1.2":                      true,
		"busybox@sha256:" + strings.Repeat("a", 64): true,
		"debian":                 false,
		"debian:latest":          false,
		"debian:bookworm-slim":   false,
		"localhost:5000/x":       false,
		"grafana/grafana-oss:12": false,
	} {
		if err := pinnedRef(ref); (err == nil) != ok {
			t.Errorf("pinnedRef(%q) = %v, want pinned=%v", ref, err, ok)
		}
	}
}

func TestComposeImagesArePinnedOrBuiltHere(t *testing.T) {
	root := testenv.RepoRoot(t)
	p := mustLoad(t, root)
	built := buildMeImages(t, root)
	for name, s := range p.Services {
		switch {
		case s.Image == "":
			t.Errorf("%s: no image name", name)
		case s.Build != nil:
			if !localImage.MatchString(s.Image) {
				t.Errorf("%s: built image %q must be named pano-NAME:local", name, s.Image)
			}
			if _, ok := built[s.Image]; !ok {
				t.Errorf("%s: image %s is built by compose but not by build-me.sh", name, s.Image)
			}
		default:
			if localImage.MatchString(s.Image) {
				t.Errorf("%s: image %s has no build section", name, s.Image)
			} else if err := pinnedRef(s.Image); err != nil {
				t.Errorf("%s: image %s is not pinned: %v", name, s.Image, err)
			}
		}
	}
}

// Every service that uses a built image carries the same build definition,
// so that whichever profile is active compose can build it.
func TestComposeBuildsAgreePerImage(t *testing.T) {
	p := mustLoad(t, testenv.RepoRoot(t))
	first := map[string]string{}
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if s.Build == nil {
			continue
		}
		def := fmt.Sprintf("%s|%s|%s", s.Build.Context, s.Build.Dockerfile, s.Build.Target)
		if prev, ok := first[s.Image]; ok && prev != def {
			t.Errorf("%s builds %s from %s, another service from %s", name, s.Image, def, prev)
		}
		first[s.Image] = def

		df := s.Build.Dockerfile
		if !filepath.IsAbs(df) {
			df = filepath.Join(s.Build.Context, df)
		}
		stages, err := parseDockerfile(df)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if s.Build.Target != "" && !slices.ContainsFunc(stages, func(st stage) bool { return st.name == s.Build.Target }) {
			t.Errorf("%s: build target %q is not a stage of %s", name, s.Build.Target, df)
		}
	}
}

// buildMeImages reads build-me.sh's BUILDS list (service:image) and checks
// each entry against docker-compose.yml.
func buildMeImages(t testing.TB, root string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "build-me.sh"))
	if err != nil {
		t.Fatalf("build-me.sh: %v", err)
	}
	m := regexp.MustCompile(`(?s)\nBUILDS=\(\n(.*?)\n\)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("build-me.sh has no BUILDS=( ... ) list")
	}
	images := map[string]string{}
	for _, line := range strings.Fields(string(m[1])) {
		service, image, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("build-me.sh: BUILDS entry %q is not service:image", line)
		}
		images[image] = service
	}

	p := mustLoad(t, root)
	for image, service := range images {
		s, ok := p.Services[service]
		switch {
		case !ok:
			t.Errorf("build-me.sh builds service %s, which docker-compose.yml does not define", service)
		case s.Build == nil:
			t.Errorf("build-me.sh builds service %s, which has no build section", service)
		case s.Image != image:
			t.Errorf("build-me.sh expects service %s to build %s; docker-compose.yml says %s", service, image, s.Image)
		}
	}
	return images
}

type stage struct {
	base, name string
	line       int
}

// parseDockerfile returns the FROM lines of a Dockerfile, with ARG defaults
// declared before the first FROM substituted.
func parseDockerfile(path string) ([]stage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dockerfile: %w", err)
	}
	defer f.Close()
	args := map[string]string{}
	var stages []stage
	sc := bufio.NewScanner(f)
	n, logical := 0, ""
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			logical += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, logical = logical+line, ""
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "ARG":
			if len(stages) == 0 && len(fields) > 1 {
				k, v, _ := strings.Cut(fields[1], "=")
				args[k] = strings.Trim(v, `"'`)
			}
		case "FROM":
			rest := fields[1:]
			for len(rest) > 0 && strings.HasPrefix(rest[0], "--") {
				rest = rest[1:]
			}
			if len(rest) == 0 {
				return nil, fmt.Errorf("%s:%d: FROM without an image", path, n)
			}
			st := stage{base: os.Expand(rest[0], func(k string) string { return args[k] }), line: n}
			if len(rest) >= 3 && strings.EqualFold(rest[1], "AS") {
				st.name = rest[2]
			}
			stages = append(stages, st)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM", path)
	}
	return stages, nil
}

// Every Dockerfile in the repository starts from pinned images.
func TestDockerfileBasesArePinned(t *testing.T) {
	root := testenv.RepoRoot(t)
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "build") {
				return filepath.SkipDir
			}
			return nil
		}
		if (name == "Dockerfile" || strings.HasPrefix(name, "Dockerfile.") || strings.HasSuffix(name, ".Dockerfile")) &&
			!strings.HasSuffix(name, ".dockerignore") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no Dockerfile found in the repository")
	}
	for _, df := range files {
		rel, _ := filepath.Rel(root, df)
		stages, err := parseDockerfile(df)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		var names []string
		for _, st := range stages {
			if st.base != "scratch" && !slices.Contains(names, st.base) {
				if err := pinnedRef(st.base); err != nil {
					t.Errorf("%s:%d: base image %s is not pinned: %v", rel, st.line, st.base, err)
				}
			}
			if st.name != "" {
				names = append(names, st.name)
			}
		}
	}
	// The Go images build with the Go version go.mod asks for, at least.
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	for _, rel := range []string{"agent/Dockerfile", "shim/Dockerfile"} {
		stages, err := parseDockerfile(filepath.Join(root, rel))
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if goVer == nil || !strings.HasPrefix(stages[0].base, "golang:"+string(goVer[1])+".") {
			t.Errorf("%s builds from %s; go.mod wants go %s", rel, stages[0].base, goVer[1])
		}
	}
}
