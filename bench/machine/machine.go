// Package machine describes the computer a benchmark ran on, in terms
// that say what the numbers are worth elsewhere: CPUs, memory, kernel.
// It reports no host name, user or path.
package machine

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// Info is the description.
type Info struct {
	CPUs     int    // logical CPUs this process may use
	CPUModel string // /proc/cpuinfo "model name", "" if unknown
	MemBytes uint64 // MemTotal, 0 if unknown
	Kernel   string // uname: system, release, machine
	Go       string // Go toolchain version
}

// Describe reads /proc and uname. Missing pieces are left empty rather
// than failing: the description accompanies results, it is not one.
func Describe() Info {
	info := Info{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		info.CPUModel = CPUModel(f)
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		info.MemBytes, _ = MemTotal(f)
		f.Close()
	}
	var u syscall.Utsname
	if err := syscall.Uname(&u); err == nil {
		info.Kernel = strings.Join([]string{cstr(u.Sysname[:]), cstr(u.Release[:]), cstr(u.Machine[:])}, " ")
	}
	return info
}

// CPUModel returns the first model name in /proc/cpuinfo's format, or
// "" (some architectures have none).
func CPUModel(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}

// MemTotal returns MemTotal from /proc/meminfo's format, in bytes.
func MemTotal(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "MemTotal:" && f[2] == "kB" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("MemTotal %q: %w", f[1], err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no MemTotal line")
}

// cstr converts a NUL-terminated utsname field (int8 or uint8 by
// architecture) to a string.
func cstr[T int8 | uint8](b []T) string {
	var out bytes.Buffer
	for _, c := range b {
		if c == 0 {
			break
		}
		out.WriteByte(byte(c))
	}
	return out.String()
}

// String is one line, e.g. "2 CPUs (AMD EPYC), 23.5 GiB, Linux 6.1.0 x86_64, go1.26.0".
func (i Info) String() string {
	parts := []string{fmt.Sprintf("%d CPUs", i.CPUs)}
	if i.CPUModel != "" {
		parts[0] += " (" + i.CPUModel + ")"
	}
	if i.MemBytes > 0 {
		parts = append(parts, fmt.Sprintf("%.1f GiB memory", float64(i.MemBytes)/(1<<30)))
	}
	if i.Kernel != "" {
		parts = append(parts, i.Kernel)
	}
	if i.Go != "" {
		parts = append(parts, i.Go)
	}
	return strings.Join(parts, ", ")
}
