package stacktest

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// dockerignore is a parsed .dockerignore: exclusion patterns relative to
// the build context (negations are not used here and are refused).
type dockerignore []*regexp.Regexp

func readDockerignore(t *testing.T, path string) dockerignore {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer f.Close()
	var d dockerignore
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Fatalf("%s: negated pattern %q; this check does not model them", path, l)
		}
		d = append(d, globRegexp(strings.Trim(filepath.Clean(l), "/")))
	}
	return d
}

// globRegexp turns a .dockerignore pattern into a regular expression:
// ** crosses directories, * and ? do not.
func globRegexp(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// excludes reports whether rel (slash-separated, relative to the context)
// is left out: it or one of its parent directories matches a pattern.
func (d dockerignore) excludes(rel string) bool {
	parts := strings.Split(rel, "/")
	for i := 1; i <= len(parts); i++ {
		prefix := strings.Join(parts[:i], "/")
		for _, re := range d {
			if re.MatchString(prefix) {
				return true
			}
		}
	}
	return false
}

func TestDockerignoreMatching(t *testing.T) {
	d := dockerignore{globRegexp(".git"), globRegexp("**/*.test"), globRegexp("**/testdata"), globRegexp("demo1")}
	for rel, want := range map[string]bool{
		".git/config": true, "agent/x.test": true, "x.test": true, "shim/zeeklog/testdata/a": true,
		"demo1/queries.txt": true, "agent/bpf/capture_bpfel.o": false, "go.mod": false, "agent/testdatax/a": false,
	} {
		if got := d.excludes(rel); got != want {
			t.Errorf("excludes(%q) = %v, want %v", rel, got, want)
		}
	}
}

// The Go images' build contexts hold every file their build reads: the
// module's packages the command imports and the files they embed (the
// eBPF objects). A .dockerignore that left one out would break the image
// build on the user's machine only.
func TestGoImageContextsHoldTheirSources(t *testing.T) {
	root := testenv.RepoRoot(t)
	p := mustLoad(t, root)
	for _, tc := range []struct{ service, pkg string }{
		{"agent", "./agent/cmd/pano-agent"},
		{"shim", "./shim/cmd/pano-shim"},
	} {
		s := p.Services[tc.service]
		if s.Build == nil {
			t.Fatalf("%s has no build section", tc.service)
		}
		if s.Build.Context != root {
			t.Errorf("%s: build context %s, want the repository root (one Go module)", tc.service, s.Build.Context)
		}
		df := filepath.Join(s.Build.Context, s.Build.Dockerfile)
		ign := readDockerignore(t, df+".dockerignore")
		dockerfile, err := os.ReadFile(df)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(dockerfile), tc.pkg) {
			t.Errorf("%s does not build %s", df, tc.pkg)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-json=Dir,Module,GoFiles,EmbedFiles", tc.pkg)
		cmd.Dir = root
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("go list %s: %v", tc.pkg, err)
		}
		need := []string{"go.mod", "go.sum"}
		dec := json.NewDecoder(strings.NewReader(string(out)))
		for dec.More() {
			var pkg struct {
				Dir                 string
				Module              *struct{ Main bool }
				GoFiles, EmbedFiles []string
			}
			if err := dec.Decode(&pkg); err != nil {
				t.Fatal(err)
			}
			if pkg.Module == nil || !pkg.Module.Main {
				continue
			}
			rel, err := filepath.Rel(root, pkg.Dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range append(pkg.GoFiles, pkg.EmbedFiles...) {
				need = append(need, filepath.ToSlash(filepath.Join(rel, f)))
			}
		}
		if len(need) < 4 {
			t.Fatalf("go list found no source of %s", tc.pkg)
		}
		for _, f := range need {
			if ign.excludes(f) {
				t.Errorf("%s.dockerignore leaves out %s, which building %s needs", df, f, tc.pkg)
			}
		}
	}
}
