// Command pano-agent captures packets with an eBPF TC classifier and
// serves them as a PCAP-over-TCP stream. Run with --help for settings.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/pano-observability/pano/agent"
	"github.com/pano-observability/pano/agent/config"
	"github.com/pano-observability/pano/agent/filter"
)

func main() {
	cfg, err := config.Load(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pano-agent:", err)
		os.Exit(2)
	}
	// One thread serves 4 streams at the capture ceiling, with less CPU
	// per packet than two (make bench-gomaxprocs). GOMAXPROCS in the
	// environment overrides.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if !cfg.EnablePCA {
		if err := agent.Idle(ctx, cfg.MetricsAddr, log); err != nil {
			log.Error("stopped", "error", err)
			os.Exit(1)
		}
		return
	}

	a, err := agent.New(cfg, log)
	if err != nil {
		log.Error("cannot start", "error", err)
		os.Exit(1)
	}
	var streams []string
	for _, addr := range a.PCAPAddrs() {
		streams = append(streams, addr.String())
	}
	log.Info("capturing", "filter", filter.Format(cfg.Filter), "pcap_over_tcp", strings.Join(streams, ","),
		"metrics", cfg.MetricsAddr, "attach_mode", cfg.AttachMode, "snaplen", cfg.SnapLen, "dedup_window", cfg.DedupWindow)
	if err := a.Run(ctx); err != nil {
		log.Error("stopped", "error", err)
		os.Exit(1)
	}
	log.Info("stopped: every program, link and qdisc the agent added is removed")
}
