package zeekstandin

import "fmt"

// Names as Zeek's base/protocols/dns/consts.zeek spells them.

var rcodeNames = map[int]string{
	0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
	5: "REFUSED", 6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH",
	10: "NOTZONE", 16: "BADVERS", 17: "BADKEY", 18: "BADTIME", 19: "BADMODE",
	20: "BADNAME", 21: "BADALG", 22: "BADTRUNC", 23: "BADCOOKIE",
}

func rcodeName(n int) string {
	if s, ok := rcodeNames[n]; ok {
		return s
	}
	return fmt.Sprintf("unknown-%d", n)
}

var qtypeNames = map[int]string{
	1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG",
	9: "MR", 10: "NULL", 11: "WKS", 12: "PTR", 13: "HINFO", 14: "MINFO",
	15: "MX", 16: "TXT", 17: "RP", 18: "AFSDB", 19: "X25", 20: "ISDN",
	21: "RT", 22: "NSAP", 23: "NSAP-PTR", 24: "SIG", 25: "KEY", 26: "PX",
	27: "GPOS", 28: "AAAA", 29: "LOC", 30: "EID", 31: "NIMLOC", 32: "NB",
	33: "SRV", 34: "ATMA", 35: "NAPTR", 36: "KX", 37: "CERT", 38: "A6",
	39: "DNAME", 40: "SINK", 41: "EDNS", 42: "APL", 43: "DS", 44: "SSHFP",
	45: "IPSECKEY", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 49: "DHCID",
	50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA", 55: "HIP",
	59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD",
	64: "SVCB", 65: "HTTPS", 99: "SPF", 100: "UINFO", 101: "UID", 102: "GID",
	103: "UNSPEC", 249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR",
	253: "MAILB", 254: "MAILA", 255: "*", 256: "URI", 257: "CAA",
	32768: "TA", 32769: "DLV", 65281: "WINS", 65282: "WINS-R",
}

func qtypeName(n int) string {
	if s, ok := qtypeNames[n]; ok {
		return s
	}
	return fmt.Sprintf("query-%d", n)
}

var qclassNames = map[int]string{
	1: "C_INTERNET", 2: "C_CSNET", 3: "C_CHAOS", 4: "C_HESOD", 254: "C_NONE", 255: "C_ANY",
}

func qclassName(n int) string {
	if s, ok := qclassNames[n]; ok {
		return s
	}
	return fmt.Sprintf("qclass-%d", n)
}

// notLogged are answer types Zeek's DNS analyzer parses but for which the
// base script has no reply handler: they add nothing to answers and, since
// the handler is what sets rtt, AA and RA, leave those unset too.
var notLogged = map[int]bool{13: true, 41: true, 64: true, 65: true, 249: true, 250: true, 257: true}
