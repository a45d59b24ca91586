package stacktest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/pano-observability/pano/agent/filter"
	"github.com/pano-observability/pano/internal/testenv"
)

// --- the components' own defaults, from their --help ------------------------

var (
	binCache  sync.Map // package path -> built binary
	helpCache sync.Map // package path -> --help output
)

// buildCmd builds a command of this module once per test process.
func buildCmd(t testing.TB, pkg string) string {
	t.Helper()
	if b, ok := binCache.Load(pkg); ok {
		return b.(string)
	}
	root := testenv.RepoRoot(t)
	if _, err := os.Stat(filepath.Join(root, pkg)); err != nil {
		t.Fatalf("%s is missing: %v", pkg, err)
	}
	dir, err := os.MkdirTemp("", "stacktest-bin-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./"+pkg)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("go build ./%s: %v\n%s", pkg, err, out)
	}
	if prev, loaded := binCache.LoadOrStore(pkg, bin); loaded {
		os.RemoveAll(dir)
		return prev.(string)
	}
	return bin
}

// helpOf returns a command's --help output, run with an environment
// holding nothing that could change its defaults.
func helpOf(t testing.TB, pkg string) string {
	t.Helper()
	if h, ok := helpCache.Load(pkg); ok {
		return h.(string)
	}
	bin := buildCmd(t, pkg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--help")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", pkg, err, out)
	}
	helpCache.Store(pkg, string(out))
	return string(out)
}

var defaultRE = regexp.MustCompile(`\(default (?:"([^"]*)"|([^)\s]*))\)`)

// helpDefault finds the setting documented with the environment variable
// env in a --help text and returns its default value. The variable's line
// or the two lines after it carry "(default X)".
func helpDefault(help, env string) (string, bool) {
	word := regexp.MustCompile(`(^|[^A-Z0-9_])` + regexp.QuoteMeta(env) + `([^A-Z0-9_]|$)`)
	lines := strings.Split(help, "\n")
	for i, l := range lines {
		if !word.MatchString(l) {
			continue
		}
		for j := i; j < len(lines) && j <= i+2; j++ {
			if j > i && strings.HasPrefix(strings.TrimSpace(lines[j]), "-") {
				break // the next setting
			}
			if m := defaultRE.FindStringSubmatch(lines[j]); m != nil {
				return m[1] + m[2], true
			}
		}
		return "", true // documented, no default shown: empty
	}
	return "", false
}

func TestHelpDefault(t *testing.T) {
	help := "  -metrics-addr, METRICS_ADDR (default 127.0.0.1:9103)\n      where\n" +
		"  -brokers string\n    \tKafka brokers (env KAFKA_BROKERS) (default \"127.0.0.1:9092\")\n" +
		"  -topic-prefix string\n    \tprefix (env SHIM_TOPIC_PREFIX)\n  -x string\n    \t(default \"no\")\n" +
		"  -interfaces, INTERFACES\n      which\n  -log-level, LOG_LEVEL (default info)\n"
	for env, want := range map[string]string{"METRICS_ADDR": "127.0.0.1:9103", "KAFKA_BROKERS": "127.0.0.1:9092", "SHIM_TOPIC_PREFIX": "", "INTERFACES": ""} {
		if got, ok := helpDefault(help, env); !ok || got != want {
			t.Errorf("helpDefault(%s) = %q, %v; want %q", env, got, ok, want)
		}
	}
	if _, ok := helpDefault(help, "ADDR"); ok {
		t.Error("ADDR matched inside METRICS_ADDR")
	}
}

// setting is what a service effectively runs with: the compose
// environment when set (and not empty), else the program's default.
func setting(t testing.TB, p *types.Project, service, help, env string) string {
	t.Helper()
	def, ok := helpDefault(help, env)
	if !ok {
		t.Fatalf("%s: --help does not document %s", service, env)
	}
	if v := envOf(t, p, service, env); v != "" {
		return v
	}
	return def
}

// Every variable compose sets for a Go component is one it reads: a typo
// would silently leave the default in place.
func checkEnvKnown(t testing.TB, p *types.Project, service, help string) {
	t.Helper()
	for k := range p.Services[service].Environment {
		if _, ok := helpDefault(help, k); !ok {
			t.Errorf("%s: docker-compose.yml sets %s, which %s --help does not document", service, k, service)
		}
	}
}

// --- endpoints ---------------------------------------------------------------

// endpoint is a host:port, with the host normalised so that 127.0.0.1 and
// localhost compare equal and an empty host means every address.
type endpoint struct {
	host string // "" = every address
	port int
}

