package zeekstandin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options configure Convert.
type Options struct {
	RTT RTTMode
	// Timeout is how long (network time) a query waits for its response
	// before it is logged as unanswered. Default 5 s. Zeek itself waits for
	// the connection to expire; see the package tests for the difference.
	Timeout time.Duration
	// IgnoreChecksums is Zeek's -C: keep packets whose IP/UDP/TCP checksum
	// is wrong (needed for captures of locally sent, offloaded packets).
	IgnoreChecksums bool
	// Live makes network time advance with the wall clock while no packet
	// arrives, as Zeek does on a live source, so that unanswered queries are
	// logged although traffic stopped. Leave false for files.
	Live bool
	// Tshark is the program to run; default "tshark".
	Tshark string
	Logger *slog.Logger
}

// Stats count what Convert saw.
type Stats struct {
	Messages    int // DNS messages dissected by tshark
	BadChecksum int // messages dropped for a bad checksum (as Zeek does)
	BadLines    int // tshark lines that could not be read
	Records     int // dns.log records written
	Unanswered  int // of which queries without a response
}

// fields is what tshark prints per packet, in this order.
var fields = []string{
	"frame.time_epoch", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
	"udp.srcport", "udp.dstport", "tcp.srcport", "tcp.dstport",
	"ip.checksum.status", "udp.checksum.status", "tcp.checksum.status",
	"dns.id", "dns.flags", "dns.count.queries", "dns.count.answers",
	"dns.count.auth_rr", "dns.count.add_rr",
	"dns.qry.name", "dns.qry.type", "dns.qry.class",
	"dns.resp.name", "dns.resp.type", "dns.resp.ttl", "dns.resp.len",
	"dns.a", "dns.aaaa", "dns.cname", "dns.ns", "dns.ptr.domain_name",
	"dns.mx.mail_exchange", "dns.soa.mname", "dns.srv.target",
	"dns.txt", "dns.txt.length", "dns.spf", "dns.spf.length",
	"dns.rrsig.type_covered", "dns.rrsig.signers_name", "dns.dnskey.algorithm",
	"dns.ds.algorithm", "dns.ds.digest_type", "dns.nsec.next_domain_name",
}

const (
	fTime = iota
	fIPSrc
	fIPDst
	fIP6Src
	fIP6Dst
	fUDPSrc
	fUDPDst
	fTCPSrc
	fTCPDst
	fIPCk
	fUDPCk
	fTCPCk
	fID
	fFlags
	fQD
	fAN
	fNS
	fAR
	fQName
	fQType
	fQClass
	fRName
	fRType
	fRTTL
	fRLen
	fA
	fAAAA
	fCNAME
	fNSName
	fPTR
	fMX
	fSOA
	fSRV
	fTXT
	fTXTLen
	fSPF
	fSPFLen
	fRRSIGType
	fRRSIGSigner
	fDNSKEYAlg
	fDSAlg
	fDSDigest
	fNSECNext
	nFields
)

// aggregator separates the values of a field that occurs more than once.
const aggregator = "\x1f"

// tsharkArgs: -l flushes every packet's line at once (a live stream);
// -M resets tshark's session every 100,000 packets, since it otherwise keeps
// state for every frame of an endless stream (DNS over UDP needs none
// across packets).
func tsharkArgs(opts Options) []string {
	args := []string{"-n", "-l", "-r", "-", "-Y", "dns", "-M", "100000",
		"-T", "fields", "-E", "separator=/t", "-E", "occurrence=a",
		"-E", "aggregator=" + aggregator, "-E", "quote=n"}
	if !opts.IgnoreChecksums {
		args = append(args, "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
			"-o", "tcp.check_checksum:TRUE")
	}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	return args
}

