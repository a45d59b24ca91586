// Command pcapovertcp serves a pcap file as a PCAP-over-TCP stream, and
// dumps such a stream to a pcap file. Together they drive and observe a
// pipeline without capture privileges.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/pano-observability/pano/internal/envflag"
)

const usage = `pcapovertcp: PCAP-over-TCP (PCAP-over-IP) tool

Usage:
  pcapovertcp serve -file F [-addr A] [-speed realtime|max|FACTOR] [-loop N|forever] [-nsec] ...
  pcapovertcp dump  [-addr A] -o out.pcap [-count N] [-duration D] ...

  serve   play a pcap file to every client connected to a PCAP-over-TCP server
  dump    connect to a PCAP-over-TCP server and write what it sends to a pcap file

Run "pcapovertcp serve -help" or "pcapovertcp dump -help" for the flags.
Every flag can also be set by an environment variable, PCAPOVERTCP_<FLAG>
(upper case, "-" as "_"); a flag on the command line wins, an empty
variable counts as unset, and a value that does not parse is an error.
`

// envPrefix starts the environment variable of every flag.
const envPrefix = "PCAPOVERTCP"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pcapovertcp:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "dump":
		return dump(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return flag.ErrHelp
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// newFlagSet returns a flag set whose usage lists each flag with its
// environment variable.
func newFlagSet(name, synopsis string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = envflag.Usage(fs, envPrefix, "Usage: pcapovertcp "+synopsis+"\n")
	return fs
}

// hostPort is an -addr, checked when set: HOST:PORT with a numeric port.
type hostPort string

func (a *hostPort) UnmarshalText(b []byte) error {
	_, port, err := net.SplitHostPort(string(b))
	if err != nil {
		return err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q: want 0-65535", port)
	}
	*a = hostPort(b)
	return nil
}

func (a hostPort) MarshalText() ([]byte, error) { return []byte(a), nil }

// logSettings are the flags serve and dump share.
type logSettings struct {
	level  slog.Level
	format logFormat
}

func (l *logSettings) register(fs *flag.FlagSet) {
	fs.TextVar(&l.level, "log-level", slog.LevelInfo, "debug, info, warn or error")
	fs.TextVar(&l.format, "log-format", logFormat("text"), "text or json")
}

func (l logSettings) logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.level}
	if l.format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// logFormat is text or json, checked when set so that a wrong one fails
// naming its flag or variable.
type logFormat string

func (f *logFormat) UnmarshalText(b []byte) error {
	switch s := string(b); s {
	case "text", "json":
		*f = logFormat(s)
		return nil
	default:
		return fmt.Errorf("log format %q: want text or json", s)
	}
}

func (f logFormat) MarshalText() ([]byte, error) { return []byte(f), nil }
