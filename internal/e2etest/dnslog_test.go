package e2etest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// dnsRecord is the part of a dns.log line (Zeek's JSON, with
// zeek-package's "_" field names) the checks read.
type dnsRecord struct {
	UID     string   `json:"uid"`
	TS      float64  `json:"ts"`
	TransID uint16   `json:"trans_id"`
	OrigH   string   `json:"id_orig_h"`
	OrigP   uint16   `json:"id_orig_p"`
	RespH   string   `json:"id_resp_h"`
	RespP   uint16   `json:"id_resp_p"`
	Proto   string   `json:"proto"`
	RCode   *int     `json:"rcode"` // absent: no response was seen
	RTT     *float64 `json:"rtt"`   // seconds
}

// readDNSLog reads a JSON dns.log and the files Zeek rotated it to
// (dns.<open time>.log beside it, zeek-package's hourly rotation), oldest
// first; a log not written yet is empty. The tests run the shim with
// -shim-delete-rotated=false so that the rotated files stay.
func readDNSLog(t testing.TB, path string) []dnsRecord {
	t.Helper()
	rotated, err := filepath.Glob(filepath.Join(filepath.Dir(path), "dns.[0-9][0-9][0-9][0-9]-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(rotated) // the names sort by time
	var out []dnsRecord
	for _, p := range append(rotated, path) {
		out = append(out, readJSONLog(t, p)...)
	}
	return out
}

func readJSONLog(t testing.TB, path string) []dnsRecord {
	return readZeekLog[dnsRecord](t, path)
}

// readZeekLog reads a Zeek JSON log, one T per line; none when the file
// does not exist (yet).
func readZeekLog[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for line := 1; sc.Scan(); line++ {
		var r T
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s:%d: %v", path, line, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

// logCounts are one server's dns.log records.
type logCounts struct {
	records, answered, unanswered int
	noRTT                         int // records with an rcode but no rtt
	examples                      []string
}

// countDNSLogs counts the records for each server address in every log.
func countDNSLogs(t testing.TB, logs []string, servers []string) map[string]*logCounts {
	t.Helper()
	out := map[string]*logCounts{}
	for _, s := range servers {
		out[s] = &logCounts{}
	}
	for _, p := range logs {
		for _, r := range readDNSLog(t, p) {
			c := out[r.RespH]
			if c == nil {
				continue
			}
			c.records++
			switch {
			case r.RCode == nil:
				c.unanswered++
			case r.RTT == nil || *r.RTT <= 0:
				c.noRTT++
				c.answered++
				// Enough to find them in the capture: when, which
				// client and transaction.
				if len(c.examples) < 10 {
					c.examples = append(c.examples, fmt.Sprintf("%s ts=%.6f %s:%d id=%d rcode=%d", r.UID, r.TS, r.OrigH, r.OrigP, r.TransID, *r.RCode))
				}
			default:
				c.answered++
			}
		}
	}
	return out
}
