// Unit tests of the stream parser alone: every byte order and timestamp
// resolution, every split point, and each kind of bad input.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "pcap_stream.h"

using namespace pcapovertcp;

namespace {

int failures = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if ( ! (cond) ) {                                                            \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
        }                                                                            \
    } while ( 0 )

struct Pkt {
    uint32_t sec, frac, len;
    std::vector<uint8_t> data;
};

void Put32(std::vector<uint8_t>* b, uint32_t v, bool be) {
    for ( int i = 0; i < 4; i++ ) {
        int shift = be ? 24 - 8 * i : 8 * i;
        b->push_back(uint8_t(v >> shift));
    }
}

void Put16(std::vector<uint8_t>* b, uint16_t v, bool be) {
    if ( be ) {
        b->push_back(uint8_t(v >> 8));
        b->push_back(uint8_t(v));
    }
    else {
        b->push_back(uint8_t(v));
        b->push_back(uint8_t(v >> 8));
    }
}

std::vector<uint8_t> Stream(bool be, bool nano, uint32_t snaplen, uint32_t linktype, const std::vector<Pkt>& pkts) {
    std::vector<uint8_t> b;
    Put32(&b, nano ? kMagicNano : kMagicMicro, be);
    Put16(&b, 2, be);
    Put16(&b, 4, be);
    Put32(&b, 0, be);
    Put32(&b, 0, be);
    Put32(&b, snaplen, be);
    Put32(&b, linktype, be);
    for ( const auto& p : pkts ) {
        Put32(&b, p.sec, be);
        Put32(&b, p.frac, be);
        Put32(&b, uint32_t(p.data.size()), be);
        Put32(&b, p.len, be);
        b.insert(b.end(), p.data.begin(), p.data.end());
    }
    return b;
}

std::vector<Pkt> Sample(bool nano) {
    std::vector<Pkt> v;
    for ( uint32_t i = 0; i < 5; i++ ) {
        Pkt p;
        p.sec = 1795642521 + i;
        p.frac = nano ? 999999999 - i * 7 : 999999 - i * 7;
        // sizes 0, 1, 17, 60, 200: empty records are legal
        static const size_t sizes[] = {0, 1, 17, 60, 200};
        for ( size_t j = 0; j < sizes[i]; j++ )
            p.data.push_back(uint8_t(i * 31 + j));
        p.len = uint32_t(p.data.size()) + (i == 3 ? 1000 : 0); // one truncated capture
        v.push_back(p);
    }
    return v;
}

// Feeds stream in pieces (cut at the given offsets) and collects results.
struct Outcome {
    bool header = false;
    std::vector<Pkt> pkts;
    std::vector<uint32_t> nano;
    std::string error;
};

Outcome Feed(const std::vector<uint8_t>& s, const std::vector<size_t>& cuts, uint32_t max_record = kDefaultMaxRecord) {
    StreamParser p(max_record);
    Outcome o;
    size_t prev = 0;
    std::vector<size_t> all = cuts;
    all.push_back(s.size());
    for ( size_t cut : all ) {
        if ( cut < prev )
            continue;
        p.Append(s.data() + prev, cut - prev);
        prev = cut;
        for ( ;; ) {
            bool complete = p.HasComplete();
            Record r;
            ParseResult res = p.Next(&r);
            CHECK(complete == (res != ParseResult::kNeedMore));
            if ( res == ParseResult::kNeedMore )
                break;
            if ( res == ParseResult::kHeader ) {
                CHECK(! o.header);
                o.header = true;
                continue;
            }
            if ( res == ParseResult::kError ) {
                o.error = p.Error();
                return o;
            }
            Pkt k;
            k.sec = uint32_t(r.ts_sec);
            k.frac = r.ts_frac;
            k.len = r.len;
            k.data.assign(r.data, r.data + r.caplen);
            o.pkts.push_back(k);
            o.nano.push_back(r.nanosecond);
        }
    }
    return o;
}

bool Same(const std::vector<Pkt>& a, const std::vector<Pkt>& b) {
    if ( a.size() != b.size() )
        return false;
    for ( size_t i = 0; i < a.size(); i++ )
        if ( a[i].sec != b[i].sec || a[i].frac != b[i].frac || a[i].len != b[i].len || a[i].data != b[i].data )
            return false;
    return true;
}

void TestVariantsAndSplits() {
    for ( int be = 0; be < 2; be++ ) {
        for ( int nano = 0; nano < 2; nano++ ) {
            auto pkts = Sample(nano);
            auto s = Stream(be, nano, 65535, 1, pkts);

            // Whole.
            Outcome o = Feed(s, {});
            CHECK(o.header);
            CHECK(o.error.empty());
            CHECK(Same(o.pkts, pkts));
            for ( auto n : o.nano )
                CHECK(n == uint32_t(nano));

            // Two pieces, cut at every byte boundary.
            for ( size_t cut = 0; cut <= s.size(); cut++ ) {
                Outcome oc = Feed(s, {cut});
                if ( ! Same(oc.pkts, pkts) || ! oc.error.empty() ) {
                    std::fprintf(stderr, "split at %zu (be=%d nano=%d) failed: %s\n", cut, be, nano,
                                 oc.error.c_str());
                    failures++;
                }
            }

            // One byte at a time.
            std::vector<size_t> every;
            for ( size_t i = 1; i < s.size(); i++ )
                every.push_back(i);
            Outcome ob = Feed(s, every);
            CHECK(Same(ob.pkts, pkts));

            // Header fields.
            StreamParser p;
            p.Append(s.data(), kGlobalHeaderLen);
            Record r;
            CHECK(p.Next(&r) == ParseResult::kHeader);
            CHECK(p.Header().big_endian == bool(be));
            CHECK(p.Header().nanosecond == bool(nano));
            CHECK(p.Header().snaplen == 65535);
            CHECK(p.Header().LinkType() == 1);
            CHECK(p.Header().version_major == 2 && p.Header().version_minor == 4);
        }
    }
}