func parseEndpoint(t testing.TB, what, s string) endpoint {
	t.Helper()
	s = strings.TrimPrefix(strings.TrimPrefix(s, "http://"), "https://")
	s = strings.TrimSuffix(strings.SplitN(s, "/", 2)[0], "/")
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		t.Fatalf("%s: %q is not host:port: %v", what, s, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 {
		t.Fatalf("%s: bad port in %q", what, s)
	}
	switch host {
	case "localhost", "127.0.0.1", "::1":
		host = "loopback"
	case "0.0.0.0", "::":
		host = ""
	}
	return endpoint{host, n}
}

// reaches reports whether a client dialling to reaches a server listening on l
// (all of them on this host: host networking).
func (l endpoint) reaches(to endpoint) bool {
	return l.port == to.port && (l.host == "" || l.host == to.host)
}

func (l endpoint) String() string { return fmt.Sprintf("%s:%d", l.host, l.port) }

// hcPorts returns the TCP ports a health check talks to: /dev/tcp/H/P,
// http://H:P and, for /proc/net/tcp matches, a remote port in hex.
func hcPorts(s types.ServiceConfig) (ports []int, hexPorts []string) {
	if s.HealthCheck == nil {
		return nil, nil
	}
	text := strings.Join(s.HealthCheck.Test, " ")
	for _, m := range regexp.MustCompile(`/dev/tcp/[^/\s]+/(\d+)`).FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[1])
		ports = append(ports, n)
	}
	for _, m := range regexp.MustCompile(`https?://[^/:\s]+:(\d+)`).FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[1])
		ports = append(ports, n)
	}
	for _, m := range regexp.MustCompile(`:([0-9A-Fa-f]{4}) 01`).FindAllStringSubmatch(text, -1) {
		hexPorts = append(hexPorts, strings.ToUpper(m[1]))
	}
	return ports, hexPorts
}

func checkHealthPort(t testing.TB, p *types.Project, service string, want int) {
	t.Helper()
	ports, _ := hcPorts(p.Services[service])
	if len(ports) == 0 {
		t.Errorf("%s: health check talks to no port (want %d)", service, want)
	}
	for _, got := range ports {
		if got != want {
			t.Errorf("%s: health check talks to port %d, but the service listens on %d", service, got, want)
		}
	}
}

// argValue returns the value of --name=value or --name value in a command.
func argValue(cmd []string, name string) (string, bool) {
	for i, a := range cmd {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name && i+1 < len(cmd) {
			return cmd[i+1], true
		}
	}
	return "", false
}

// --- the components' configuration files --------------------------------------

func readYAML(t testing.TB, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

type promConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// promTargets returns Prometheus' scrape targets, keyed by endpoint, with
// their job names.
func promTargets(t testing.TB, cfg promConfig) map[endpoint]string {
	t.Helper()
	out := map[endpoint]string{}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("prometheus job %s scrapes %s; every PANO component serves /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				out[parseEndpoint(t, "prometheus job "+sc.JobName, tg)] = sc.JobName
			}
		}
	}
	return out
}

// flpConfig is the part of flowlogs-pipeline's configuration the wiring
// depends on.
type flpConfig struct {
	MetricsSettings struct {
		Address string `yaml:"address"`
		Port    int    `yaml:"port"`
	} `yaml:"metricsSettings"`
	Parameters []struct {
		Name   string `yaml:"name"`
		Ingest *struct {
			Type  string `yaml:"type"`
			Kafka *struct {
				Brokers []string `yaml:"brokers"`
				Topic   string   `yaml:"topic"`
			} `yaml:"kafka"`
		} `yaml:"ingest"`
		Encode *struct {
			Type string `yaml:"type"`
			Prom *struct {
				Address string `yaml:"address"`
				Port    int    `yaml:"port"`
				Prefix  string `yaml:"prefix"`
			} `yaml:"prom"`
		} `yaml:"encode"`
	} `yaml:"parameters"`
}

// --- the test -----------------------------------------------------------------

// stack gathers, once, what every component listens on and dials to.
type stack struct {
	p    *types.Project
	root string

	agentPCAP, agentMetrics endpoint
	shimMetrics             endpoint
	shimBrokers             []endpoint
	shimTopics              []string
	kafkaListen             map[string]endpoint // listener name -> endpoint
	kafkaAdvertised         endpoint
	flp                     flpConfig
	flpMetrics              []endpoint
	promCfg                 promConfig
	promListen              endpoint
	grafanaListen           endpoint
}