// Convert reads a pcap stream (a file or a PCAP-over-TCP stream) from in,
// has tshark dissect it, and writes dns.log records to out, one JSON object
// per line, each with a single Write as soon as it is complete. At the end
// of in, every unmatched message is logged. It returns when in is exhausted
// and everything is written, or when ctx is done.
func Convert(ctx context.Context, in io.Reader, out io.Writer, opts Options) (Stats, error) {
	var st Stats
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Tshark == "" {
		opts.Tshark = "tshark"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	cmd := exec.CommandContext(ctx, opts.Tshark, tsharkArgs(opts)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return st, fmt.Errorf("tshark stdin: %w", err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return st, fmt.Errorf("tshark stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return st, fmt.Errorf("start %s: %w", opts.Tshark, err)
	}
	// The input ends when it is exhausted or closed under us (a stream
	// whose connection the caller closed): either way tshark gets EOF.
	inErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(stdin, in)
		if errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, syscall.EPIPE) {
			err = nil
		}
		stdin.Close()
		inErr <- err
	}()

	var writeErr error
	emit := func(r *Record) {
		if writeErr != nil {
			return
		}
		b, err := json.Marshal(r)
		if err != nil {
			writeErr = fmt.Errorf("encode record: %w", err)
			return
		}
		if _, err := out.Write(append(b, '\n')); err != nil {
			writeErr = fmt.Errorf("write dns.log: %w", err)
			return
		}
		st.Records++
		if r.RCode == nil && r.sawQuery {
			st.Unanswered++
		}
	}
	a := newAnalyzer(opts.RTT, opts.Timeout.Seconds(), emit)

	lines := make(chan string, 1024)
	readErr := make(chan error, 1)
	go func() {
		defer close(lines)
		br := bufio.NewReaderSize(stdout, 1<<16)
		for {
			line, err := br.ReadString('\n')
			if len(line) > 0 {
				select {
				case lines <- strings.TrimSuffix(line, "\n"):
				case <-ctx.Done():
					readErr <- ctx.Err()
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				readErr <- err
				return
			}
		}
	}()

	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var lastPkt, lastExpire float64
	lastWall := time.Now()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			if opts.Live && lastPkt > 0 {
				now := lastPkt + time.Since(lastWall).Seconds()
				a.expire(now)
				lastExpire = now
			}
		case line, ok := <-lines:
			if !ok {
				break loop
			}
			m, err := ParseLine(line)
			if err != nil {
				st.BadLines++
				log.Debug("skipping tshark line", "err", err)
				continue
			}
			st.Messages++
			if m.BadChecksum && !opts.IgnoreChecksums {
				st.BadChecksum++
				continue
			}
			if m.Time > lastPkt {
				lastPkt, lastWall = m.Time, time.Now()
			}
			a.process(&m)
			if lastPkt-lastExpire >= 0.5 {
				a.expire(lastPkt)
				lastExpire = lastPkt
			}
		}
		if writeErr != nil {
			return st, writeErr
		}
	}
	if err := ctx.Err(); err != nil {
		_ = cmd.Wait()
		return st, err
	}
	rerr := <-readErr
	werr := cmd.Wait()
	ierr := <-inErr
	a.flush()
	if writeErr != nil {
		return st, writeErr
	}
	if rerr != nil {
		return st, fmt.Errorf("read tshark output: %w", rerr)
	}
	if werr != nil {
		return st, fmt.Errorf("tshark: %w: %s", werr, lastLine(stderr.String()))
	}
	if ierr != nil {
		return st, fmt.Errorf("read input: %w", ierr)
	}
	log.Info("dns.log stand-in done", "messages", st.Messages, "records", st.Records, "unanswered", st.Unanswered)
	return st, nil
}

// lastLine is tshark's last complaint, without its notes about session
// resets (-M) or running as root.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l != "" && !strings.Contains(l, "resetting session") && !strings.HasPrefix(l, "Running as user") {
			return l
		}
	}
	return strings.TrimSpace(s)
}

// ParseLine reads one line of tshark's field output (see fields) into a
// Message.
func ParseLine(line string) (Message, error) {
	var m Message
	f := strings.Split(line, "\t")
	if len(f) != nFields {
		return m, fmt.Errorf("%d fields, want %d", len(f), nFields)
	}
	// Several DNS messages in one frame (TCP) come out aggregated; only
	// the first of each field is read then (a known limitation).
	first := func(i int) string {
		s, _, _ := strings.Cut(f[i], aggregator)
		return s
	}
	var err error
	if m.Time, err = strconv.ParseFloat(f[fTime], 64); err != nil {
		return m, fmt.Errorf("frame time %q: %w", f[fTime], err)
	}
	// Tunnelled packets carry more than one IP header: the innermost counts.
	src, dst := last(f[fIPSrc]), last(f[fIPDst])
	if f[fIP6Src] != "" {
		src, dst = last(f[fIP6Src]), last(f[fIP6Dst])
	}
	sa, err1 := netip.ParseAddr(src)
	da, err2 := netip.ParseAddr(dst)
	if err := errors.Join(err1, err2); err != nil {
		return m, fmt.Errorf("addresses: %w", err)
	}
	sp, dp, ck := f[fUDPSrc], f[fUDPDst], f[fUDPCk]
	m.Proto = "udp"
	if sp == "" {
		sp, dp, ck = f[fTCPSrc], f[fTCPDst], f[fTCPCk]
		m.Proto = "tcp"
	}
	sport, err1 := parseUint(last(sp), 16)
	dport, err2 := parseUint(last(dp), 16)
	if err := errors.Join(err1, err2); err != nil {
		return m, fmt.Errorf("ports: %w", err)
	}
	m.Src = netip.AddrPortFrom(sa.Unmap(), uint16(sport))
	m.Dst = netip.AddrPortFrom(da.Unmap(), uint16(dport))
	// checksum status: 0 bad, 1 good, 2 not verified
	m.BadChecksum = last(f[fIPCk]) == "0" || last(ck) == "0"

	var id, flags, qd, an, ns, ar uint64
	for _, p := range []struct {
		dst  *uint64
		i    int
		bits int
	}{{&id, fID, 16}, {&flags, fFlags, 16}, {&qd, fQD, 16}, {&an, fAN, 16}, {&ns, fNS, 16}, {&ar, fAR, 16}} {
		if *p.dst, err = parseUint(first(p.i), p.bits); err != nil {
			return m, fmt.Errorf("field %s: %w", fields[p.i], err)
		}
	}
	m.ID, m.Flags = uint16(id), uint16(flags)
	m.QDCount, m.ANCount, m.NSCount, m.ARCount = int(qd), int(an), int(ns), int(ar)

	if m.QDCount > 0 && f[fQType] != "" {
		qt, err1 := parseUint(first(fQType), 16)
		qc, err2 := parseUint(first(fQClass), 16)
		if err := errors.Join(err1, err2); err != nil {
			return m, fmt.Errorf("question: %w", err)
		}
		m.HasQuestion = true
		m.QName, m.QType, m.QClass = zeekName(first(fQName)), int(qt), int(qc)
	}
	if m.ANCount > 0 {
		m.Answers, err = answers(f, m.ANCount)
		if err != nil {
			return m, err
		}
	}
	return m, nil
}

