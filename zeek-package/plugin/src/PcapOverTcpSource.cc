#include "PcapOverTcpSource.h"

#include <pcap.h>

#include <zeek/ID.h>
#include <zeek/Reporter.h>
#include <zeek/Val.h>

namespace pano {

namespace {

// Script-level settings live in the plugin's own scripts
// (plugin/scripts/__load__.zeek), loaded whenever the plugin is.
// A missing identifier means the defaults.
double IntervalOption(const char* name, double dflt) {
    const auto& id = zeek::id::find(name);
    if ( ! id || ! id->GetVal() )
        return dflt;
    return id->GetVal()->AsInterval();
}

uint64_t CountOption(const char* name, uint64_t dflt) {
    const auto& id = zeek::id::find(name);
    if ( ! id || ! id->GetVal() )
        return dflt;
    return id->GetVal()->AsCount();
}

} // namespace

PcapOverTcpSource::PcapOverTcpSource(const std::string& path, bool is_live) : path_(path), is_live_(is_live) {}

PcapOverTcpSource::~PcapOverTcpSource() { Close(); }

zeek::iosource::PktSrc* PcapOverTcpSource::Instantiate(const std::string& path, bool is_live) {
    return new PcapOverTcpSource(path, is_live);
}

void PcapOverTcpSource::Open() {
    if ( ! is_live_ ) {
        Error("pcapovertcp is a live source: use -i pcapovertcp::HOST:PORT");
        return;
    }

    pcapovertcp::ClientOptions o;
    std::string err;
    if ( ! pcapovertcp::SplitHostPort(path_, &o.host, &o.port, &err) ) {
        Error(err);
        return;
    }
    o.recv_buffer = int(CountOption("PcapOverTcp::socket_buffer_size", 0));
    o.backoff_initial = IntervalOption("PcapOverTcp::reconnect_initial", 0.1);
    o.backoff_max = IntervalOption("PcapOverTcp::reconnect_max", 30.0);
    o.backoff_max_healthy = IntervalOption("PcapOverTcp::reconnect_max_healthy", 1.0);
    o.max_record = uint32_t(CountOption("PcapOverTcp::max_record_size", pcapovertcp::kDefaultMaxRecord));
    o.read_size = size_t(CountOption("PcapOverTcp::read_size", 256 * 1024));
    // Zeek fixes the link type when the source opens, before any server
    // has answered; a stream of another type is refused (and retried).
    int link_type = int(CountOption("PcapOverTcp::link_type", 1));
    o.expected_linktype = link_type;
    o.log = [](pcapovertcp::LogLevel l, const std::string& msg) {
        switch ( l ) {
            case pcapovertcp::LogLevel::kInfo: zeek::reporter->Info("%s", msg.c_str()); break;
            case pcapovertcp::LogLevel::kWarning: zeek::reporter->Warning("%s", msg.c_str()); break;
            case pcapovertcp::LogLevel::kError: zeek::reporter->Error("%s", msg.c_str()); break;
        }
    };

    client_ = std::make_unique<pcapovertcp::Client>(o);
    // Resolving and connecting are asynchronous: Zeek starts even if the
    // server is not up yet (or its name does not resolve yet), and the
    // client keeps retrying with backoff.
    if ( ! client_->Start(&err) ) {
        client_.reset();
        Error(err);
        return;
    }

    props_.path = path_;
    props_.selectable_fd = client_->Fd();
    props_.link_type = link_type;
    props_.netmask = NETMASK_UNKNOWN;
    props_.is_live = true;
    Opened(props_);
}

void PcapOverTcpSource::Close() {
    if ( ! client_ )
        return;
    client_.reset();
    Closed();
}

bool PcapOverTcpSource::ExtractNextPacket(zeek::Packet* pkt) {
    if ( ! client_ )
        return false;

    // Bound the work per call when a filter rejects a long run of packets;
    // GetNextTimeout() brings us back at once if more are buffered.
    for ( int i = 0; i < 1024; i++ ) {
        pcapovertcp::Record rec;
        if ( ! client_->Next(&rec) )
            return false;

        struct timeval tv; // Zeek's pkt_timeval on Linux
        tv.tv_sec = time_t(rec.ts_sec);
        tv.tv_usec = suseconds_t(rec.Usec());

        if ( current_filter_ >= 0 ) {
            struct pcap_pkthdr hdr;
            hdr.ts = tv;
            hdr.caplen = rec.caplen;
            hdr.len = rec.len;
            if ( ! ApplyBPFFilter(current_filter_, &hdr, rec.data) ) {
                filtered_++;
                filtered_bytes_ += rec.caplen;
                continue;
            }
        }

        // The data stays in the client's buffer until the next Next() call,
        // which Zeek makes only after DoneWithPacket().
        pkt->Init(props_.link_type, &tv, rec.caplen, rec.len, rec.data);
        return true;
    }
    return false;
}

void PcapOverTcpSource::DoneWithPacket() {
    // Nothing to release: the next ExtractNextPacket() reuses the buffer.
}

bool PcapOverTcpSource::SetFilter(int index) {
    current_filter_ = index;
    return true;
}

double PcapOverTcpSource::GetNextTimeout() {
    if ( client_ && client_->HasBuffered() )
        return 0.0;
    return PktSrc::GetNextTimeout();
}

void PcapOverTcpSource::Statistics(Stats* s) {
    if ( ! client_ )
        return;
    const auto& cs = client_->Stats();
    uint64_t delivered = cs.packets - filtered_;
    // Records we know were lost: cut off by a disconnect, or thrown away
    // with a stream that failed validation. What the server could not send
    // us is counted by the server (the agent's metrics).
    uint64_t lost = cs.truncated + cs.protocol_errors;
    s->received = delivered;
    s->bytes_received = cs.bytes - filtered_bytes_;
    s->dropped = lost;
    s->link = cs.packets + lost;
    s->filtered = filtered_;
}

} // namespace pano
