#include "client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

namespace pcapovertcp {

namespace {

constexpr uint64_t kTimerTag = 0;
constexpr uint64_t kResolveTag = UINT64_MAX; // socket tags count up from 1

std::string Errno(int e) { return std::strerror(e); }

std::string FormatAddr(const sockaddr* sa) {
    char host[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if ( sa->sa_family == AF_INET ) {
        auto* in = reinterpret_cast<const sockaddr_in*>(sa);
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        return std::string(host) + ":" + std::to_string(port);
    }
    if ( sa->sa_family == AF_INET6 ) {
        auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        return "[" + std::string(host) + "]:" + std::to_string(port);
    }
    return "?";
}

std::string Seconds(double s) {
    char b[32];
    snprintf(b, sizeof(b), "%.3gs", s);
    return b;
}

} // namespace

bool SplitHostPort(const std::string& spec, std::string* host, std::string* port, std::string* err) {
    if ( spec.empty() ) {
        *err = "empty address (want HOST:PORT)";
        return false;
    }
    std::string h, p;
    if ( spec[0] == '[' ) {
        auto close = spec.find(']');
        if ( close == std::string::npos || close + 1 >= spec.size() || spec[close + 1] != ':' ) {
            *err = "bad address \"" + spec + "\" (want [IPV6]:PORT)";
            return false;
        }
        h = spec.substr(1, close - 1);
        p = spec.substr(close + 2);
    }
    else {
        auto colon = spec.rfind(':');
        if ( colon == std::string::npos ) {
            *err = "bad address \"" + spec + "\": missing port (want HOST:PORT)";
            return false;
        }
        if ( spec.find(':') != colon ) {
            *err = "bad address \"" + spec + "\": an IPv6 address needs brackets, e.g. [::1]:57012";
            return false;
        }
        h = spec.substr(0, colon);
        p = spec.substr(colon + 1);
    }
    if ( h.empty() || p.empty() ) {
        *err = "bad address \"" + spec + "\": empty host or port";
        return false;
    }
    *host = h;
    *port = p;
    return true;
}

Client::Client(ClientOptions opts) : opts_(std::move(opts)), parser_(opts_.max_record) {
    if ( opts_.read_size < 4096 )
        opts_.read_size = 4096;
    if ( opts_.backoff_initial <= 0 )
        opts_.backoff_initial = 0.001;
    if ( opts_.backoff_max < opts_.backoff_initial )
        opts_.backoff_max = opts_.backoff_initial;
}

Client::~Client() {
    CloseSocket();
    if ( timerfd_ >= 0 )
        close(timerfd_);
    if ( epfd_ >= 0 )
        close(epfd_);
}

void Client::Log(LogLevel l, const std::string& msg) {
    if ( l != LogLevel::kInfo )
        last_error_ = msg;
    if ( opts_.log )
        opts_.log(l, msg);
}

bool Client::Start(std::string* err) {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if ( epfd_ < 0 ) {
        *err = "epoll_create1: " + Errno(errno);
        return false;
    }
    timerfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if ( timerfd_ < 0 ) {
        *err = "timerfd_create: " + Errno(errno);
        return false;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kTimerTag;
    if ( epoll_ctl(epfd_, EPOLL_CTL_ADD, timerfd_, &ev) < 0 ) {
        *err = "epoll_ctl(timer): " + Errno(errno);
        return false;
    }
    BeginAttempt();
    return true;
}

void Client::CloseSocket() {
    if ( sock_ >= 0 ) {
        if ( epfd_ >= 0 )
            epoll_ctl(epfd_, EPOLL_CTL_DEL, sock_, nullptr);
        close(sock_);
        sock_ = -1;
    }
}

void Client::ArmTimer(double seconds) {
    itimerspec its{};
    if ( seconds == 0 ) {
        timerfd_settime(timerfd_, 0, &its, nullptr);
        return;
    }
    if ( seconds < 1e-9 )
        seconds = 1e-9; // zero would disarm the timer
    its.it_value.tv_sec = time_t(seconds);
    its.it_value.tv_nsec = long((seconds - double(its.it_value.tv_sec)) * 1e9);
    if ( its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0 )
        its.it_value.tv_nsec = 1;
    timerfd_settime(timerfd_, 0, &its, nullptr);
}

void Client::ScheduleRetry(bool report) {
    state_ = ClientState::kWaiting;
    double cap = healthy_ ? std::min(opts_.backoff_max_healthy, opts_.backoff_max) : opts_.backoff_max;
    backoff_ = backoff_ == 0 ? opts_.backoff_initial : std::min(backoff_ * 2, cap);
    ArmTimer(backoff_);
    if ( report )
        Log(LogLevel::kInfo, "pcapovertcp " + opts_.host + ":" + opts_.port + ": reconnecting in " + Seconds(backoff_));
}

void Client::AttemptFailed(const std::string& msg) {
    stats_.connect_failures++;
    failures_in_row_++;
    // Retrying every second for as long as a server stays away must not
    // flood reporter.log: failures 1, 2, 4, 8, ... in a row are reported.
    bool report = (failures_in_row_ & (failures_in_row_ - 1)) == 0;
    if ( report )
        Log(LogLevel::kWarning, failures_in_row_ == 1 ? msg
                                                      : msg + " (" + std::to_string(failures_in_row_) +
                                                            " failed attempts in a row; next reported at " +
                                                            std::to_string(failures_in_row_ * 2) + ")");
    ScheduleRetry(report);
}

void Client::BeginAttempt() {
    addrs_.clear();
    addr_index_ = 0;
    Resolution r;
    if ( resolver_.Resolve(opts_.host, opts_.port, &r) ) {
        Resolved(&r);
        return;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kResolveTag;
    if ( epoll_ctl(epfd_, EPOLL_CTL_ADD, resolver_.Fd(), &ev) < 0 ) {
        resolver_.Cancel();
        AttemptFailed("pcapovertcp: cannot resolve " + opts_.host + ":" + opts_.port + ": epoll_ctl: " + Errno(errno));
        return;
    }
    state_ = ClientState::kResolving;
}

void Client::Resolved(Resolution* r) {
    if ( r->gai_error != 0 ) {
        AttemptFailed("pcapovertcp: cannot resolve " + opts_.host + ":" + opts_.port + ": " + r->error);
        return;
    }
    addrs_ = std::move(r->addrs);
    if ( ! ConnectNext() )
        AttemptFailed("pcapovertcp: cannot connect to " + opts_.host + ":" + opts_.port + ": " + last_error_);
}

void Client::SetRecvBuffer(int s) {
    int want = opts_.recv_buffer;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
    int got = 0;
    socklen_t sl = sizeof(got);
    getsockopt(s, SOL_SOCKET, SO_RCVBUF, &got, &sl);
    if ( got >= want )
        return;
    // SO_RCVBUF is capped by net.core.rmem_max; with CAP_NET_ADMIN the cap
    // can be passed by.
    if ( setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) == 0 )
        return;
    if ( ! rcvbuf_warned_ ) {
        rcvbuf_warned_ = true;
        Log(LogLevel::kWarning, "pcapovertcp: receive buffer limited to " + std::to_string(got) + " bytes, asked for " +
                                    std::to_string(want) + ": raise net.core.rmem_max or grant CAP_NET_ADMIN");
    }
}

void Client::SetKeepalive(int s) {
    if ( opts_.keepalive_idle <= 0 )
        return;
    int on = 1;
    int idle = opts_.keepalive_idle;
    int intvl = std::max(1, opts_.keepalive_interval);
    int cnt = std::max(1, opts_.keepalive_count);
    // TCP_USER_TIMEOUT makes the deadline one number, counted from the
    // last thing heard from the server, even when probes cannot leave at
    // all (no route); it also bounds data of ours never acknowledged.
    unsigned int user_timeout = unsigned(idle + intvl * cnt) * 1000u;
    if ( setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) < 0 ||
         setsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) < 0 ||
         setsockopt(s, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) < 0 ||
         setsockopt(s, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) < 0 ||
         setsockopt(s, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout)) < 0 )
        Log(LogLevel::kWarning, "pcapovertcp: TCP keepalive: " + Errno(errno) +
                                    ": a server gone without closing the connection may go unnoticed");
}

