// libFuzzer target (clang++ -fsanitize=fuzzer): the parser must never
// misbehave on any byte stream, and must give the same result however
// the stream is cut into pieces.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "pcap_stream.h"

using namespace pcapovertcp;

namespace {

struct Out {
    std::vector<std::string> packets; // serialized ts/len/data
    std::string error;
    bool header = false;
};

Out Parse(const uint8_t* data, size_t size, size_t chunk) {
    StreamParser p(4096);
    Out o;
    for ( size_t off = 0; off < size && o.error.empty(); ) {
        size_t n = chunk == 0 ? size : std::min(chunk, size - off);
        p.Append(data + off, n);
        off += n;
        for ( ;; ) {
            Record r;
            ParseResult res = p.Next(&r);
            if ( res == ParseResult::kNeedMore )
                break;
            if ( res == ParseResult::kHeader ) {
                o.header = true;
                continue;
            }
            if ( res == ParseResult::kError ) {
                o.error = p.Error();
                if ( o.error.empty() )
                    std::abort();
                break;
            }
            if ( r.caplen > 4096 || r.len < r.caplen )
                std::abort();
            std::string s = std::to_string(r.ts_sec) + "." + std::to_string(r.ts_frac) + "/" +
                            std::to_string(r.len) + ":";
            s.append(reinterpret_cast<const char*>(r.data), r.caplen);
            o.packets.push_back(std::move(s));
        }
    }
    return o;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if ( size < 1 )
        return 0;
    size_t chunk = data[0] % 32; // 0: all at once
    Out whole = Parse(data + 1, size - 1, 0);
    Out cut = Parse(data + 1, size - 1, chunk == 0 ? 1 : chunk);
    if ( whole.packets != cut.packets || whole.error != cut.error || whole.header != cut.header )
        std::abort();
    return 0;
}