void TestUsecConversion() {
    Record r;
    r.nanosecond = true;
    r.ts_frac = 123456789;
    CHECK(r.Usec() == 123456);
    r.nanosecond = false;
    r.ts_frac = 654321;
    CHECK(r.Usec() == 654321);
}

void TestBadMagic() {
    auto s = Stream(false, false, 65535, 1, {});
    s[0] = 0x0a; // pcapng section header block starts 0a 0d 0d 0a
    s[1] = 0x0d;
    s[2] = 0x0d;
    s[3] = 0x0a;
    Outcome o = Feed(s, {});
    CHECK(! o.header);
    CHECK(o.error.find("bad magic") != std::string::npos);
}

void TestBadVersion() {
    auto s = Stream(true, false, 65535, 1, {});
    s[5] = 1; // version 1.x
    s[4] = 0;
    Outcome o = Feed(s, {});
    CHECK(o.error.find("unsupported pcap version 1.") != std::string::npos);
}

void TestOversizedRecord() {
    std::vector<Pkt> pkts = Sample(false);
    Pkt big;
    big.sec = 1;
    big.frac = 2;
    big.data.assign(300, 0xab);
    big.len = 300;
    pkts.insert(pkts.begin() + 2, big);
    auto s = Stream(false, false, 256, 1, pkts);
    // The error comes from the record header alone, before any of its data.
    Outcome o = Feed(s, {s.size() - 300});
    CHECK(o.pkts.size() == 2);
    CHECK(o.error.find("record 3: captured length 300 exceeds the snaplen 256") != std::string::npos);

    // snaplen 0 (unknown) falls back to the maximum record size.
    auto s2 = Stream(false, false, 0, 1, {big});
    Outcome o2 = Feed(s2, {kGlobalHeaderLen + kRecordHeaderLen}, 100);
    CHECK(o2.error.find("exceeds the maximum record size 100") != std::string::npos);

    // A snaplen above the maximum does not lift the maximum.
    auto s3 = Stream(false, false, 0x7fffffff, 1, {big});
    Outcome o3 = Feed(s3, {}, 200);
    CHECK(o3.error.find("exceeds the maximum record size 200") != std::string::npos);

    // Exactly snaplen is fine.
    auto s4 = Stream(false, false, 300, 1, {big});
    Outcome o4 = Feed(s4, {});
    CHECK(o4.error.empty() && o4.pkts.size() == 1);
}

void TestFractionOutOfRange() {
    Pkt p;
    p.sec = 5;
    p.frac = 1000000; // fine for nanoseconds, not for microseconds
    p.data = {1, 2, 3};
    p.len = 3;
    Outcome o = Feed(Stream(false, false, 65535, 1, {p}), {});
    CHECK(o.error.find("timestamp fraction 1000000 us out of range") != std::string::npos);
    Outcome on = Feed(Stream(false, true, 65535, 1, {p}), {});
    CHECK(on.error.empty() && on.pkts.size() == 1 && on.pkts[0].frac == 1000000);
}

void TestLenBelowCaplen() {
    Pkt p;
    p.sec = 5;
    p.frac = 6;
    p.data = {1, 2, 3, 4};
    p.len = 0;
    Outcome o = Feed(Stream(false, false, 65535, 1, {p}), {});
    CHECK(o.pkts.size() == 1 && o.pkts[0].len == 4);
}

void TestTruncatedTail() {
    auto pkts = Sample(false);
    auto s = Stream(false, false, 65535, 1, pkts);
    s.resize(s.size() - 10); // the last record is cut
    StreamParser p;
    p.Append(s.data(), s.size());
    Record r;
    int n = 0;
    ParseResult res;
    while ( (res = p.Next(&r)) != ParseResult::kNeedMore )
        if ( res == ParseResult::kPacket )
            n++;
    CHECK(n == 4);
    CHECK(p.Buffered() == kRecordHeaderLen + 200 - 10);
    p.Reset();
    CHECK(p.Buffered() == 0 && ! p.HaveHeader());
}

void TestLinkTypeBits() {
    auto s = Stream(false, false, 65535, (1u << 28) | (4u << 26) | 113u, {});
    StreamParser p;
    p.Append(s.data(), s.size());
    Record r;
    CHECK(p.Next(&r) == ParseResult::kHeader);
    CHECK(p.Header().LinkType() == 113);
}

void TestLargeRecordGrowsBuffer() {
    Pkt p;
    p.sec = 9;
    p.frac = 9;
    p.data.assign(kDefaultMaxRecord, 0x5a);
    p.len = kDefaultMaxRecord;
    auto s = Stream(false, false, kDefaultMaxRecord, 1, {p, p});
    std::vector<size_t> cuts;
    for ( size_t i = 1000; i < s.size(); i += 70000 )
        cuts.push_back(i);
    Outcome o = Feed(s, cuts);
    CHECK(o.error.empty() && o.pkts.size() == 2 && o.pkts[1].data == p.data);
}

} // namespace

int main() {
    TestVariantsAndSplits();
    TestUsecConversion();
    TestBadMagic();
    TestBadVersion();
    TestOversizedRecord();
    TestFractionOutOfRange();
    TestLenBelowCaplen();
    TestTruncatedTail();
    TestLinkTypeBits();
    TestLargeRecordGrowsBuffer();
    if ( failures ) {
        std::fprintf(stderr, "parser_test: %d failure(s)\n", failures);
        return 1;
    }
    std::printf("parser_test: ok\n");
    return 0;
}
