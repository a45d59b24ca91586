##! Records with every type a Zeek log can hold, and the values that the
##! TSV and JSON writers render differently: escapes, control bytes, bytes
##! that are not UTF-8, placeholders, holes, inf and nan, times past 2^31.
##! zeek_test.go runs it with both writers and converts the TSV log.
##!
##! types.log is converted; ambiguous.log holds records that TSV cannot
##! tell apart (the test checks that their TSV lines are the same).

module PanoTypes;

export {
	redef enum Log::ID += { LOG, AMBIGUOUS };

	type Inner: record {
		a: addr &log;
		p: port &log;
	};

	type Info: record {
		b: bool &log &optional;
		i: int &log &optional;
		c: count &log &optional;
		d: double &log &optional;
		t: time &log &optional;
		iv: interval &log &optional;
		s: string &log &optional;
		a: addr &log &optional;
		sn: subnet &log &optional;
		p: port &log &optional;
		e: transport_proto &log &optional;
		ss: set[string] &log &optional;
		vs: vector of string &log &optional;
		vc: vector of count &log &optional;
		vi: vector of int &log &optional;
		vd: vector of double &log &optional;
		viv: vector of interval &log &optional;
		sa: set[addr] &log &optional;
		sp: set[port] &log &optional;
		vb: vector of bool &log &optional;
		n: Inner &log &optional;
	};
}

event zeek_init()
	{
	Log::create_stream(LOG, [$columns=Info, $path="types"]);
	Log::create_stream(AMBIGUOUS, [$columns=Info, $path="ambiguous"]);

	local strs = vector("plain", "", "-", "(empty)", "-x", "(empty)x", " ", "sp ace",
	    "tab\there", "nl\nx", "\r", "\x08", "\x0c", "\x00\x01\x1b\x1f\x7f", "comma,x", ",", ",,",
	    "back\\slash", "\\", "\\\\", "x\\", "\\x41", "\\xzz", "quote\"x", "/", "|",
	    "caf\xc3\xa9", "\xe2\x82\xac euro", "\xf0\x9f\x98\x80", "\xe2\x80\xa8", "\xef\xbb\xbf",
	    "\xef\xb7\x90", "\xf4\x8f\xbf\xbf", "\xc2\xa0", "\xc2\x80", "\xc2\x9f", "\xee\x80\x80",
	    "\xef\xa3\xbf", "\xef\xa4\x80", "\xef\xbf\xaf", "\xef\xbf\xb0", "\xef\xbf\xbd", "\xef\xbf\xbe",
	    "\xff\xfe", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80",
	    "\xe2\x82", "\xe2\x82A", "caf\xc3\xa9\x00", "caf\xc3\xa9\n", "caf\xc3\xa9\t", "\xc2\x80caf\xc3\xa9",
	    "caf\xc3\xa9\xff", "\\\x00");
	for ( i in strs )
		Log::write(LOG, Info($s=strs[i], $ss=set(strs[i], "z"), $vs=vector(strs[i], "z")));

	local no_strings: set[string] = set();
	local no_counts: vector of count = vector();
	local no_addrs: set[addr] = set();
	local inf = 1e308 * 10.0;
	local holes: vector of string;
	holes[2] = "a";
	local count_holes: vector of count;
	count_holes[1] = 5;

	Log::write(LOG, Info($b=T, $i=-5, $c=18446744073709551615, $d=3.14159265358979,
	    $t=double_to_time(1533310046.924340123), $iv=0.0015149116516113281sec, $a=1.2.3.4,
	    $sn=10.0.0.0/8, $p=53/udp, $e=tcp));
	Log::write(LOG, Info($b=F, $i=0, $c=0, $d=0.0, $t=double_to_time(0.0), $iv=0sec,
	    $a=[2001:db8::1], $sn=[2001:db8::]/32, $p=0/unknown, $e=udp, $ss=no_strings,
	    $vc=no_counts, $sa=no_addrs, $n=[$a=[::1], $p=80/tcp]));
	Log::write(LOG, Info($i=-9223372036854775807, $d=1e20, $iv=-2.5sec,
	    $vd=vector(1e-7, 123456789.123456789, -0.0, 1e300, 5e-324), $viv=vector(300sec, 1e-9sec)));
	Log::write(LOG, Info($d=0.1, $vc=vector(1, 2, 3), $vi=vector(-1, 0, 1), $vb=vector(T, F),
	    $sa=set(1.1.1.1, [::2]), $sp=set(53/udp, 443/tcp)));
	Log::write(LOG, Info($vs=holes, $vc=count_holes));
	Log::write(LOG, Info($d=inf, $vd=vector(inf, -inf, inf - inf, 1.5)));
	Log::write(LOG, Info($d=-inf));
	Log::write(LOG, Info($d=inf - inf));
	Log::write(LOG, Info($d=123456789012.5, $t=double_to_time(2147483647.5)));
	Log::write(LOG, Info($t=double_to_time(2147483648.5)));
	Log::write(LOG, Info($t=double_to_time(4102444800.123456)));
	Log::write(LOG, Info($t=double_to_time(-1.5)));
	Log::write(LOG, Info($d=1.0e-7));
	Log::write(LOG, Info($d=-1.0e-7));
	Log::write(LOG, Info($d=5e-7));
	Log::write(LOG, Info($d=1.5e-6));
	Log::write(LOG, Info($d=-1.5e15));
	Log::write(LOG, Info($d=2147483648.0));
	Log::write(LOG, Info($d=9007199254740993.0));

	# A set or vector of one empty string is written as the empty
	# field, as an empty one is; a vector of one hole as the unset field.
	Log::write(AMBIGUOUS, Info($ss=set(""), $vs=vector("")));
	Log::write(AMBIGUOUS, Info($ss=no_strings, $vs=vector()));
	local one_hole: vector of string;
	resize(one_hole, 1);
	Log::write(AMBIGUOUS, Info($vs=one_hole));
	Log::write(AMBIGUOUS, Info());
	}
