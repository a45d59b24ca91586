#pragma once

#include <zeek/plugin/Plugin.h>

namespace plugin::Pano_PcapOverTcp {

class Plugin : public zeek::plugin::Plugin {
protected:
    zeek::plugin::Configuration Configure() override;
};

extern Plugin plugin;

} // namespace plugin::Pano_PcapOverTcp
