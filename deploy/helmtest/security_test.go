package helmtest

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// Security defaults: nothing privileged or escalating, every capability
// dropped (the agent adds exactly BPF, NET_ADMIN and PERFMON), read-only
// root filesystems, and the shim and flowlogs-pipeline never root.
func checkSecurity(r *rendered, _ *facts, p *problems) {
	type pod struct {
		name    string
		spec    *corev1.PodSpec
		nonRoot []string // containers that must not run as root
	}
	var pods []pod
	for _, ds := range r.daemonSets {
		pods = append(pods, pod{ds.Name, &ds.Spec.Template.Spec, []string{"shim"}})
	}
	for _, d := range r.deployments {
		pods = append(pods, pod{d.Name, &d.Spec.Template.Spec, []string{"flowlogs-pipeline"}})
	}
	for _, pd := range pods {
		if pd.spec.HostPID || pd.spec.HostIPC {
			p.add("%s shares the host's PID or IPC namespace", pd.name)
		}
		if pd.spec.AutomountServiceAccountToken == nil || *pd.spec.AutomountServiceAccountToken {
			p.add("%s mounts a service account token it never uses", pd.name)
		}
		psc := pd.spec.SecurityContext
		if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			p.add("%s: no RuntimeDefault seccomp profile", pd.name)
		}
		for _, v := range pd.spec.Volumes {
			if v.HostPath != nil && v.Name != "data" {
				p.add("%s mounts host path %s", pd.name, v.HostPath.Path)
			}
		}
		all := append(slices.Clone(pd.spec.InitContainers), pd.spec.Containers...)
		for _, c := range all {
			sc := c.SecurityContext
			if sc == nil {
				p.add("%s/%s: no securityContext", pd.name, c.Name)
				continue
			}
			if sc.Privileged == nil || *sc.Privileged {
				p.add("%s/%s: privileged is not false", pd.name, c.Name)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				p.add("%s/%s: allowPrivilegeEscalation is not false", pd.name, c.Name)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				p.add("%s/%s: root filesystem is writable", pd.name, c.Name)
			}
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				p.add("%s/%s: does not drop ALL capabilities", pd.name, c.Name)
			}
			var add []corev1.Capability
			if sc.Capabilities != nil {
				add = slices.Sorted(slices.Values(sc.Capabilities.Add))
			}
			var want []corev1.Capability
			switch c.Name {
			case "agent":
				want = []corev1.Capability{"BPF", "NET_ADMIN", "PERFMON"}
			case "prepare-volume":
				want = []corev1.Capability{"CHOWN"}
			}
			if !slices.Equal(add, want) {
				p.add("%s/%s: adds capabilities %v, want %v", pd.name, c.Name, add, want)
			}
			if slices.Contains(pd.nonRoot, c.Name) {
				nonRoot := sc.RunAsNonRoot
				if nonRoot == nil && psc != nil {
					nonRoot = psc.RunAsNonRoot
				}
				uid := sc.RunAsUser
				if uid == nil && psc != nil {
					uid = psc.RunAsUser
				}
				if nonRoot == nil || !*nonRoot || uid == nil || *uid == 0 {
					p.add("%s/%s: may run as root (runAsNonRoot and a non-zero runAsUser wanted)", pd.name, c.Name)
				}
			}
		}
	}
}