bool Client::ConnectNext() {
    while ( addr_index_ < addrs_.size() ) {
        const auto& a = addrs_[addr_index_];
        auto* sa = reinterpret_cast<const sockaddr*>(a.data());
        current_addr_ = FormatAddr(sa);
        int s = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
        if ( s < 0 ) {
            last_error_ = current_addr_ + ": socket: " + Errno(errno);
            addr_index_++;
            continue;
        }
        if ( opts_.recv_buffer > 0 ) {
            // Before connect() so that the window scale is negotiated for it.
            SetRecvBuffer(s);
        }
        SetKeepalive(s);
        sock_ = s;
        int rc = connect(s, sa, socklen_t(a.size()));
        if ( rc < 0 && errno != EINPROGRESS ) {
            last_error_ = current_addr_ + ": " + Errno(errno);
            CloseSocket();
            addr_index_++;
            continue;
        }
        sock_gen_++;
        epoll_event ev{};
        ev.events = EPOLLOUT;
        ev.data.u64 = sock_gen_;
        if ( epoll_ctl(epfd_, EPOLL_CTL_ADD, s, &ev) < 0 ) {
            last_error_ = current_addr_ + ": epoll_ctl: " + Errno(errno);
            CloseSocket();
            addr_index_++;
            continue;
        }
        state_ = ClientState::kConnecting;
        ArmTimer(opts_.connect_timeout);
        return true;
    }
    CloseSocket();
    return false;
}