func loadStack(t testing.TB, root string) *stack {
	t.Helper()
	st := &stack{p: mustLoad(t, root), root: root}
	p := st.p

	agentHelp := helpOf(t, "agent/cmd/pano-agent")
	checkEnvKnown(t, p, "agent", agentHelp)
	st.agentPCAP = parseEndpoint(t, "agent PCAP-over-TCP",
		net.JoinHostPort(setting(t, p, "agent", agentHelp, "PCA_SERVER_ADDR"), setting(t, p, "agent", agentHelp, "PCA_SERVER_PORT")))
	st.agentMetrics = parseEndpoint(t, "agent METRICS_ADDR", setting(t, p, "agent", agentHelp, "METRICS_ADDR"))

	shimHelp := helpOf(t, "shim/cmd/pano-shim")
	checkEnvKnown(t, p, "shim", shimHelp)
	st.shimMetrics = parseEndpoint(t, "shim SHIM_METRICS_ADDR", setting(t, p, "shim", shimHelp, "SHIM_METRICS_ADDR"))
	for _, b := range strings.Split(setting(t, p, "shim", shimHelp, "KAFKA_BROKERS"), ",") {
		st.shimBrokers = append(st.shimBrokers, parseEndpoint(t, "shim KAFKA_BROKERS", strings.TrimSpace(b)))
	}
	// One topic per log (prefix + log name), unless SHIM_TOPIC sends all to one.
	prefix := setting(t, p, "shim", shimHelp, "SHIM_TOPIC_PREFIX")
	for _, l := range strings.Split(setting(t, p, "shim", shimHelp, "SHIM_LOGS"), ",") {
		base := filepath.Base(strings.TrimSpace(l))
		topic := prefix + strings.TrimSuffix(base, filepath.Ext(base))
		if one := setting(t, p, "shim", shimHelp, "SHIM_TOPIC"); one != "" {
			topic = one
		}
		st.shimTopics = append(st.shimTopics, topic)
	}

	st.kafkaListen = map[string]endpoint{}
	for _, l := range strings.Split(envOf(t, p, "kafka", "KAFKA_LISTENERS"), ",") {
		name, addr, ok := strings.Cut(l, "://")
		if !ok {
			t.Fatalf("kafka: listener %q is not NAME://host:port", l)
		}
		st.kafkaListen[name] = parseEndpoint(t, "kafka listener "+name, addr)
	}
	adv := envOf(t, p, "kafka", "KAFKA_ADVERTISED_LISTENERS")
	_, advAddr, ok := strings.Cut(adv, "PLAINTEXT://")
	if !ok {
		t.Fatalf("kafka: no PLAINTEXT advertised listener in %q", adv)
	}
	st.kafkaAdvertised = parseEndpoint(t, "kafka advertised listener", strings.Split(advAddr, ",")[0])

	flp := p.Services["flowlogs-pipeline"]
	cfgPath, ok := argValue(flp.Command, "--config")
	if !ok {
		t.Fatalf("flowlogs-pipeline: command %q has no --config", flp.Command)
	}
	host := hostPath(flp, cfgPath)
	if host == "" {
		t.Fatalf("flowlogs-pipeline: --config %s is not inside a mount from the repository", cfgPath)
	}
	readYAML(t, host, &st.flp)
	msHost := st.flp.MetricsSettings.Address
	if st.flp.MetricsSettings.Port == 0 {
		t.Fatalf("%s: metricsSettings.port is not set", host)
	}
	st.flpMetrics = append(st.flpMetrics, parseEndpoint(t, "flowlogs-pipeline metricsSettings", net.JoinHostPort(msHost, strconv.Itoa(st.flp.MetricsSettings.Port))))
	for _, prm := range st.flp.Parameters {
		if prm.Encode != nil && prm.Encode.Prom != nil && prm.Encode.Prom.Port != 0 {
			st.flpMetrics = append(st.flpMetrics, parseEndpoint(t, "flowlogs-pipeline stage "+prm.Name,
				net.JoinHostPort(prm.Encode.Prom.Address, strconv.Itoa(prm.Encode.Prom.Port))))
		}
	}

	prom := p.Services["prometheus"]
	promFile, ok := argValue(prom.Command, "--config.file")
	if !ok {
		t.Fatalf("prometheus: command %q has no --config.file", prom.Command)
	}
	promHost := hostPath(prom, promFile)
	if promHost == "" {
		t.Fatalf("prometheus: --config.file %s is not inside a mount from the repository", promFile)
	}
	readYAML(t, promHost, &st.promCfg)
	for _, rf := range st.promCfg.RuleFiles {
		path := rf
		if !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(promFile), rf)
		}
		if h := hostPath(prom, path); h == "" {
			t.Errorf("prometheus: rule file %s is not mounted from the repository", rf)
		} else if m, err := filepath.Glob(h); err != nil || len(m) == 0 {
			t.Errorf("prometheus: rule file %s (%s) matches no file", rf, h)
		}
	}
	listen, ok := argValue(prom.Command, "--web.listen-address")
	if !ok {
		listen = ":9090"
	}
	st.promListen = parseEndpoint(t, "prometheus --web.listen-address", listen)

	port := envOf(t, p, "grafana", "GF_SERVER_HTTP_PORT")
	if port == "" {
		port = "3000"
	}
	st.grafanaListen = parseEndpoint(t, "grafana", net.JoinHostPort(envOf(t, p, "grafana", "GF_SERVER_HTTP_ADDR"), port))
	return st
}

func TestWiringCaptureToZeek(t *testing.T) { checkWiringCaptureToZeek(t, testenv.RepoRoot(t)) }

