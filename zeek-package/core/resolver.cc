#include "resolver.h"

#include <netdb.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>

namespace pcapovertcp {

// Owned jointly by the Resolver and the lookup's thread, so that either
// can go first: the eventfd is closed only when neither can touch it.
struct Resolver::Pending {
    std::mutex mu;
    bool done = false;
    Resolution result;
    int efd = -1;
    ~Pending() {
        if ( efd >= 0 )
            close(efd);
    }
};

namespace {

void Lookup(const std::string& host, const std::string& port, int flags, Resolution* out) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = flags;
    addrinfo* res = nullptr;
    out->gai_error = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if ( out->gai_error != 0 ) {
        out->error = out->gai_error == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(out->gai_error);
        return;
    }
    for ( addrinfo* ai = res; ai; ai = ai->ai_next ) {
        auto* b = reinterpret_cast<const uint8_t*>(ai->ai_addr);
        out->addrs.emplace_back(b, b + ai->ai_addrlen);
    }
    freeaddrinfo(res);
}

bool IsNumber(const std::string& s) {
    return ! s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

} // namespace

Resolver::~Resolver() { Cancel(); }

void Resolver::Cancel() { pending_.reset(); }

int Resolver::Fd() const { return pending_ ? pending_->efd : -1; }

bool Resolver::Resolve(const std::string& host, const std::string& port, Resolution* out) {
    *out = Resolution{};
    Cancel();
    // An address literal and a port number need no name service: answer
    // at once, without a thread.
    if ( IsNumber(port) ) {
        Resolution numeric;
        Lookup(host, port, AI_NUMERICHOST | AI_NUMERICSERV, &numeric);
        if ( numeric.gai_error == 0 ) {
            *out = std::move(numeric);
            return true;
        }
    }
    auto p = std::make_shared<Pending>();
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if ( p->efd < 0 ) {
        out->gai_error = EAI_SYSTEM;
        out->error = std::string("eventfd: ") + std::strerror(errno);
        return true;
    }
    try {
        std::thread([p, host, port] {
            Resolution r;
            Lookup(host, port, 0, &r);
            std::lock_guard<std::mutex> lock(p->mu);
            p->result = std::move(r);
            p->done = true;
            uint64_t one = 1;
            ssize_t n = write(p->efd, &one, sizeof(one));
            (void)n; // a full counter is readable already
        }).detach();
    } catch ( const std::system_error& e ) {
        out->gai_error = EAI_SYSTEM;
        out->error = std::string("resolver thread: ") + e.what();
        return true;
    }
    pending_ = std::move(p);
    return false;
}

bool Resolver::Take(Resolution* out) {
    if ( ! pending_ )
        return false;
    // p outlives the lock: the mutex lives in what it points to.
    std::shared_ptr<Pending> p = pending_;
    {
        std::lock_guard<std::mutex> lock(p->mu);
        if ( ! p->done )
            return false;
        *out = std::move(p->result);
    }
    uint64_t v;
    ssize_t n = read(p->efd, &v, sizeof(v));
    (void)n;
    pending_.reset();
    return true;
}

} // namespace pcapovertcp
