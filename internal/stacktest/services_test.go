package stacktest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/pano-observability/pano/internal/testenv"
)

// isLoadGenerator tells the demo's load (dnsperf, demo2's webload), the
// only services allowed to run without a health check: nothing waits for
// them and they hold no state.
func isLoadGenerator(s types.ServiceConfig) bool {
	return strings.HasPrefix(s.Image, "pano-dnsperf:") || strings.HasPrefix(s.Image, "pano-webload:")
}

// isOneShot tells a service that runs once and exits (kafka-init).
func isOneShot(s types.ServiceConfig) bool { return s.Restart == types.RestartPolicyNo }

// offlineNetwork is the bridge of the offline demo's DNS servers.
const offlineNetwork = "pano-offline"

// isOfflineServer tells the offline demo's DNS servers.
func isOfflineServer(s types.ServiceConfig) bool {
	return strings.HasPrefix(s.Image, "pano-dns-local:")
}

// webNetwork is the bridge of demo2's web server.
const webNetwork = "pano-web"

// ownBridge returns the network of a server that sits on a bridge of its
// own: the offline DNS servers, demo2's web server.
func ownBridge(s types.ServiceConfig) (string, bool) {
	switch {
	case isOfflineServer(s):
		return offlineNetwork, true
	case strings.HasPrefix(s.Image, "pano-web:"):
		return webNetwork, true
	}
	return "", false
}

func TestComposeServicesUseHostNetworking(t *testing.T) {
	p := mustLoad(t, testenv.RepoRoot(t))
	for name, s := range p.Services {
		if nw, ok := ownBridge(s); ok {
			// The demo's local servers sit on their own bridge, so that
			// the load crosses an Ethernet interface the agent captures.
			if s.NetworkMode != "" || len(s.Networks) != 1 || s.Networks[nw] == nil || s.Networks[nw].Ipv4Address == "" {
				t.Errorf("%s: want only network %s with a fixed address, got network_mode %q networks %v", name, nw, s.NetworkMode, s.Networks)
			}
			continue
		}
		if s.NetworkMode != "host" {
			t.Errorf("%s: network_mode %q; every service shares the host's network (the ports in docker-compose.yml's header assume it)", name, s.NetworkMode)
		}
		if len(s.Ports) > 0 {
			t.Errorf("%s: publishes ports %v, which host networking ignores", name, s.Ports)
		}
	}
}

func TestComposeAgentPrivileges(t *testing.T) {
	p := mustLoad(t, testenv.RepoRoot(t))
	for name, s := range p.Services {
		if s.Privileged {
			t.Errorf("%s: privileged: true; grant capabilities instead", name)
		}
		if slices.Contains(s.CapAdd, "ALL") || slices.Contains(s.CapAdd, "SYS_ADMIN") || slices.Contains(s.CapAdd, "CAP_SYS_ADMIN") {
			t.Errorf("%s: cap_add %v grants far more than eBPF needs", name, s.CapAdd)
		}
	}
	agent := p.Services["agent"]
	for _, c := range []string{"BPF", "NET_ADMIN", "PERFMON"} {
		if !slices.Contains(agent.CapAdd, c) && !slices.Contains(agent.CapAdd, "CAP_"+c) {
			t.Errorf("agent: cap_add %v lacks %s", agent.CapAdd, c)
		}
	}
	if l := agent.Ulimits["memlock"]; l == nil || l.Soft != -1 || l.Hard != -1 {
		t.Errorf("agent: memlock ulimit %+v, want unlimited (kernels before 5.11 charge eBPF maps to it)", l)
	}
	for name, s := range p.Services {
		if name != "agent" && len(s.CapAdd) > 0 {
			t.Errorf("%s: cap_add %v; only the agent needs capabilities", name, s.CapAdd)
		}
	}
}