func checkWiringCaptureToZeek(t testing.TB, root string) {
	st := loadStack(t, root)
	p := st.p
	if st.agentPCAP.host != "loopback" {
		t.Errorf("agent serves PCAP-over-TCP on %v; the demo keeps the packet stream on loopback", st.agentPCAP)
	}

	// The in-kernel filter keeps the demo's DNS (UDP port 53).
	rules, err := filter.Parse(setting(t, p, "agent", helpOf(t, "agent/cmd/pano-agent"), "PCA_FILTER"))
	if err != nil {
		t.Fatalf("agent PCA_FILTER: %v", err)
	}
	if !slices.ContainsFunc(rules, func(r filter.Rule) bool {
		return (r.Protocol == filter.UDP || r.Protocol == filter.AnyProtocol) && (r.Port == 53 || r.Port == 0) && !r.Prefix.IsValid()
	}) {
		t.Errorf("agent PCA_FILTER %v does not keep UDP port 53, the demo's DNS", rules)
	}

	// Zeek reads pcapovertcp::PCA_SERVER_ADDR:PCA_SERVER_PORT (its
	// entrypoint's variables, defaults in the entrypoint) from the agent.
	zeekFiles := readZeekImageFiles(t, st.root)
	zeekSetting := func(name string) string {
		if v := envOf(t, p, "zeek", name); v != "" {
			return v
		}
		m := regexp.MustCompile(`\$\{` + name + `:-([^}]*)\}`).FindStringSubmatch(zeekFiles)
		if m == nil {
			t.Fatalf("zeek: %s is neither set in docker-compose.yml nor defaulted by the image's entrypoint", name)
		}
		return m[1]
	}
	zeekAddr := net.JoinHostPort(zeekSetting("PCA_SERVER_ADDR"), zeekSetting("PCA_SERVER_PORT"))
	if to := parseEndpoint(t, "zeek PCA_SERVER_ADDR:PCA_SERVER_PORT", zeekAddr); !st.agentPCAP.reaches(to) {
		t.Errorf("zeek dials %v, the agent serves PCAP-over-TCP on %v", to, st.agentPCAP)
	}
	if !strings.Contains(zeekFiles, "pcapovertcp::") {
		t.Error("zeek: the image's entrypoint never reads a pcapovertcp:: source")
	}
	if logDir := zeekSetting("ZEEK_LOG_DIR"); logDir != "/zeek/logs" {
		t.Errorf("zeek writes its logs to %s; the zeek-logs volume is mounted at /zeek/logs", logDir)
	}
	// One agent stream per Zeek worker.
	workers := zeekSetting("ZEEK_WORKERS")
	if streams := setting(t, p, "agent", helpOf(t, "agent/cmd/pano-agent"), "PCA_STREAMS"); streams != workers {
		t.Errorf("agent serves %s PCAP-over-TCP stream(s), zeek runs %s worker(s): each worker reads one stream", streams, workers)
	}

	// Zeek's health check looks for its connection to the agent's port.
	_, hex := hcPorts(p.Services["zeek"])
	want := fmt.Sprintf("%04X", st.agentPCAP.port)
	if len(hex) == 0 || slices.ContainsFunc(hex, func(h string) bool { return h != want }) {
		t.Errorf("zeek: health check looks for remote port %v in /proc/net/tcp, the agent's port %d is %s", hex, st.agentPCAP.port, want)
	}
	checkHealthPort(t, p, "agent", st.agentMetrics.port)

	// The Zeek image reads the variables compose sets.
	for k := range p.Services["zeek"].Environment {
		if !strings.Contains(zeekFiles, k) {
			t.Errorf("zeek: docker-compose.yml sets %s, which zeek-package's Dockerfile and entrypoint never read", k)
		}
	}
}

// readZeekImageFiles returns the text of zeek-package's Dockerfile and the
// scripts it copies in (entrypoint, site scripts).
func readZeekImageFiles(t testing.TB, root string) string {
	t.Helper()
	dir := filepath.Join(root, "zeek-package")
	df, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatalf("zeek-package/Dockerfile: %v", err)
	}
	var all bytes.Buffer
	all.Write(df)
	for _, m := range regexp.MustCompile(`(?m)^\s*(?:COPY|ADD)\s+(?:--\S+\s+)*(.+)$`).FindAllStringSubmatch(string(df), -1) {
		f := strings.Fields(m[1])
		for _, src := range f[:len(f)-1] {
			matches, _ := filepath.Glob(filepath.Join(dir, src))
			for _, p := range matches {
				_ = filepath.Walk(p, func(path string, info os.FileInfo, err error) error {
					if err == nil && !info.IsDir() && info.Size() < 1<<20 {
						b, _ := os.ReadFile(path)
						all.Write(b)
					}
					return nil
				})
			}
		}
	}
	return all.String()
}

func TestWiringZeekToKafka(t *testing.T) { checkWiringZeekToKafka(t, testenv.RepoRoot(t)) }

