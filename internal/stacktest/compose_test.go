package stacktest

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/sirupsen/logrus"

	"github.com/pano-observability/pano/internal/testenv"
)

// warnings collects what compose-go logs at warning level or worse: it
// reports problems such as an unset variable or an obsolete attribute only
// through logrus, never as an error.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (w *warnings) Fire(e *logrus.Entry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, e.Level.String()+": "+e.Message)
	return nil
}

// loadMu serialises loads: the logrus logger compose-go writes to is global.
var loadMu sync.Mutex

// loadCompose loads docker-compose.yml the way `docker compose` does from
// the repository root (the .env file included, consistency checks on),
// with the given profiles (nil = those .env selects), and an environment
// that holds nothing but env: the developer's shell cannot change the result.
// It returns the project and every warning compose-go logged.
func loadCompose(t testing.TB, root string, profiles []string, env map[string]string) (*types.Project, []string, error) {
	t.Helper()
	composeFile := filepath.Join(root, "docker-compose.yml")
	if _, err := os.Stat(composeFile); err != nil {
		t.Fatalf("docker-compose.yml missing at the repository root: %v", err)
	}

	loadMu.Lock()
	defer loadMu.Unlock()
	w := &warnings{}
	logger := logrus.StandardLogger()
	saved, savedOut := logger.ReplaceHooks(logrus.LevelHooks{}), logger.Out
	logger.AddHook(w)
	logger.SetOutput(io.Discard) // reported through the hook instead
	defer func() {
		logger.ReplaceHooks(saved)
		logger.SetOutput(savedOut)
	}()

	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	opts, err := cli.NewProjectOptions([]string{composeFile},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(envList),
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
		cli.WithDefaultProfiles(profiles...),
	)
	if err != nil {
		return nil, w.msgs, fmt.Errorf("compose options: %w", err)
	}
	p, err := opts.LoadProject(context.Background())
	return p, w.msgs, err
}

// mustLoad loads with all profiles enabled and fails on any error or warning.
func mustLoad(t testing.TB, root string) *types.Project {
	t.Helper()
	p, warns, err := loadCompose(t, root, []string{"*"}, nil)
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	if len(warns) > 0 {
		t.Fatalf("docker-compose.yml loads with warnings:\n%s", strings.Join(warns, "\n"))
	}
	return p
}

func TestComposeLoadsWithoutErrorsOrWarnings(t *testing.T) {
	for _, tc := range []struct {
		name     string
		profiles []string
	}{
		{"default profiles from .env", nil},
		{"online", []string{"online"}},
		{"offline", []string{"offline"}},
		{"web", []string{"web"}},
		{"all profiles", []string{"*"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, warns, err := loadCompose(t, testenv.RepoRoot(t), tc.profiles, nil)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if len(warns) > 0 {
				t.Fatalf("compose-go warned:\n%s", strings.Join(warns, "\n"))
			}
			if len(p.Services) == 0 {
				t.Fatal("no services")
			}
		})
	}
}

