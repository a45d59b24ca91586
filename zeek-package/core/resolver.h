// Host-name resolution off the caller's thread. getaddrinfo() blocks for
// as long as the DNS server takes (timeouts of several seconds per server
// and attempt), which would stall Zeek's main loop: the lookup runs on a
// thread of its own and signals an eventfd the caller polls.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pcapovertcp {

struct Resolution {
    int gai_error = 0;                        // getaddrinfo's result, 0 on success
    std::string error;                        // its text, if any
    std::vector<std::vector<uint8_t>> addrs;  // sockaddrs, in getaddrinfo's order
};

// Resolves HOST and PORT without blocking: numeric ones at once, names on
// a detached thread. One lookup at a time.
class Resolver {
public:
    Resolver() = default;
    ~Resolver(); // never waits for a lookup still running
    Resolver(const Resolver&) = delete;
    Resolver& operator=(const Resolver&) = delete;

    // Numeric host and port: fills *out and returns true at once. Anything
    // else: starts a lookup and returns false; Fd() then becomes readable
    // when it is done (or *err says why no lookup could start, and the
    // result is already in *out as a failure).
    bool Resolve(const std::string& host, const std::string& port, Resolution* out);

    // The current lookup's eventfd, -1 when none runs.
    int Fd() const;

    // Takes the finished lookup's result; false while it still runs.
    bool Take(Resolution* out);

    bool Busy() const { return pending_ != nullptr; }

    // Drops the current lookup (its thread finishes on its own).
    void Cancel();

    struct Pending; // shared with the lookup's thread

private:
    std::shared_ptr<Pending> pending_;
};

} // namespace pcapovertcp
