package zeeklog

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzValidateJSON: the validator accepts exactly the JSON objects that
// encoding/json accepts, finds the same top-level string uid, and the
// parser forwards an accepted line unchanged.
func FuzzValidateJSON(f *testing.F) {
	f.Add([]byte(`{"ts":1795642521.689299,"uid":"CI8ddR33VLCIehSzKd","id_orig_h":"10.253.0.1","id_orig_p":43259,"rtt":0.0006518363952636719,"answers":["192.0.2.10"],"TTLs":[300.0],"AA":true}`))
	f.Add([]byte(`{"a":{"b.c":[1,{"d":null}]},"e":"\u00e9\n"}`))
	f.Add([]byte(`{"a":1,}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		uid, err := ValidateJSON(line)
		var v any
		stdErr := json.Unmarshal(line, &v)
		orig, isObj := v.(map[string]any)
		trimmed := bytes.TrimSpace(line)
		if stdErr == nil && isObj && len(trimmed) > 0 && trimmed[0] == '{' {
			if err != nil {
				t.Fatalf("rejected valid object %q: %v", line, err)
			}
		} else if err == nil {
			t.Fatalf("accepted %q (encoding/json: %v)", line, stdErr)
		}
		if err != nil {
			return
		}
		if u, ok := orig["uid"].(string); ok && u != uid {
			t.Fatalf("uid %q, want %q", uid, u)
		}
		if len(trimmed) == len(line) && !bytes.ContainsAny(line, "\r\n") {
			out, puid, typ, err := NewParser().Parse([]byte("pre"), line)
			if err != nil || typ != Record || puid != uid || string(out) != "pre"+string(line) {
				t.Fatalf("parser: %q %q %v %v for %q", out, puid, typ, err, line)
			}
		}
	})
}

// FuzzTSV: any line after a real header converts as the general path
// converts it, either to valid JSON or rejected with a kind; it never
// panics.
func FuzzTSV(f *testing.F) {
	f.Add([]byte("1592402712.248901\tCHhAvVGS1DHFjwGM9\t192.168.3.138\t63374\t192.168.3.1\t53\tudp\t20877\t-\tus.v27.distributed.net\t1\tC_INTERNET\t1\tA\t-\t-\tF\tF\tT\tF\t2\t-\t-\tF\t0\tquery\tUs.V27.DiStRiBuTeD.NET"))
	f.Add([]byte("1.0\tC\t::1\t1\t::1\t53\ttcp\t1\t0.5\tq\t1\tC\t1\tA\t0\tNOERROR\tT\tF\tT\tF\t0\ta,b\t1.0,2.0\tF\t0\tquery\t\\x2d"))
	f.Add([]byte("#fields\tx\ty"))
	header := []string{
		"#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-", "#path\tdns",
		"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\ttrans_id\trtt\tquery\tqclass\tqclass_name\tqtype\tqtype_name\trcode\trcode_name\tAA\tTC\tRD\tRA\tZ\tanswers\tTTLs\trejected\topcode\topcode_name\toriginal_query",
		"#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tcount\tinterval\tstring\tcount\tstring\tcount\tstring\tcount\tstring\tbool\tbool\tbool\tbool\tcount\tvector[string]\tvector[interval]\tbool\tcount\tstring\tstring",
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		p := NewParser()
		d := diffPair{p, newGeneralParser()}
		for _, h := range header {
			d.line(t, []byte(h))
		}
		d.line(t, line)
		out, _, typ, err := p.Parse(nil, line)
		if err != nil {
			if ErrorKind(err) == "other" {
				t.Fatalf("error without a kind: %v", err)
			}
			return
		}
		if typ == Record && !json.Valid(out) {
			t.Fatalf("%q -> invalid JSON %q", line, out)
		}
	})
}
