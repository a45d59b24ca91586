#include "Plugin.h"

#include <zeek/iosource/Component.h>

#include "PcapOverTcpSource.h"

#ifndef PANO_VERSION_MAJOR
#define PANO_VERSION_MAJOR 0
#define PANO_VERSION_MINOR 1
#define PANO_VERSION_PATCH 0
#endif

namespace plugin::Pano_PcapOverTcp {

Plugin plugin;

zeek::plugin::Configuration Plugin::Configure() {
    // "zeek -i pcapovertcp::HOST:PORT": live input only, there is no file
    // to read a trace from.
    AddComponent(new zeek::iosource::PktSrcComponent("PcapOverTcp", "pcapovertcp",
                                                     zeek::iosource::PktSrcComponent::LIVE,
                                                     pano::PcapOverTcpSource::Instantiate));

    zeek::plugin::Configuration config;
    config.name = "Pano::PcapOverTcp";
    config.description = "Packet source reading a PCAP-over-TCP stream (pcapovertcp::HOST:PORT)";
    config.version.major = PANO_VERSION_MAJOR;
    config.version.minor = PANO_VERSION_MINOR;
    config.version.patch = PANO_VERSION_PATCH;
    return config;
}

} // namespace plugin::Pano_PcapOverTcp
