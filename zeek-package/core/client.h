// Zeek-independent PCAP-over-TCP client: name resolution off the caller's
// thread, non-blocking connect, stream parsing, dead-peer detection,
// reconnection with exponential backoff, and one stable file descriptor
// (an epoll instance) for the caller's poll loop. Nothing it does blocks.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "pcap_stream.h"
#include "resolver.h"

namespace pcapovertcp {

enum class LogLevel { kInfo, kWarning, kError };

struct ClientOptions {
    std::string host;           // IPv4, IPv6 or hostname
    std::string port;           // number or service name
    int recv_buffer = 0;        // SO_RCVBUF in bytes; 0 keeps the kernel's default
    double backoff_initial = 0.1; // seconds before the first reconnect
    double backoff_max = 30.0;    // cap of the doubling backoff
    // Cap instead of backoff_max while the last connection delivered a
    // valid stream: a server that was healthy is most likely restarting,
    // and every second of delay is a second of capture lost.
    double backoff_max_healthy = 1.0;
    double connect_timeout = 5.0; // per address; a SYN may vanish without an answer
    // TCP keepalive on the connection, so that a server gone without FIN
    // or RST (crash, cable, firewall) is noticed although the stream is
    // quiet: after keepalive_idle seconds without data, probes every
    // keepalive_interval seconds; the connection is dropped once
    // keepalive_idle + keepalive_interval * keepalive_count seconds pass
    // with no answer (TCP_USER_TIMEOUT). A live peer's kernel answers
    // probes, so an idle healthy stream is never dropped. 0 disables.
    int keepalive_idle = 10;
    int keepalive_interval = 5;
    int keepalive_count = 3;
    uint32_t max_record = kDefaultMaxRecord;
    size_t read_size = 256 * 1024; // bytes asked of one read()
    int expected_linktype = -1;    // reject streams of another link type; -1 = any
    std::function<void(LogLevel, const std::string&)> log; // may be empty
};

struct ClientStats {
    uint64_t packets = 0;        // records delivered
    uint64_t bytes = 0;          // captured bytes delivered
    uint64_t wire_bytes = 0;     // original lengths of the delivered records
    uint64_t connects = 0;       // connections that delivered a valid header
    uint64_t connect_failures = 0; // failed attempts: resolution, connect, connect timeout
    uint64_t disconnects = 0;    // established connections that ended
    uint64_t protocol_errors = 0; // bad header or record: connection dropped
    uint64_t truncated = 0;      // records cut off by a disconnect (lost)
    uint64_t discarded_bytes = 0; // bytes thrown away with a failed or cut connection
};

enum class ClientState { kIdle, kWaiting, kResolving, kConnecting, kConnected };

// Splits "HOST:PORT", "[IPV6]:PORT" or "IPV6%zone" forms. A bare IPv6
// address needs brackets.
bool SplitHostPort(const std::string& spec, std::string* host, std::string* port, std::string* err);

class Client {
public:
    explicit Client(ClientOptions opts);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // Creates the epoll and timer descriptors and starts the first
    // connection attempt. Never blocks on the network: host names are
    // resolved on a thread of their own.
    bool Start(std::string* err);

    // The descriptor to poll for readability; stable for the client's
    // lifetime, whatever happens to the connection underneath.
    int Fd() const { return epfd_; }

    // Non-blocking. Returns true with *rec filled when a packet is
    // available; otherwise does at most one round of pending I/O (connect
    // completion, one read, reconnect timer) and returns false if that
    // produced no packet. rec->data is valid until the next call.
    bool Next(Record* rec);

    // True when Next() would return a packet without any I/O.
    bool HasBuffered() const;

    const ClientStats& Stats() const { return stats_; }
    ClientState State() const { return state_; }
    bool HaveHeader() const { return parser_.HaveHeader(); }
    const GlobalHeader& Header() const { return parser_.Header(); }
    // Effective SO_RCVBUF of the current socket, -1 if none.
    int RecvBufferSize() const;
    const std::string& LastError() const { return last_error_; }

private:
    void Log(LogLevel l, const std::string& msg);
    void BeginAttempt();   // resolve, then connect to the first address
    void Resolved(Resolution* r); // the addresses of this attempt are known
    void AttemptFailed(const std::string& msg); // count, report (not every time), retry
    bool ConnectNext();    // try the next resolved address; false if none left
    void ConnectDone();    // socket became writable while connecting
    void ConnectTimedOut(); // no answer to this address within connect_timeout
    void ReadOnce();
    void Drop(const std::string& why, bool protocol_error);
    void ScheduleRetry(bool report);
    void ArmTimer(double seconds); // 0 disarms
    void CloseSocket();
    void SetRecvBuffer(int s);
    void SetKeepalive(int s);
    bool Pump();           // one round of epoll events, returns true if something happened

    ClientOptions opts_;
    StreamParser parser_;
    ClientStats stats_;
    ClientState state_ = ClientState::kIdle;
    int epfd_ = -1;
    int timerfd_ = -1;
    int sock_ = -1;
    double backoff_ = 0;
    bool healthy_ = false;         // the last connection delivered a valid stream
    uint64_t failures_in_row_ = 0; // attempts failed since the last valid stream
    Resolver resolver_;
    std::vector<std::vector<uint8_t>> addrs_; // resolved sockaddrs of this attempt
    size_t addr_index_ = 0;
    uint64_t sock_gen_ = 0; // tags epoll events of the current socket (0 is the timer)
    std::string last_error_;
    std::string current_addr_;
    bool rcvbuf_warned_ = false;
};

} // namespace pcapovertcp
