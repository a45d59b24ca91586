package main

import (
	"os"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

func TestZZManualKafka(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	k := testenv.StartKafka(t)
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		k.CreateTopic(t, n, 3)
	}
	os.WriteFile("/tmp/prof/bootstrap", []byte(k.Bootstrap), 0o644)
	time.Sleep(40 * time.Minute)
}