func TestComposeHealthChecksAndOrder(t *testing.T) {
	p := mustLoad(t, testenv.RepoRoot(t))
	for name, s := range p.Services {
		hc := s.HealthCheck
		needs := !isLoadGenerator(s) && !isOneShot(s)
		if needs && (hc == nil || hc.Disable || len(hc.Test) < 2) {
			t.Errorf("%s: no health check", name)
		}
		if hc != nil && len(hc.Test) > 0 && hc.Test[0] != "CMD" && hc.Test[0] != "CMD-SHELL" {
			t.Errorf("%s: health check test %q must start with CMD or CMD-SHELL", name, hc.Test)
		}
		if !isOneShot(s) && s.Restart != types.RestartPolicyUnlessStopped {
			t.Errorf("%s: restart %q, want unless-stopped for a long-running service", name, s.Restart)
		}
		for dep, d := range s.DependsOn {
			ds, ok := p.Services[dep]
			if !ok {
				t.Errorf("%s depends on unknown service %s", name, dep)
				continue
			}
			switch d.Condition {
			case types.ServiceConditionHealthy:
				if ds.HealthCheck == nil || ds.HealthCheck.Disable {
					t.Errorf("%s waits for %s to be healthy, but %s has no health check", name, dep, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				if !isOneShot(ds) {
					t.Errorf("%s waits for %s to complete, but %s restarts", name, dep, dep)
				}
			default:
				t.Errorf("%s: depends_on %s with condition %q; use service_healthy or service_completed_successfully so the order holds without sleeps", name, dep, d.Condition)
			}
		}
	}

	// What must be up before the demo load starts, so its first queries
	// are counted: every stage from capture to metrics.
	for name, s := range p.Services {
		if !isLoadGenerator(s) {
			continue
		}
		for _, dep := range []string{"agent", "zeek", "shim", "flowlogs-pipeline"} {
			if d, ok := s.DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s does not wait for %s to be healthy", name, dep)
			}
		}
	}
	// Order along the pipeline.
	for _, c := range [][3]string{
		{"zeek", "agent", types.ServiceConditionHealthy},
		{"kafka-init", "kafka", types.ServiceConditionHealthy},
		{"shim", "kafka-init", types.ServiceConditionCompletedSuccessfully},
		{"flowlogs-pipeline", "kafka-init", types.ServiceConditionCompletedSuccessfully},
		{"grafana", "prometheus", types.ServiceConditionHealthy},
		{"dnsperf-local1", "dns-local1", types.ServiceConditionHealthy},
		{"dnsperf-local2", "dns-local2", types.ServiceConditionHealthy},
		{"webload", "web", types.ServiceConditionHealthy},
	} {
		if d, ok := p.Services[c[0]].DependsOn[c[1]]; !ok || d.Condition != c[2] {
			t.Errorf("%s must depend on %s with %s", c[0], c[1], c[2])
		}
	}
}

// No sleeps anywhere: ordering comes from health checks only.
func TestComposeHasNoSleeps(t *testing.T) {
	p := mustLoad(t, testenv.RepoRoot(t))
	for name, s := range p.Services {
		var words []string
		words = append(words, s.Command...)
		words = append(words, s.Entrypoint...)
		if s.HealthCheck != nil {
			words = append(words, s.HealthCheck.Test...)
		}
		for _, w := range words {
			if strings.Contains(w, "sleep") {
				t.Errorf("%s: %q sleeps", name, w)
			}
		}
	}
}

func TestComposeVolumes(t *testing.T) {
	p := mustLoad(t, testenv.RepoRoot(t))
	for _, v := range []string{"zeek-logs", "shim-state", "kafka-data"} {
		if _, ok := p.Volumes[v]; !ok {
			t.Errorf("named volume %s is not declared", v)
		}
	}
	mounted := func(service, volume, target string, readOnly bool) {
		t.Helper()
		for _, m := range p.Services[service].Volumes {
			if m.Type == types.VolumeTypeVolume && m.Source == volume && m.Target == target {
				if m.ReadOnly != readOnly {
					t.Errorf("%s mounts %s at %s read_only=%v, want %v", service, volume, target, m.ReadOnly, readOnly)
				}
				return
			}
		}
		t.Errorf("%s does not mount volume %s at %s", service, volume, target)
	}
	mounted("zeek", "zeek-logs", "/zeek/logs", false)
	mounted("shim", "zeek-logs", "/zeek/logs", false) // it deletes the rotated logs it forwarded
	mounted("shim", "shim-state", envOf(t, p, "shim", "SHIM_STATE_DIR"), false)
	mounted("kafka", "kafka-data", envOf(t, p, "kafka", "KAFKA_LOG_DIRS"), false)

	// Configuration is mounted from the repository: every source must exist.
	for name, s := range p.Services {
		for _, m := range s.Volumes {
			if m.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(m.Source); err != nil {
				t.Errorf("%s: bind mount source %s: %v", name, m.Source, err)
			}
			if !m.ReadOnly {
				t.Errorf("%s: configuration mount %s is writable; mount it read-only", name, m.Source)
			}
		}
	}
}

// hostPath maps a path inside a service's container back to the
// repository through its bind mounts ("" when not mounted).
func hostPath(s types.ServiceConfig, inContainer string) string {
	best := ""
	var src string
	for _, m := range s.Volumes {
		if m.Type != types.VolumeTypeBind {
			continue
		}
		if inContainer == m.Target || strings.HasPrefix(inContainer, strings.TrimSuffix(m.Target, "/")+"/") {
			if len(m.Target) > len(best) {
				best, src = m.Target, m.Source
			}
		}
	}
	if best == "" {
		return ""
	}
	return filepath.Join(src, strings.TrimPrefix(inContainer, best))
}
