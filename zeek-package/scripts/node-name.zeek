##! Which node wrote a log: every log line gets "_node", the name of the
##! host whose traffic Zeek saw. With many nodes producing into one Kafka
##! cluster, this is what tells their records apart downstream
##! (flowlogs-pipeline turns it into the "node" label of every pano_dns_*
##! metric).
##!
##! The name is Pano::node_name if redefined, else the environment
##! variable PANO_NODE, else the host name. It is Zeek's own log-extension
##! mechanism (Log::default_ext_func, prefix "_"), so the field is in
##! every log, in JSON and TSV alike, and the shim forwards lines as Zeek
##! wrote them.

module Pano;

export {
	## This node's name; "" means PANO_NODE, or the host name without it.
	const node_name = "" &redef;

	## The extension record: its fields are added to every log line,
	## each name prefixed with Log::default_ext_prefix ("_").
	type NodeExt: record {
		node: string &log;
	};
}

global resolved_node = "";

# Resolved at the first log write, so that a redef of node_name and the
# environment are both in effect, whichever script logs first.
function node_ext(path: string): NodeExt
	{
	if ( resolved_node == "" )
		{
		resolved_node = node_name;

		if ( resolved_node == "" )
			resolved_node = getenv("PANO_NODE");

		if ( resolved_node == "" )
			resolved_node = gethostname();
		}

	return NodeExt($node=resolved_node);
	}

redef Log::default_ext_func = node_ext;
