// Zeek-independent parser for a PCAP-over-TCP stream: a libpcap global
// header followed by packet records, arriving in arbitrary pieces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pcapovertcp {

// Magic numbers of the libpcap file format, as read in the writer's byte
// order.
constexpr uint32_t kMagicMicro = 0xa1b2c3d4;
constexpr uint32_t kMagicNano = 0xa1b23c4d;

constexpr size_t kGlobalHeaderLen = 24;
constexpr size_t kRecordHeaderLen = 16;

// Upper bound on one record's captured length, whatever the header's
// snaplen says: a corrupt or hostile stream must not make us allocate
// gigabytes. 256 KiB is libpcap's own MAXIMUM_SNAPLEN.
constexpr uint32_t kDefaultMaxRecord = 262144;

struct GlobalHeader {
    uint32_t magic = 0;      // as written on the wire, after byte-order detection
    bool big_endian = false; // the writer used big-endian byte order
    bool nanosecond = false; // record timestamps carry nanoseconds
    uint16_t version_major = 0;
    uint16_t version_minor = 0;
    int32_t thiszone = 0;
    uint32_t sigfigs = 0;
    uint32_t snaplen = 0;
    uint32_t linktype = 0;   // full field (upper bits may carry FCS info)
    uint32_t LinkType() const { return linktype & 0xffff; }
};

// One packet. data points into the parser's buffer and stays valid until
// the next call to Next(), Append() or Reset().
struct Record {
    int64_t ts_sec = 0;
    uint32_t ts_frac = 0;    // microseconds, or nanoseconds if nanosecond
    bool nanosecond = false;
    uint32_t caplen = 0;
    uint32_t len = 0;        // original length on the wire
    const uint8_t* data = nullptr;

    // Timestamp fraction in microseconds (truncated for nanosecond streams).
    uint32_t Usec() const { return nanosecond ? ts_frac / 1000 : ts_frac; }
};

enum class ParseResult {
    kNeedMore, // no complete record buffered
    kHeader,   // the global header was just read and validated
    kPacket,   // *out holds a packet
    kError,    // the stream is unusable; Error() says why
};

// Decodes a global header from 24 bytes. Returns false and sets *err when
// the magic, version or snaplen is invalid.
bool ParseGlobalHeader(const uint8_t* p, GlobalHeader* h, std::string* err);

// Incremental stream parser. Feed it bytes as they arrive (any split, down
// to one byte at a time); it hands back the header once and then packets.
class StreamParser {
public:
    explicit StreamParser(uint32_t max_record = kDefaultMaxRecord);

    // Copies bytes into the buffer.
    void Append(const uint8_t* p, size_t n);

    // For reading straight from a socket without a copy: WriteSpace returns
    // a pointer to at least min free bytes; Commit(n) says n were written.
    uint8_t* WriteSpace(size_t min);
    void Commit(size_t n);

    ParseResult Next(Record* out);

    // True when a whole record (or the header) is buffered, i.e. Next()
    // will not return kNeedMore.
    bool HasComplete() const;

    bool HaveHeader() const { return have_header_; }
    const GlobalHeader& Header() const { return header_; }
    const std::string& Error() const { return error_; }

    // Bytes buffered that do not yet form a complete record.
    size_t Buffered() const { return end_ - start_; }
    uint64_t RecordsParsed() const { return records_; }

    // Forget everything (new connection).
    void Reset();

private:
    uint32_t Get32(const uint8_t* p) const;
    void Compact();
    ParseResult Fail(std::string msg);

    uint32_t max_record_;
    std::vector<uint8_t> buf_;
    size_t start_ = 0; // first unconsumed byte
    size_t end_ = 0;   // one past the last buffered byte
    bool have_header_ = false;
    bool failed_ = false;
    GlobalHeader header_;
    std::string error_;
    uint64_t records_ = 0;
};

} // namespace pcapovertcp