// The hook really sees compose-go's warnings: an unset variable without a
// default is one, and so is a broken file an error. Without this the test
// above could pass because nothing is ever captured.
func TestComposeLoaderReportsProblems(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "docker-compose.yml")
	if err := os.WriteFile(bad, []byte("services:\n  a:\n    image: busybox:1.36.1\n    command: echo ${PANO_TEST_UNSET_VARIABLE}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	loadMu.Lock()
	w := &warnings{}
	logger := logrus.StandardLogger()
	saved, savedOut := logger.ReplaceHooks(logrus.LevelHooks{}), logger.Out
	logger.AddHook(w)
	logger.SetOutput(io.Discard)
	opts, err := cli.NewProjectOptions([]string{bad}, cli.WithWorkingDirectory(dir), cli.WithEnv(nil))
	if err == nil {
		_, err = opts.LoadProject(context.Background())
	}
	logger.ReplaceHooks(saved)
	logger.SetOutput(savedOut)
	loadMu.Unlock()
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if len(w.msgs) == 0 || !strings.Contains(strings.Join(w.msgs, "\n"), "PANO_TEST_UNSET_VARIABLE") {
		t.Fatalf("the unset variable was not reported as a warning: %q", w.msgs)
	}

	if err := os.WriteFile(bad, []byte("services:\n  a:\n    image: busybox:1.36.1\n    depends_on: [nope]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err = cli.NewProjectOptions([]string{bad}, cli.WithWorkingDirectory(dir), cli.WithEnv(nil), cli.WithConsistency(true))
	if err == nil {
		_, err = opts.LoadProject(context.Background())
	}
	if err == nil {
		t.Fatal("a dependency on an undefined service loaded without error")
	}
}

func TestComposeProfilesSelectTheLoad(t *testing.T) {
	pipeline := []string{"agent", "zeek", "shim", "kafka", "kafka-init", "flowlogs-pipeline", "prometheus", "grafana"}
	for _, tc := range []struct {
		name          string
		profiles      []string
		want, without []string
	}{
		{"default (.env)", nil, []string{"dnsperf1", "dnsperf2"}, []string{"dns-local1", "dns-local2", "dnsperf-local1", "dnsperf-local2", "web", "webload"}},
		{"offline", []string{"offline"}, []string{"dns-local1", "dns-local2", "dnsperf-local1", "dnsperf-local2"}, []string{"dnsperf1", "dnsperf2", "web", "webload"}},
		{"web", []string{"web"}, []string{"web", "webload"}, []string{"dnsperf1", "dnsperf2", "dns-local1", "dnsperf-local1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, err := loadCompose(t, testenv.RepoRoot(t), tc.profiles, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range append(slices.Clone(pipeline), tc.want...) {
				if _, ok := p.Services[s]; !ok {
					t.Errorf("service %s is not enabled (enabled: %v)", s, p.ServiceNames())
				}
			}
			for _, s := range tc.without {
				if _, ok := p.Services[s]; ok {
					t.Errorf("service %s is enabled but should not be", s)
				}
			}
		})
	}
}

// The demo's defaults come from the compose file and .env, and a variable
// set by the user overrides them.
func TestComposeDefaultsAndOverrides(t *testing.T) {
	p, _, err := loadCompose(t, testenv.RepoRoot(t), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		"dnsperf1": {"DNSPERF_SERVER": "8.8.8.8", "DNSPERF_QPS": "200"},
		"dnsperf2": {"DNSPERF_SERVER": "1.1.1.1", "DNSPERF_QPS": "100"},
		"grafana":  {"GF_SECURITY_ADMIN_PASSWORD": "admin", "GF_AUTH_ANONYMOUS_ENABLED": "true", "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer"},
		"zeek":     {"ZEEK_WORKERS": "1"},
	}
	for svc, env := range want {
		for k, v := range env {
			if got := envOf(t, p, svc, k); got != v {
				t.Errorf("%s: %s = %q, want %q", svc, k, got, v)
			}
		}
	}

	p, _, err = loadCompose(t, testenv.RepoRoot(t), []string{"*"}, map[string]string{
		"DNSPERF1_SERVER": "127.0.0.2", "DNSPERF1_QPS": "7", "ZEEK_WORKERS": "3",
		"GF_SECURITY_ADMIN_PASSWORD": "s3cret", "PANO_INTERFACE": "eth9",
		"DNS_LOCAL1_ADDR": "198.18.53.9",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range [][3]string{
		{"dnsperf1", "DNSPERF_SERVER", "127.0.0.2"},
		{"dnsperf1", "DNSPERF_QPS", "7"},
		{"zeek", "ZEEK_WORKERS", "3"},
		{"agent", "PCA_STREAMS", "3"},
		{"grafana", "GF_SECURITY_ADMIN_PASSWORD", "s3cret"},
		{"agent", "INTERFACES", "eth9"},
		{"dnsperf-local1", "DNSPERF_SERVER", "198.18.53.9"},
	} {
		if got := envOf(t, p, c[0], c[1]); got != c[2] {
			t.Errorf("%s: %s = %q, want %q from the environment", c[0], c[1], got, c[2])
		}
	}
	if got := p.Services["dns-local1"].Networks["pano-offline"].Ipv4Address; got != "198.18.53.9" {
		t.Errorf("dns-local1 is not at DNS_LOCAL1_ADDR: ipv4_address %q", got)
	}
}

// envOf returns a service's environment variable ("" when unset).
func envOf(t testing.TB, p *types.Project, service, key string) string {
	t.Helper()
	s, ok := p.Services[service]
	if !ok {
		s, ok = p.DisabledServices[service]
	}
	if !ok {
		t.Fatalf("no service %q in docker-compose.yml", service)
	}
	if v, ok := s.Environment[key]; ok && v != nil {
		return *v
	}
	return ""
}

// Every variable docker-compose.yml reads is documented: in README.md's
// configuration table and in .env, with the same default.
func TestComposeVariablesDocumented(t *testing.T) {
	root := testenv.RepoRoot(t)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	compose, readme, dotenv := read("docker-compose.yml"), read("README.md"), read(".env")
	vars := regexp.MustCompile(`\$\{([A-Z0-9_]+)(?::-([^}]*))?\}`).FindAllStringSubmatch(compose, -1)
	if len(vars) == 0 {
		t.Fatal("docker-compose.yml reads no variable")
	}
	for _, v := range vars {
		name, def := v[1], v[2]
		if !strings.Contains(readme, "`"+name+"`") {
			t.Errorf("README.md does not document %s", name)
		}
		m := regexp.MustCompile(`(?m)^#?` + name + `=(.*)$`).FindStringSubmatch(dotenv)
		if m == nil {
			t.Errorf(".env does not mention %s", name)
		} else if m[1] != def {
			t.Errorf(".env shows %s=%s; docker-compose.yml defaults it to %q", name, m[1], def)
		}
	}
}