void Client::ConnectDone() {
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if ( getsockopt(sock_, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 )
        soerr = errno;
    if ( soerr != 0 ) {
        last_error_ = current_addr_ + ": " + Errno(soerr);
        CloseSocket();
        addr_index_++;
        if ( ! ConnectNext() )
            AttemptFailed("pcapovertcp: cannot connect to " + opts_.host + ":" + opts_.port + ": " + last_error_);
        return;
    }
    ArmTimer(0); // the connect timeout
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = sock_gen_;
    epoll_ctl(epfd_, EPOLL_CTL_MOD, sock_, &ev);
    parser_.Reset();
    state_ = ClientState::kConnected;
    Log(LogLevel::kInfo, "pcapovertcp: connected to " + current_addr_);
}

void Client::ConnectTimedOut() {
    last_error_ = current_addr_ + ": no answer within " + Seconds(opts_.connect_timeout);
    CloseSocket();
    addr_index_++;
    if ( ! ConnectNext() )
        AttemptFailed("pcapovertcp: cannot connect to " + opts_.host + ":" + opts_.port + ": " + last_error_);
}

void Client::Drop(const std::string& why, bool protocol_error) {
    size_t buffered = parser_.Buffered();
    if ( protocol_error )
        stats_.protocol_errors++;
    else if ( parser_.HaveHeader() && buffered > 0 )
        stats_.truncated++; // a record was cut off mid-way
    stats_.discarded_bytes += buffered;
    if ( state_ == ClientState::kConnected )
        stats_.disconnects++;
    // Only a connection that delivered a valid stream earns quick retries.
    if ( protocol_error || ! parser_.HaveHeader() )
        healthy_ = false;
    std::string msg = "pcapovertcp: " + current_addr_ + ": " + why;
    if ( buffered > 0 )
        msg += " (" + std::to_string(buffered) + " buffered bytes discarded)";
    Log(protocol_error ? LogLevel::kError : LogLevel::kWarning, msg);
    CloseSocket();
    parser_.Reset();
    ScheduleRetry(true);
}

void Client::ReadOnce() {
    uint8_t* dst = parser_.WriteSpace(opts_.read_size);
    ssize_t n = read(sock_, dst, opts_.read_size);
    if ( n > 0 ) {
        parser_.Commit(size_t(n));
        return;
    }
    if ( n == 0 ) {
        Drop(parser_.HaveHeader() || parser_.Buffered() > 0 ? "server closed the connection"
                                                             : "server closed the connection before the pcap header",
             false);
        return;
    }
    if ( errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR )
        return;
    Drop("read: " + Errno(errno), false);
}

bool Client::Pump() {
    epoll_event evs[4];
    int n = epoll_wait(epfd_, evs, 4, 0);
    if ( n <= 0 )
        return false;
    for ( int i = 0; i < n; i++ ) {
        uint64_t tag = evs[i].data.u64;
        if ( tag == kTimerTag ) {
            uint64_t expirations;
            if ( read(timerfd_, &expirations, sizeof(expirations)) < 0 )
                continue; // spurious: nothing expired
            if ( state_ == ClientState::kWaiting )
                BeginAttempt();
            else if ( state_ == ClientState::kConnecting )
                ConnectTimedOut();
            continue;
        }
        if ( tag == kResolveTag ) {
            if ( state_ != ClientState::kResolving )
                continue;
            int fd = resolver_.Fd();
            Resolution r;
            epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
            if ( ! resolver_.Take(&r) ) {
                epoll_event ev{};
                ev.events = EPOLLIN;
                ev.data.u64 = kResolveTag;
                epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
                continue;
            }
            Resolved(&r);
            continue;
        }
        if ( tag != sock_gen_ || sock_ < 0 )
            continue; // event of a socket closed earlier in this batch
        if ( state_ == ClientState::kConnecting )
            ConnectDone();
        else if ( state_ == ClientState::kConnected )
            ReadOnce();
    }
    return true;
}

bool Client::HasBuffered() const { return state_ == ClientState::kConnected && parser_.HasComplete(); }

bool Client::Next(Record* rec) {
    for ( int round = 0; round < 2; round++ ) {
        while ( state_ == ClientState::kConnected ) {
            ParseResult r = parser_.Next(rec);
            if ( r == ParseResult::kPacket ) {
                stats_.packets++;
                stats_.bytes += rec->caplen;
                stats_.wire_bytes += rec->len;
                return true;
            }
            if ( r == ParseResult::kHeader ) {
                const GlobalHeader& h = parser_.Header();
                if ( opts_.expected_linktype >= 0 && int(h.LinkType()) != opts_.expected_linktype ) {
                    Drop("link type " + std::to_string(h.LinkType()) + " in the pcap header, expected " +
                             std::to_string(opts_.expected_linktype),
                         true);
                    break;
                }
                stats_.connects++;
                backoff_ = 0; // a healthy server: retry quickly next time
                healthy_ = true;
                failures_in_row_ = 0;
                Log(LogLevel::kInfo, "pcapovertcp: " + current_addr_ + ": pcap stream " +
                                         std::to_string(h.version_major) + "." + std::to_string(h.version_minor) +
                                         (h.big_endian ? " big-endian" : " little-endian") +
                                         (h.nanosecond ? " nanosecond" : " microsecond") +
                                         " snaplen " + std::to_string(h.snaplen) + " linktype " +
                                         std::to_string(h.LinkType()));
                continue;
            }
            if ( r == ParseResult::kError ) {
                Drop(parser_.Error(), true);
                break;
            }
            break; // kNeedMore
        }
        if ( round == 0 && ! Pump() )
            return false;
    }
    return false;
}

int Client::RecvBufferSize() const {
    if ( sock_ < 0 )
        return -1;
    int v = 0;
    socklen_t sl = sizeof(v);
    if ( getsockopt(sock_, SOL_SOCKET, SO_RCVBUF, &v, &sl) < 0 )
        return -1;
    return v;
}

} // namespace pcapovertcp