func checkWiringZeekToKafka(t testing.TB, root string) {
	st := loadStack(t, root)
	p := st.p

	// The shim reads the logs from the volume Zeek writes.
	shimHelp := helpOf(t, "shim/cmd/pano-shim")
	for _, l := range strings.Split(setting(t, p, "shim", shimHelp, "SHIM_LOGS"), ",") {
		if !strings.HasPrefix(strings.TrimSpace(l), "/zeek/logs/") {
			t.Errorf("shim: SHIM_LOGS %q is outside /zeek/logs, where the zeek-logs volume is mounted", l)
		}
	}
	checkHealthPort(t, p, "shim", st.shimMetrics.port)

	// Kafka: the shim, flowlogs-pipeline and kafka-init all reach the
	// advertised listener, which a listener serves.
	plain, ok := st.kafkaListen["PLAINTEXT"]
	if !ok || !plain.reaches(st.kafkaAdvertised) {
		t.Errorf("kafka advertises %v but listens on %v", st.kafkaAdvertised, st.kafkaListen)
	}
	for _, b := range st.shimBrokers {
		if !plain.reaches(b) || b != st.kafkaAdvertised {
			t.Errorf("shim dials Kafka at %v, Kafka advertises %v", b, st.kafkaAdvertised)
		}
	}
	checkHealthPort(t, p, "kafka", st.kafkaAdvertised.port)
	kinit := kafkaInit(t, p)
	if b := parseEndpoint(t, "kafka-init --bootstrap-server", kinit.bootstrap); b != st.kafkaAdvertised {
		t.Errorf("kafka-init dials %v, Kafka advertises %v", b, st.kafkaAdvertised)
	}
	voters := envOf(t, p, "kafka", "KAFKA_CONTROLLER_QUORUM_VOTERS")
	if ctrl, ok := st.kafkaListen["CONTROLLER"]; !ok || !strings.HasSuffix(voters, fmt.Sprintf(":%d", ctrl.port)) {
		t.Errorf("kafka: controller quorum %q does not match the CONTROLLER listener %v", voters, st.kafkaListen)
	}

	var ingests int
	for _, prm := range st.flp.Parameters {
		if prm.Ingest == nil || prm.Ingest.Kafka == nil {
			continue
		}
		ingests++
		for _, b := range prm.Ingest.Kafka.Brokers {
			if e := parseEndpoint(t, "flowlogs-pipeline brokers", b); e != st.kafkaAdvertised {
				t.Errorf("flowlogs-pipeline stage %s dials Kafka at %v, Kafka advertises %v", prm.Name, e, st.kafkaAdvertised)
			}
		}
		// Every topic flowlogs-pipeline reads is written by the shim and created by kafka-init.
		topic := prm.Ingest.Kafka.Topic
		if !slices.Contains(st.shimTopics, topic) {
			t.Errorf("flowlogs-pipeline stage %s reads topic %q; the shim writes %v", prm.Name, topic, st.shimTopics)
		}
		if !slices.Contains(kinit.topics, topic) {
			t.Errorf("kafka-init creates topics %v; flowlogs-pipeline reads %q", kinit.topics, topic)
		}
	}
	if ingests == 0 {
		t.Error("flowlogs-pipeline has no Kafka ingest stage")
	}
	// Every topic the shim writes exists before flowlogs-pipeline starts.
	for _, topic := range st.shimTopics {
		if !slices.Contains(kinit.topics, topic) {
			t.Errorf("the shim writes topic %q; kafka-init creates %v", topic, kinit.topics)
		}
	}
}

// kafkaInitSetup is what the kafka-init service does: the broker it asks
// and the topics it creates (PANO_TOPICS, looped over in bash).
type kafkaInitSetup struct {
	bootstrap string
	topics    []string
}

var bootstrapArgRE = regexp.MustCompile(`--bootstrap-server[= ](\S+)`)

func kafkaInit(t testing.TB, p *types.Project) kafkaInitSetup {
	t.Helper()
	s := p.Services["kafka-init"]
	script := strings.Join(s.Command, " ")
	m := bootstrapArgRE.FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("kafka-init: no --bootstrap-server in %q", script)
	}
	topics := strings.Fields(envOf(t, p, "kafka-init", "PANO_TOPICS"))
	if len(topics) == 0 || !strings.Contains(script, "$PANO_TOPICS") {
		t.Fatalf("kafka-init: its command %q does not create the topics of PANO_TOPICS %v", script, topics)
	}
	return kafkaInitSetup{bootstrap: m[1], topics: topics}
}

func TestWiringMetrics(t *testing.T) { checkWiringMetrics(t, testenv.RepoRoot(t)) }

func checkWiringMetrics(t testing.TB, root string) {
	st := loadStack(t, root)
	p := st.p
	targets := promTargets(t, st.promCfg)

	scraped := func(what string, l endpoint) {
		t.Helper()
		for tg := range targets {
			if l.reaches(tg) {
				return
			}
		}
		t.Errorf("Prometheus does not scrape %s at %v (targets: %v)", what, l, targets)
	}
	scraped("the agent", st.agentMetrics)
	scraped("the shim", st.shimMetrics)
	for _, e := range st.flpMetrics {
		scraped("flowlogs-pipeline", e)
	}
	checkHealthPort(t, p, "flowlogs-pipeline", st.flpMetrics[0].port)

	// ... and nothing else: a target no component serves is a typo.
	known := append([]endpoint{st.agentMetrics, st.shimMetrics, st.promListen}, st.flpMetrics...)
	for tg, job := range targets {
		if !slices.ContainsFunc(known, func(l endpoint) bool { return l.reaches(tg) }) {
			t.Errorf("prometheus job %s scrapes %v, which no service serves", job, tg)
		}
	}
	checkHealthPort(t, p, "prometheus", st.promListen.port)

	// The prom encode stages use the prefixes the dashboards query.
	prefixes := []string{"pano_dns_", "pano_http_", "pano_tls_"}
	for _, prm := range st.flp.Parameters {
		if prm.Encode != nil && prm.Encode.Prom != nil && !slices.Contains(prefixes, prm.Encode.Prom.Prefix) {
			t.Errorf("flowlogs-pipeline stage %s: prefix %q, want one of %v", prm.Name, prm.Encode.Prom.Prefix, prefixes)
		}
	}
}

// Each port is held by one listener only: with host networking two
// services on one port would fight for it.
func TestWiringPortsDistinct(t *testing.T) { checkWiringPortsDistinct(t, testenv.RepoRoot(t)) }

