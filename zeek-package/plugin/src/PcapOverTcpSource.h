// Zeek glue of the PCAP-over-TCP packet source. Everything that does not
// need Zeek (socket, stream parsing, reconnection) is in core/.
#pragma once

#include <zeek/iosource/PktSrc.h>

#include <memory>
#include <string>

#include "client.h"

namespace pano {

class PcapOverTcpSource : public zeek::iosource::PktSrc {
public:
    PcapOverTcpSource(const std::string& path, bool is_live);
    ~PcapOverTcpSource() override;

    static zeek::iosource::PktSrc* Instantiate(const std::string& path, bool is_live);

    // Zeek polls the client's descriptor; a record already buffered (the
    // descriptor need not be readable then) must not wait for the next
    // poll, so it reports a zero timeout.
    double GetNextTimeout() override;

    bool SetFilter(int index) override;
    void Statistics(Stats* stats) override;

protected:
    void Open() override;
    void Close() override;
    bool ExtractNextPacket(zeek::Packet* pkt) override;
    void DoneWithPacket() override;

private:
    std::string path_;
    bool is_live_;
    std::unique_ptr<pcapovertcp::Client> client_;
    Properties props_;
    int current_filter_ = -1;
    uint64_t filtered_ = 0;
    uint64_t filtered_bytes_ = 0;
};

} // namespace pano
