#include "pcap_stream.h"

#include <cstring>

namespace pcapovertcp {

namespace {

uint32_t Load32(const uint8_t* p, bool big_endian) {
    if ( big_endian )
        return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
    return (uint32_t(p[3]) << 24) | (uint32_t(p[2]) << 16) | (uint32_t(p[1]) << 8) | uint32_t(p[0]);
}

uint16_t Load16(const uint8_t* p, bool big_endian) {
    if ( big_endian )
        return uint16_t((p[0] << 8) | p[1]);
    return uint16_t((p[1] << 8) | p[0]);
}

std::string Hex32(uint32_t v) {
    char b[16];
    snprintf(b, sizeof(b), "0x%08x", v);
    return b;
}

} // namespace

bool ParseGlobalHeader(const uint8_t* p, GlobalHeader* h, std::string* err) {
    GlobalHeader g;
    uint32_t le = Load32(p, false);
    uint32_t be = Load32(p, true);
    if ( le == kMagicMicro || le == kMagicNano ) {
        g.big_endian = false;
        g.magic = le;
    }
    else if ( be == kMagicMicro || be == kMagicNano ) {
        g.big_endian = true;
        g.magic = be;
    }
    else {
        *err = "not a pcap stream: bad magic " + Hex32(be) +
               " (want 0xa1b2c3d4 or 0xa1b23c4d in either byte order; pcapng is not supported)";
        return false;
    }
    g.nanosecond = g.magic == kMagicNano;
    g.version_major = Load16(p + 4, g.big_endian);
    g.version_minor = Load16(p + 6, g.big_endian);
    g.thiszone = int32_t(Load32(p + 8, g.big_endian));
    g.sigfigs = Load32(p + 12, g.big_endian);
    g.snaplen = Load32(p + 16, g.big_endian);
    g.linktype = Load32(p + 20, g.big_endian);
    if ( g.version_major != 2 ) {
        *err = "unsupported pcap version " + std::to_string(g.version_major) + "." +
               std::to_string(g.version_minor) + " (want 2.4)";
        return false;
    }
    *h = g;
    return true;
}

StreamParser::StreamParser(uint32_t max_record) : max_record_(max_record) {
    buf_.resize(64 * 1024);
}

void StreamParser::Reset() {
    start_ = end_ = 0;
    have_header_ = false;
    failed_ = false;
    header_ = GlobalHeader();
    error_.clear();
}

uint32_t StreamParser::Get32(const uint8_t* p) const { return Load32(p, header_.big_endian); }

void StreamParser::Compact() {
    if ( start_ == 0 )
        return;
    if ( start_ == end_ ) {
        start_ = end_ = 0;
        return;
    }
    std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
    end_ -= start_;
    start_ = 0;
}

uint8_t* StreamParser::WriteSpace(size_t min) {
    if ( buf_.size() - end_ < min ) {
        // Move the unconsumed tail to the front before growing: record data
        // handed out earlier is no longer referenced (see Record).
        Compact();
        if ( buf_.size() - end_ < min )
            buf_.resize(end_ + min);
    }
    return buf_.data() + end_;
}

void StreamParser::Commit(size_t n) { end_ += n; }

void StreamParser::Append(const uint8_t* p, size_t n) {
    std::memcpy(WriteSpace(n), p, n);
    Commit(n);
}

ParseResult StreamParser::Fail(std::string msg) {
    failed_ = true;
    error_ = std::move(msg);
    return ParseResult::kError;
}

bool StreamParser::HasComplete() const {
    if ( failed_ )
        return true;
    size_t avail = end_ - start_;
    if ( ! have_header_ )
        return avail >= kGlobalHeaderLen;
    if ( avail < kRecordHeaderLen )
        return false;
    uint32_t caplen = Get32(buf_.data() + start_ + 8);
    // An oversized record is "complete" in the sense that Next() will report it.
    return caplen > max_record_ || avail >= kRecordHeaderLen + size_t(caplen);
}

ParseResult StreamParser::Next(Record* out) {
    if ( failed_ )
        return ParseResult::kError;

    size_t avail = end_ - start_;
    const uint8_t* p = buf_.data() + start_;

    if ( ! have_header_ ) {
        if ( avail < kGlobalHeaderLen )
            return ParseResult::kNeedMore;
        std::string err;
        if ( ! ParseGlobalHeader(p, &header_, &err) )
            return Fail(err);
        have_header_ = true;
        start_ += kGlobalHeaderLen;
        return ParseResult::kHeader;
    }

    if ( avail < kRecordHeaderLen )
        return ParseResult::kNeedMore;

    uint32_t sec = Get32(p);
    uint32_t frac = Get32(p + 4);
    uint32_t caplen = Get32(p + 8);
    uint32_t len = Get32(p + 12);
    uint64_t index = records_ + 1;

    uint32_t limit = max_record_;
    if ( header_.snaplen != 0 && header_.snaplen < limit )
        limit = header_.snaplen;
    if ( caplen > limit ) {
        std::string what = header_.snaplen != 0 && header_.snaplen == limit ? "snaplen" : "maximum record size";
        return Fail("record " + std::to_string(index) + ": captured length " + std::to_string(caplen) +
                    " exceeds the " + what + " " + std::to_string(limit) + " (corrupt or desynchronised stream)");
    }
    uint32_t frac_limit = header_.nanosecond ? 1000000000u : 1000000u;
    if ( frac >= frac_limit )
        return Fail("record " + std::to_string(index) + ": timestamp fraction " + std::to_string(frac) +
                    (header_.nanosecond ? " ns" : " us") + " out of range (corrupt or desynchronised stream)");

    if ( avail < kRecordHeaderLen + size_t(caplen) )
        return ParseResult::kNeedMore;

    out->ts_sec = sec;
    out->ts_frac = frac;
    out->nanosecond = header_.nanosecond;
    out->caplen = caplen;
    // Some writers leave the original length at 0 or below caplen; Zeek
    // expects len >= caplen.
    out->len = len < caplen ? caplen : len;
    out->data = p + kRecordHeaderLen;
    start_ += kRecordHeaderLen + caplen;
    records_++;
    return ParseResult::kPacket;
}

} // namespace pcapovertcp