func checkWiringPortsDistinct(t testing.TB, root string) {
	st := loadStack(t, root)
	owners := map[int][]string{}
	add := func(who string, e endpoint) { owners[e.port] = append(owners[e.port], who) }
	add("agent PCAP-over-TCP", st.agentPCAP)
	add("agent metrics", st.agentMetrics)
	add("shim metrics", st.shimMetrics)
	for n, e := range st.kafkaListen {
		add("kafka "+n, e)
	}
	for _, e := range slices.Compact(slices.Clone(st.flpMetrics)) {
		add("flowlogs-pipeline metrics", e)
	}
	add("prometheus", st.promListen)
	add("grafana", st.grafanaListen)
	for port, who := range owners {
		if len(who) > 1 {
			t.Errorf("port %d is used by %s", port, strings.Join(who, " and "))
		}
	}
	for _, want := range []struct {
		who  string
		e    endpoint
		port int
	}{
		{"agent PCAP-over-TCP", st.agentPCAP, 57012},
		{"agent metrics", st.agentMetrics, 9103},
		{"shim metrics", st.shimMetrics, 9104},
		{"flowlogs-pipeline metrics", st.flpMetrics[0], 9102},
		{"kafka", st.kafkaAdvertised, 9092},
		{"prometheus", st.promListen, 9090},
		{"grafana", st.grafanaListen, 3000},
	} {
		if want.e.port != want.port {
			t.Errorf("%s on port %d; the documented port is %d", want.who, want.e.port, want.port)
		}
	}
}

func TestWiringPinnedVersionsMatchTests(t *testing.T) {
	checkWiringPinnedVersionsMatchTests(t, testenv.RepoRoot(t))
}

