package position

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/pano-observability/pano/shim/follow"
)

func TestSaveLoad(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Load("/zeek/logs/dns.log"); ok || err != nil {
		t.Fatalf("empty store: ok=%v err=%v", ok, err)
	}
	st := State{Path: "/zeek/logs/dns.log", Topic: "dns", File: follow.Identity{Dev: 1, Ino: 2, FPLen: 3, FP: 4},
		Offset: 1234, Header: []string{"#separator \\x09", "#fields\tts"}, Partitions: map[int32]int64{0: 10, 2: 5}}
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Load("/zeek/logs/dns.log")
	if err != nil || !ok {
		t.Fatalf("load: %v %v", ok, err)
	}
	st.HeaderHash = HashHeader(st.Header)
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("got %+v\nwant %+v", got, st)
	}
	// Another path has its own file.
	if _, ok, _ := s.Load("/zeek/logs/conn.log"); ok {
		t.Fatal("conn.log found")
	}
	// A damaged header is refused rather than trusted.
	files, _ := filepath.Glob(filepath.Join(s.dir, "*.json"))
	if len(files) != 1 {
		t.Fatalf("%d state files", len(files))
	}
	b, _ := os.ReadFile(files[0])
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	raw["tsv_header"] = []string{"#fields\tx"}
	b, _ = json.Marshal(raw)
	os.WriteFile(files[0], b, 0o600)
	if _, _, err := s.Load("/zeek/logs/dns.log"); err == nil {
		t.Fatal("damaged state accepted")
	}
}
