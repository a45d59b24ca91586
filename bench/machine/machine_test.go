package machine

import (
	"runtime"
	"strings"
	"testing"
)

func TestCPUModel(t *testing.T) {
	const cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 1\nmodel name\t: AMD EPYC   7B13 64-Core Processor\nflags\t: fpu\n\nprocessor\t: 1\nmodel name\t: other\n"
	if got := CPUModel(strings.NewReader(cpuinfo)); got != "AMD EPYC 7B13 64-Core Processor" {
		t.Errorf("CPUModel = %q", got)
	}
	// arm64 has no model name line.
	if got := CPUModel(strings.NewReader("processor\t: 0\nCPU part\t: 0xd0c\n")); got != "" {
		t.Errorf("CPUModel without a model name = %q", got)
	}
}

func TestMemTotal(t *testing.T) {
	got, err := MemTotal(strings.NewReader("MemFree:  10 kB\nMemTotal:       24684084 kB\n"))
	if err != nil || got != 24684084*1024 {
		t.Errorf("MemTotal = %d, %v", got, err)
	}
	for _, bad := range []string{"", "MemTotal: x kB\n", "MemTotal: 5 MB\n"} {
		if _, err := MemTotal(strings.NewReader(bad)); err == nil {
			t.Errorf("MemTotal(%q): no error", bad)
		}
	}
}

func TestDescribe(t *testing.T) {
	info := Describe()
	if info.CPUs != runtime.NumCPU() || info.Go != runtime.Version() {
		t.Errorf("Describe = %+v", info)
	}
	if runtime.GOOS == "linux" && (info.MemBytes == 0 || !strings.HasPrefix(info.Kernel, "Linux ")) {
		t.Errorf("Describe on Linux = %+v", info)
	}
	s := info.String()
	if !strings.Contains(s, "CPUs") {
		t.Errorf("String = %q", s)
	}
}

func TestString(t *testing.T) {
	got := Info{CPUs: 2, CPUModel: "AMD EPYC", MemBytes: 3 << 30, Kernel: "Linux 6.1.0 x86_64", Go: "go1.26.0"}.String()
	if want := "2 CPUs (AMD EPYC), 3.0 GiB memory, Linux 6.1.0 x86_64, go1.26.0"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}