func checkWiringPinnedVersionsMatchTests(t testing.TB, root string) {
	st := loadStack(t, root)
	gomod, err := os.ReadFile(filepath.Join(st.root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`github.com/netobserv/flowlogs-pipeline (v\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod does not require flowlogs-pipeline")
	}
	if img := st.p.Services["flowlogs-pipeline"].Image; !strings.HasSuffix(img, ":"+string(m[1])) {
		t.Errorf("flowlogs-pipeline image %s; the tests run %s (go.mod)", img, m[1])
	}
	pom, err := os.ReadFile(filepath.Join(st.root, "tools/kafka/pom.xml"))
	if err != nil {
		t.Fatalf("tools/kafka/pom.xml (the tests' Kafka version): %v", err)
	}
	kv := regexp.MustCompile(`<kafka.version>([^<]+)</kafka.version>`).FindSubmatch(pom)
	if kv == nil {
		t.Fatal("tools/kafka/pom.xml has no kafka.version")
	}
	for _, s := range []string{"kafka", "kafka-init"} {
		if img := st.p.Services[s].Image; img != "apache/kafka:"+string(kv[1]) {
			t.Errorf("%s image %s; the tests run Kafka %s", s, img, kv[1])
		}
	}

	// Prometheus: the version the tests run (Debian's package).
	bin := testenv.RequireProgram(t, "prometheus", "prometheus")
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("prometheus --version: %v\n%s", err, out)
	}
	pv := regexp.MustCompile(`version (\d+\.\d+\.\d+)`).FindSubmatch(out)
	if pv == nil {
		t.Fatalf("prometheus --version: no version in %q", out)
	}
	if img := st.p.Services["prometheus"].Image; img != "prom/prometheus:v"+string(pv[1]) {
		t.Errorf("prometheus image %s; the tests run Prometheus %s", img, pv[1])
	}
}

// --- Grafana -----------------------------------------------------------------

type grafanaDatasources struct {
	Datasources []struct {
		Name      string `yaml:"name"`
		Type      string `yaml:"type"`
		UID       string `yaml:"uid"`
		URL       string `yaml:"url"`
		IsDefault bool   `yaml:"isDefault"`
	} `yaml:"datasources"`
}

type grafanaProviders struct {
	Providers []struct {
		Name    string `yaml:"name"`
		Type    string `yaml:"type"`
		Options struct {
			Path string `yaml:"path"`
		} `yaml:"options"`
	} `yaml:"providers"`
}

// yamlFiles lists *.yaml and *.yml in dir.
func yamlFiles(dir string) []string {
	var out []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		out = append(out, m...)
	}
	return out
}

func TestWiringGrafana(t *testing.T) { checkWiringGrafana(t, testenv.RepoRoot(t)) }

func checkWiringGrafana(t testing.TB, root string) {
	st := loadStack(t, root)
	g := st.p.Services["grafana"]
	prov := hostPath(g, "/etc/grafana/provisioning")
	if prov == "" {
		t.Fatal("grafana: /etc/grafana/provisioning is not mounted from the repository")
	}

	// Datasources: Prometheus, at the address Prometheus listens on.
	uids := map[string]bool{}
	dsFiles := yamlFiles(filepath.Join(prov, "datasources"))
	if len(dsFiles) == 0 {
		t.Fatalf("no datasource provisioning file in %s/datasources", prov)
	}
	for _, f := range dsFiles {
		var ds grafanaDatasources
		readYAML(t, f, &ds)
		for _, d := range ds.Datasources {
			if d.Type != "prometheus" {
				continue
			}
			if d.UID == "" {
				t.Errorf("%s: datasource %q has no uid, so dashboards cannot name it", f, d.Name)
			}
			uids[d.UID] = true
			if to := parseEndpoint(t, f+" url", d.URL); !st.promListen.reaches(to) {
				t.Errorf("%s: datasource %q points at %v; Prometheus listens on %v", f, d.Name, to, st.promListen)
			}
		}
	}
	if len(uids) == 0 {
		t.Fatal("grafana: no Prometheus datasource provisioned")
	}

	// Dashboard providers point at mounted directories holding the dashboards.
	var dashboards []string
	pvFiles := yamlFiles(filepath.Join(prov, "dashboards"))
	if len(pvFiles) == 0 {
		t.Fatalf("no dashboard provider in %s/dashboards", prov)
	}
	for _, f := range pvFiles {
		var pv grafanaProviders
		readYAML(t, f, &pv)
		for _, p := range pv.Providers {
			dir := hostPath(g, p.Options.Path)
			if dir == "" {
				t.Errorf("%s: provider %q reads %s, which is not mounted from the repository", f, p.Name, p.Options.Path)
				continue
			}
			m, _ := filepath.Glob(filepath.Join(dir, "*.json"))
			if len(m) == 0 {
				t.Errorf("%s: provider %q reads %s (%s), which holds no dashboard", f, p.Name, p.Options.Path, dir)
			}
			dashboards = append(dashboards, m...)
		}
	}

	// Every panel queries a provisioned datasource.
	titles := map[string]string{}
	for _, d := range dashboards {
		title, refs := dashboardDatasources(t, d)
		titles[d] = title
		for _, ref := range refs {
			if !uids[ref] {
				t.Errorf("%s: a panel uses datasource uid %q; provisioned: %v", filepath.Base(d), ref, uids)
			}
		}
	}

	// The home dashboard is the PANO one.
	home := envOf(t, st.p, "grafana", "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
	hp := hostPath(g, home)
	if hp == "" {
		t.Fatalf("grafana: home dashboard %s is not mounted from the repository", home)
	}
	if title, ok := titles[hp]; !ok {
		t.Errorf("grafana: home dashboard %s (%s) is not one the providers load", home, hp)
	} else if title != "PANO DNS Metrics" {
		t.Errorf("grafana: home dashboard is %q, want \"PANO DNS Metrics\"", title)
	}
	checkHealthPort(t, st.p, "grafana", st.grafanaListen.port)

	// grafana.ini, when mounted, says what the environment says (the
	// environment wins, so a disagreement would only mislead a reader).
	if ini := hostPath(g, "/etc/grafana/grafana.ini"); ini != "" {
		for key, val := range readINI(t, ini) {
			env := "GF_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
			if v := envOf(t, st.p, "grafana", env); v != "" && v != val {
				t.Errorf("grafana: %s sets %s = %q, docker-compose.yml sets %s = %q", ini, key, val, env, v)
			}
		}
	}
	if envOf(t, st.p, "grafana", "GF_AUTH_ANONYMOUS_ENABLED") != "true" || envOf(t, st.p, "grafana", "GF_AUTH_ANONYMOUS_ORG_ROLE") != "Viewer" {
		t.Error("grafana: anonymous read-only viewing is not on")
	}
}

// readINI returns an ini file's settings as "section.key" -> value
// (Grafana's naming: GF_<SECTION>_<KEY> overrides it).
func readINI(t testing.TB, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	section := ""
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = strings.Trim(l, "[]")
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("%s: %q is not key = value", path, l)
			}
			out[section+"."+strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return out
}

// dashboardDatasources returns a dashboard's title and the datasource uids
// its panels and targets name, with datasource template variables resolved
// to nothing (they must be of type prometheus instead).
func dashboardDatasources(t testing.TB, path string) (string, []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	title, _ := dash["title"].(string)
	dsVars := map[string]bool{}
	if tm, ok := dash["templating"].(map[string]any); ok {
		list, _ := tm["list"].([]any)
		for _, v := range list {
			vm, _ := v.(map[string]any)
			if vm["type"] == "datasource" {
				if vm["query"] != "prometheus" {
					t.Errorf("%s: datasource variable %v is not of type prometheus", path, vm["name"])
				}
				name, _ := vm["name"].(string)
				dsVars[name] = true
			}
		}
	}
	var refs []string
	var walk func(v any, inPanel bool)
	walk = func(v any, inPanel bool) {
		switch x := v.(type) {
		case map[string]any:
			if ds, ok := x["datasource"]; ok && inPanel {
				switch d := ds.(type) {
				case map[string]any:
					uid, _ := d["uid"].(string)
					typ, _ := d["type"].(string)
					name := strings.Trim(strings.TrimPrefix(uid, "$"), "{}")
					switch {
					case dsVars[name]:
					case typ == "datasource" || uid == "-- Grafana --" || uid == "grafana":
					case uid == "":
						t.Errorf("%s: a panel names a datasource without uid: %v", path, d)
					default:
						refs = append(refs, uid)
					}
				case string:
					t.Errorf("%s: datasource given by name %q; name it by uid", path, d)
				}
			}
			for k, e := range x {
				walk(e, inPanel || k == "panels" || k == "targets" || k == "templating" || k == "annotations")
			}
		case []any:
			for _, e := range x {
				walk(e, inPanel)
			}
		}
	}
	walk(dash, false)
	if len(refs) == 0 {
		t.Errorf("%s: no panel names a datasource", path)
	}
	return title, refs
}

// --- the offline DNS servers --------------------------------------------------

// ifaceMatches reports whether a comma-separated list of interface names or
// globs selects name.
func ifaceMatches(list, name string) bool {
	for _, pat := range strings.Split(list, ",") {
		if ok, _ := filepath.Match(strings.TrimSpace(pat), name); ok {
			return true
		}
	}
	return false
}

func TestWiringOfflineLoad(t *testing.T) { checkWiringOfflineLoad(t, testenv.RepoRoot(t)) }

func checkWiringOfflineLoad(t testing.TB, root string) {
	st := loadStack(t, root)
	p := st.p
	nw, ok := p.Networks[offlineNetwork]
	if !ok || len(nw.Ipam.Config) != 1 {
		t.Fatalf("network %s: missing or without exactly one subnet", offlineNetwork)
	}
	subnet, err := netip.ParsePrefix(nw.Ipam.Config[0].Subnet)
	if err != nil {
		t.Fatalf("network %s: subnet: %v", offlineNetwork, err)
	}
	// Docker gives the host the subnet's first address on the bridge: the
	// load, on the host's network, queries from it.
	hostSide := subnet.Masked().Addr().Next()
	bridge := nw.DriverOpts["com.docker.network.bridge.name"]
	if bridge == "" {
		t.Fatalf("network %s: no com.docker.network.bridge.name, so the capture cannot name its interface", offlineNetwork)
	}

	for _, pair := range [][2]string{{"dnsperf-local1", "dns-local1"}, {"dnsperf-local2", "dns-local2"}} {
		load, server := pair[0], pair[1]
		sn := p.Services[server].Networks[offlineNetwork]
		if sn == nil {
			t.Errorf("%s is not on network %s", server, offlineNetwork)
			continue
		}
		addr, err := netip.ParseAddr(sn.Ipv4Address)
		if err != nil || !subnet.Contains(addr) || addr == hostSide {
			t.Errorf("%s at %q: outside the subnet %s of its network, or the host's own address", server, sn.Ipv4Address, subnet)
		}
		if srv := envOf(t, p, load, "DNSPERF_SERVER"); srv != sn.Ipv4Address {
			t.Errorf("%s queries %s; %s is at %s", load, srv, server, sn.Ipv4Address)
		}
		port := envOf(t, p, server, "DNS_LOCAL_PORT")
		if port != "53" {
			t.Errorf("%s listens on port %s; the agent's filter and Zeek's DNS analyzer expect 53", server, port)
		}
		if pp := envOf(t, p, load, "DNSPERF_PORT"); pp != "" && pp != port {
			t.Errorf("%s queries port %s; %s listens on %s", load, pp, server, port)
		}
		listen := strings.FieldsFunc(envOf(t, p, server, "DNS_LOCAL_ADDRS"), func(r rune) bool { return r == ' ' || r == ',' })
		if !slices.Contains(listen, "0.0.0.0") && !slices.Contains(listen, sn.Ipv4Address) {
			t.Errorf("%s listens on %v, not on its address %s", server, listen, sn.Ipv4Address)
		}
		allowed := false
		for _, a := range strings.FieldsFunc(envOf(t, p, server, "DNS_LOCAL_ALLOW"), func(r rune) bool { return r == ' ' || r == ',' }) {
			if pf, err := netip.ParsePrefix(a); err == nil && pf.Contains(hostSide) {
				allowed = true
			}
		}
		if !allowed {
			t.Errorf("%s: DNS_LOCAL_ALLOW %q refuses the load's address %s", server, envOf(t, p, server, "DNS_LOCAL_ALLOW"), hostSide)
		}
	}

	// The agent captures the bridge (and not the servers' veths: each
	// packet would be counted twice).
	agentHelp := helpOf(t, "agent/cmd/pano-agent")
	ifaces := setting(t, p, "agent", agentHelp, "INTERFACES")
	exclude := setting(t, p, "agent", agentHelp, "EXCLUDE_INTERFACES")
	if ifaceMatches(exclude, bridge) || (ifaces != "" && !ifaceMatches(ifaces, bridge)) {
		t.Errorf("agent does not capture %s (INTERFACES=%q EXCLUDE_INTERFACES=%q), the offline servers' bridge", bridge, ifaces, exclude)
	}
	if ifaces == "" && !ifaceMatches(exclude, "veth1a2b3c4") {
		t.Errorf("agent captures containers' veths (EXCLUDE_INTERFACES=%q): the offline traffic would be counted on the veth and on %s", exclude, bridge)
	}

	// Their health check asks the control socket of the configuration
	// the entrypoint writes.
	script, err := os.ReadFile(filepath.Join(root, "demo1", "unbound-run.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, server := range []string{"dns-local1", "dns-local2"} {
		dir := envOf(t, p, server, "DNS_LOCAL_DIR")
		if dir == "" {
			m := regexp.MustCompile(`DNS_LOCAL_DIR:-([^}]+)\}`).FindSubmatch(script)
			if m == nil {
				t.Fatal("demo1/unbound-run.sh has no DNS_LOCAL_DIR default")
			}
			dir = string(m[1])
		}
		if conf, _ := argValue(p.Services[server].HealthCheck.Test, "-c"); conf != dir+"/unbound.conf" {
			t.Errorf("%s: health check reads %s; unbound-run.sh writes %s/unbound.conf", server, conf, dir)
		}
	}
}
