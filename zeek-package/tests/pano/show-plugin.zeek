# @TEST-DOC: the plugin loads and registers the pcapovertcp packet source.
# @TEST-EXEC: zeek -NN Pano::PcapOverTcp | grep -E '^Pano::PcapOverTcp - |Packet Source.*pcapovertcp' | sed -E -e 's/version [0-9][0-9.]*/version X/' -e 's/^ +//' >output
# @TEST-EXEC: btest-diff output
