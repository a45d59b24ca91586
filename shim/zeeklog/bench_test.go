package zeeklog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkParseTSV and BenchmarkParseJSON measure the handling of one
// dns.log record (TSV conversion, JSON validation), the shim's per-line
// CPU cost before Kafka. BenchmarkParseTSVGeneral runs the same record
// with the TSV fast path off, for a comparison within one run (one machine
// load).
func BenchmarkParseTSV(b *testing.B)        { benchParseTSV(b, NewParser()) }
func BenchmarkParseTSVGeneral(b *testing.B) { benchParseTSV(b, newGeneralParser()) }

func BenchmarkParseJSON(b *testing.B) { benchParse(b, NewParser(), benchJSONRecord) }

// A record as Zeek with PANO's package writes it.
var benchJSONRecord = []byte(`{"ts":1795642521.689299,"uid":"CuM5cE3U2Agyv0sdo6","id_orig_h":"10.253.0.1","id_orig_p":43259,"id_resp_h":"10.253.0.2","id_resp_p":53,"proto":"udp","trans_id":0,"rtt":0.0006518363952636719,"query":"www.example.test","qclass":1,"qclass_name":"C_INTERNET","qtype":1,"qtype_name":"A","rcode":0,"rcode_name":"NOERROR","AA":true,"TC":false,"RD":true,"RA":true,"Z":0,"answers":["192.0.2.10"],"TTLs":[300.0],"rejected":false}`)

// benchParseTSV feeds p the header of a fixture and benchmarks its first
// record.
func benchParseTSV(b *testing.B, p *Parser) {
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "zeek-dns", "nsec.dns.log"))
	if err != nil {
		b.Fatal(err)
	}
	var rec []byte
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if l[0] == '#' {
			p.Parse(nil, []byte(l))
		} else if rec == nil {
			rec = []byte(l)
		}
	}
	benchParse(b, p, rec)
}

func benchParse(b *testing.B, p *Parser, rec []byte) {
	b.SetBytes(int64(len(rec)))
	buf := make([]byte, 0, 1024)
	for i := 0; i < b.N; i++ {
		if _, _, _, err := p.Parse(buf[:0], rec); err != nil {
			b.Fatal(err)
		}
	}
}
