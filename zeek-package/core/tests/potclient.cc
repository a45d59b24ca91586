// potclient: drives pcapovertcp::Client from a poll loop on Client::Fd(),
// either draining it on each wake-up or exactly as Zeek's I/O loop does
// (-loop zeek), and prints every packet, so that a test can compare them
// with what a server sent.
//
// stdout: "pkt SEC FRAC NANO CAPLEN LEN HEX" per packet, then one
// "stats key=value ..." line. stderr: the client's log messages.
// Exit status: 0 when every -min-* goal was reached, 2 on -timeout.
#include <poll.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "client.h"

using namespace pcapovertcp;

namespace {

void Usage() {
    std::fprintf(stderr,
                 "usage: potclient -addr HOST:PORT [-count N] [-min-connects N] [-min-protocol-errors N]\n"
                 "                 [-min-disconnects N] [-timeout SEC] [-rcvbuf BYTES] [-backoff SEC]\n"
                 "                 [-backoff-max SEC] [-backoff-max-healthy SEC] [-connect-timeout SEC]\n"
                 "                 [-keepalive-idle SEC] [-max-record BYTES] [-linktype N] [-read-size BYTES] [-quiet 1]\n"
                 "                 [-loop drain|zeek]\n");
    std::exit(64);
}

} // namespace

int main(int argc, char** argv) {
    ClientOptions o;
    std::string addr;
    uint64_t want_packets = 0, want_connects = 0, want_errors = 0, want_disconnects = 0;
    double timeout = 10;
    bool quiet = false;
    bool zeek_loop = false;
    for ( int i = 1; i < argc; i++ ) {
        std::string a = argv[i];
        if ( i + 1 >= argc )
            Usage();
        const char* v = argv[++i];
        if ( a == "-addr" )
            addr = v;
        else if ( a == "-count" )
            want_packets = std::strtoull(v, nullptr, 10);
        else if ( a == "-min-connects" )
            want_connects = std::strtoull(v, nullptr, 10);
        else if ( a == "-min-protocol-errors" )
            want_errors = std::strtoull(v, nullptr, 10);
        else if ( a == "-min-disconnects" )
            want_disconnects = std::strtoull(v, nullptr, 10);
        else if ( a == "-timeout" )
            timeout = std::atof(v);
        else if ( a == "-rcvbuf" )
            o.recv_buffer = std::atoi(v);
        else if ( a == "-backoff" )
            o.backoff_initial = std::atof(v);
        else if ( a == "-backoff-max" )
            o.backoff_max = std::atof(v);
        else if ( a == "-backoff-max-healthy" )
            o.backoff_max_healthy = std::atof(v);
        else if ( a == "-connect-timeout" )
            o.connect_timeout = std::atof(v);
        else if ( a == "-keepalive-idle" )
            o.keepalive_idle = std::atoi(v);
        else if ( a == "-max-record" )
            o.max_record = uint32_t(std::strtoul(v, nullptr, 10));
        else if ( a == "-linktype" )
            o.expected_linktype = std::atoi(v);
        else if ( a == "-loop" )
            zeek_loop = std::string(v) == "zeek";
        else if ( a == "-quiet" )
            quiet = std::atoi(v) != 0;
        else if ( a == "-read-size" )
            o.read_size = std::strtoull(v, nullptr, 10);
        else
            Usage();
    }
    std::string err;
    if ( ! SplitHostPort(addr, &o.host, &o.port, &err) ) {
        std::fprintf(stderr, "potclient: %s\n", err.c_str());
        return 64;
    }
    o.log = [](LogLevel l, const std::string& m) {
        const char* ls = l == LogLevel::kInfo ? "info" : l == LogLevel::kWarning ? "warning" : "error";
        std::fprintf(stderr, "log %s %s\n", ls, m.c_str());
    };

    Client c(o);
    if ( ! c.Start(&err) ) {
        std::fprintf(stderr, "potclient: %s\n", err.c_str());
        return 1;
    }

    using clock = std::chrono::steady_clock;
    auto deadline = clock::now() + std::chrono::duration<double>(timeout);
    uint64_t polls = 0, poll_timeouts = 0;
    int max_rcvbuf = -1;
    int exit_code = 2;
    std::string hex;
    bool ready = true;
    for ( ;; ) {
        Record r;
        // "drain" takes every available packet per wake-up; "zeek" does what
        // Zeek's I/O loop does: one packet per Process() call, and a call
        // only when the descriptor is readable or the source reported a
        // zero timeout (HasBuffered).
        while ( ready && c.Next(&r) ) {
            if ( zeek_loop )
                ready = false;
            if ( quiet )
                continue;
            hex.resize(size_t(r.caplen) * 2);
            static const char digits[] = "0123456789abcdef";
            for ( uint32_t i = 0; i < r.caplen; i++ ) {
                hex[2 * i] = digits[r.data[i] >> 4];
                hex[2 * i + 1] = digits[r.data[i] & 15];
            }
            std::printf("pkt %lld %u %d %u %u %s\n", static_cast<long long>(r.ts_sec), r.ts_frac,
                        r.nanosecond ? 1 : 0, r.caplen, r.len, hex.c_str());
        }
        max_rcvbuf = std::max(max_rcvbuf, c.RecvBufferSize());
        const ClientStats& s = c.Stats();
        if ( s.packets >= want_packets && s.connects >= want_connects && s.protocol_errors >= want_errors &&
             s.disconnects >= want_disconnects ) {
            exit_code = 0;
            break;
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
        if ( left <= 0 )
            break;
        // Block the way Zeek does: no timeout unless Next() left a whole
        // record buffered. A 1 s cap only bounds the -timeout check.
        int wait = c.HasBuffered() ? 0 : int(std::min<long long>(left, 1000));
        pollfd pfd{c.Fd(), POLLIN, 0};
        polls++;
        int n = poll(&pfd, 1, wait);
        if ( n == 0 )
            poll_timeouts++;
        ready = ! zeek_loop || n > 0 || wait == 0;
    }
    const ClientStats& s = c.Stats();
    std::printf("stats packets=%llu bytes=%llu wire_bytes=%llu connects=%llu connect_failures=%llu "
                "disconnects=%llu protocol_errors=%llu truncated=%llu discarded_bytes=%llu "
                "polls=%llu poll_timeouts=%llu rcvbuf=%d\n",
                (unsigned long long)s.packets, (unsigned long long)s.bytes, (unsigned long long)s.wire_bytes,
                (unsigned long long)s.connects, (unsigned long long)s.connect_failures,
                (unsigned long long)s.disconnects, (unsigned long long)s.protocol_errors,
                (unsigned long long)s.truncated, (unsigned long long)s.discarded_bytes, (unsigned long long)polls,
                (unsigned long long)poll_timeouts, max_rcvbuf);
    if ( exit_code != 0 )
        std::fprintf(stderr, "potclient: timeout after %.1fs\n", timeout);
    return exit_code;
}