// answers rebuilds the answer section from tshark's per-field lists. Each
// list holds the values of every record of the message in order, so walking
// the records in order and taking the next value of the list that belongs
// to each record's type pairs them up.
func answers(f []string, n int) ([]Answer, error) {
	split := func(i int) []string {
		if f[i] == "" {
			return nil
		}
		return strings.Split(f[i], aggregator)
	}
	names, types, ttls, lens := split(fRName), split(fRType), split(fRTTL), split(fRLen)
	if len(names) < n || len(types) < n || len(ttls) < n || len(lens) < n {
		return nil, fmt.Errorf("answer count %d but %d names, %d types, %d TTLs", n, len(names), len(types), len(ttls))
	}
	lists := map[int][]string{}
	next := func(i int) string {
		l, ok := lists[i]
		if !ok {
			l = split(i)
		}
		if len(l) == 0 {
			lists[i] = nil
			return ""
		}
		lists[i] = l[1:]
		return l[0]
	}
	out := make([]Answer, 0, n)
	for i := range n {
		t, err := parseUint(types[i], 16)
		if err != nil {
			return nil, fmt.Errorf("answer type: %w", err)
		}
		ttl, err := parseUint(ttls[i], 32)
		if err != nil {
			return nil, fmt.Errorf("answer TTL: %w", err)
		}
		rdlen, err := parseUint(lens[i], 16)
		if err != nil {
			return nil, fmt.Errorf("answer length: %w", err)
		}
		a := Answer{Name: zeekName(names[i]), Type: int(t), TTL: float64(ttl)}
		switch a.Type {
		case 1: // A
			a.Text = addr(next(fA))
		case 28, 38: // AAAA, A6
			a.Text = addr(next(fAAAA))
		case 5:
			a.Text = zeekName(next(fCNAME))
		case 2:
			a.Text = zeekName(next(fNSName))
		case 12:
			a.Text = zeekName(next(fPTR))
		case 15:
			a.Text = zeekName(next(fMX))
		case 6:
			a.Text = zeekName(next(fSOA))
		case 33:
			a.Text = zeekName(next(fSRV))
		case 16, 99: // TXT, SPF: "TXT <len> <string>" per character-string
			label, si, li := "TXT", fTXT, fTXTLen
			if a.Type == 99 {
				label, si, li = "SPF", fSPF, fSPFLen
			}
			var parts []string
			for used := uint64(0); used < rdlen; {
				l, err := parseUint(next(li), 8)
				if err != nil {
					return nil, fmt.Errorf("%s length: %w", label, err)
				}
				parts = append(parts, fmt.Sprintf("%s %d %s", label, l, next(si)))
				used += l + 1
			}
			a.Text = strings.Join(parts, " ")
		case 46:
			signer := zeekName(next(fRRSIGSigner))
			if signer == "" {
				signer = "<Root>"
			}
			a.Text = fmt.Sprintf("RRSIG %s %s", next(fRRSIGType), signer)
		case 48:
			a.Text = "DNSKEY " + next(fDNSKEYAlg)
		case 43:
			a.Text = fmt.Sprintf("DS %s %s", next(fDSAlg), next(fDSDigest))
		case 47:
			a.Text = fmt.Sprintf("NSEC %s %s", a.Name, zeekName(next(fNSECNext)))
		case 50:
			a.Text = "NSEC3"
		case 51:
			a.Text = "NSEC3PARAM"
		case 65534:
			a.Text = "BIND9 signing signal"
		case 11: // WKS: Zeek logs no text
		case 29, 44: // LOC, SSHFP: parsed by Zeek, text not rebuilt here
			a.Text = qtypeName(a.Type)
		default:
			if !notLogged[a.Type] {
				a.Text = fmt.Sprintf("<unknown type=%d>", a.Type)
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// zeekName lower-cases a name as Zeek does and writes the root as "".
func zeekName(s string) string {
	if s == "<Root>" {
		return ""
	}
	return strings.ToLower(s)
}

func addr(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	return s
}

func last(s string) string {
	if i := strings.LastIndex(s, aggregator); i >= 0 {
		return s[i+len(aggregator):]
	}
	return s
}

func parseUint(s string, bits int) (uint64, error) {
	return strconv.ParseUint(s, 0, bits)
}
