package forward

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pano-observability/pano/shim/follow"
	"github.com/pano-observability/pano/shim/position"
	"github.com/pano-observability/pano/shim/produce"
	"github.com/pano-observability/pano/shim/zeeklog"
)

var originKey = []byte(produce.OriginHeader)

// kindTooLarge counts records larger than the topic takes, among the
// malformed lines.
const kindTooLarge = "record_too_large"

// latencySample: one record in latencySample is timed for the produce
// latency histogram; timing every record costs more than it tells.
const latencySample = 8

// logRun follows one log file during one Kafka session.
type logRun struct {
	f      *Forwarder
	path   string
	topic  string
	log    *slog.Logger
	out    *produce.Topic
	fol    *follow.Follower
	parser *zeeklog.Parser
	track  *tracker
	seen   map[produce.Origin]struct{} // already in Kafka (sent before a crash)

	value      []byte // the message being built; Send copies it
	key        []byte
	origin     [produce.OriginLen]byte
	entries    []entry // unused entries, allocated in blocks
	partitions int32   // of topic, when the session started
	keyless    int32   // spreads records without uid

	lines, produced, dups, deleted prometheus.Counter
	saveMu                         sync.Mutex // one save at a time
	rot                            rotation
	finalDone                      follow.Identity // deleteFinal's last file, under saveMu
}

// rotation knows the order of the files read in this session and which
// of them are finished, so that a finished rotated file is deleted once
// the saved position is in a later file.
type rotation struct {
	mu       sync.Mutex
	seq      map[[2]uint64]int // order in which the files were read
	next     int               // the next file's number in seq
	finished []finishedFile    // oldest first
}

type finishedFile struct {
	id  follow.Identity
	seq int
}

func fileKey(id follow.Identity) [2]uint64 { return [2]uint64{id.Dev, id.Ino} }

// moved records that reading finished prev and went on to next.
func (r *rotation) moved(prev, next follow.Identity) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seq == nil {
		r.seq = map[[2]uint64]int{}
	}
	ps, ok := r.seq[fileKey(prev)]
	if !ok {
		ps = r.next
		r.seq[fileKey(prev)] = ps
		r.next++
	}
	r.seq[fileKey(next)] = r.next
	r.next++
	r.finished = append(r.finished, finishedFile{prev, ps})
}

// passed removes and returns the finished files read before the file of
// a saved position.
func (r *rotation) passed(saved follow.Identity) []follow.Identity {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.seq[fileKey(saved)]
	if !ok {
		return nil
	}
	var out []follow.Identity
	for len(r.finished) > 0 && r.finished[0].seq < cur {
		out = append(out, r.finished[0].id)
		delete(r.seq, fileKey(r.finished[0].id))
		r.finished = r.finished[1:]
	}
	return out
}

func (f *Forwarder) openLog(ctx context.Context, client sarama.Client, prod *produce.Producer, path string) (*logRun, error) {
	topic := f.cfg.Topic
	if topic == "" {
		topic = TopicFor(f.cfg.TopicPrefix, path)
	}
	log := f.log.With("log", path, "topic", topic)
	st, ok, err := f.store.Load(path)
	if err != nil {
		// Without a trustworthy position the only safe start is the
		// beginning of the file; say so loudly.
		log.Error("unusable saved position; reading the log from its beginning", "err", err)
		ok = false
	}
	var seen map[produce.Origin]struct{}
	if !ok || st.Topic != topic {
		ends, err := produce.EndOffsets(client, topic)
		if err != nil {
			return nil, err
		}
		st = position.State{Path: path, Topic: topic, Partitions: ends}
		// Saved before anything is sent, so that after a crash the
		// records of this run are found and not sent twice.
		if err := f.store.Save(st); err != nil {
			return nil, err
		}
	} else {
		start := time.Now()
		log.Debug("reading back records sent since the saved position", "offset", st.Offset, "from", st.Partitions)
		seen, err = produce.Seen(ctx, client, topic, st.Partitions, func(uint64) bool { return true })
		if err != nil {
			return nil, err
		}
		log.Info("resuming", "offset", st.Offset, "records_already_in_kafka", len(seen), "read_back", time.Since(start).Round(time.Millisecond))
	}
	parts, err := client.Partitions(topic)
	if err != nil || len(parts) == 0 {
		return nil, fmt.Errorf("topic %s: no partitions (create it, or let the brokers auto-create topics): %v", topic, err)
	}
	out, err := prod.Topic(topic, int32(len(parts)))
	if err != nil {
		return nil, err
	}
	parser := zeeklog.NewParser()
	if err := parser.RestoreHeader(st.Header); err != nil {
		return nil, err
	}
	lr := &logRun{
		f: f, path: path, topic: topic, log: log, out: out, parser: parser, seen: seen, partitions: int32(len(parts)),
		fol: follow.New(follow.Options{Path: path, PollInterval: f.cfg.PollInterval, MaxLineBytes: f.cfg.MaxLineBytes, Logger: log},
			follow.Position{File: st.File, Offset: st.Offset}),
		lines:    f.metrics.LinesRead.WithLabelValues(path),
		produced: f.metrics.RecordsProduced.WithLabelValues(path, topic),
		dups:     f.metrics.DuplicatesSkip.WithLabelValues(path),
		deleted:  f.metrics.RotatedDeleted.WithLabelValues(path),
	}
	if ok && f.cfg.DeleteRotated {
		// Rotated files older than the saved one were passed before a
		// restart that came before their deletion.
		old, err := follow.RotatedBefore(path, st.File)
		if err != nil {
			log.Warn("looking for rotated files already passed", "err", err)
		}
		for _, name := range old {
			if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
				log.Warn("cannot delete a rotated log already forwarded", "file", name, "err", err)
				continue
			}
			lr.deleted.Inc()
			log.Info("deleted rotated log: forwarded before the restart", "file", name)
		}
	}
	lr.track = newTracker(st, func(e *entry) {
		lr.produced.Inc()
		if !e.sent.IsZero() {
			f.metrics.ProduceLatency.Observe(time.Since(e.sent).Seconds())
		}
	})
	f.metrics.Behind.Set(path, lr.behind)
	return lr, nil
}

// behind is the size of the file being read minus the acknowledged
// position (the whole file when the position is in an earlier file).
func (lr *logRun) behind() float64 {
	s := lr.fol.Stat()
	st, _ := lr.track.peek()
	if st.File.SameFile(s.File) {
		return float64(max(0, s.Size-st.Offset))
	}
	return float64(s.Size)
}

// run reads, converts and sends until ctx is done or reading fails.
func (lr *logRun) run(ctx context.Context) error {
	defer lr.fol.Close()
	stop := make(chan struct{})
	defer close(stop)
	go lr.checkpoints(stop)
	version := lr.parser.HeaderVersion()
	var (
		srcFile follow.Identity
		src     uint64
		sampled int
	)
	for {
		line, err := lr.fol.Next(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil
			}
			return fmt.Errorf("follow %s: %w", lr.path, err)
		}
		if line.Opened {
			// The previous file is finished: once this position is
			// saved, it can go.
			lr.rot.moved(line.Prev, line.File)
			lr.track.skip(line.File, line.End, []string{})
			continue
		}
		lr.lines.Inc()
		if line.Reset {
			lr.parser = zeeklog.NewParser()
			version = 0
		}
		var header []string
		if line.TooLong {
			lr.malformed(line, &zeeklog.LineError{Kind: zeeklog.KindTooLong, Msg: fmt.Sprintf("longer than %d bytes", lr.f.cfg.MaxLineBytes)})
			lr.track.skip(line.File, line.End, lr.headerIfReset(line))
			continue
		}
		value, uid, typ, err := lr.parser.Parse(lr.value[:0], line.Data)
		lr.value = value[:0]
		if v := lr.parser.HeaderVersion(); v != version || line.Reset {
			version = v
			header = lr.parser.HeaderLines()
			if header == nil {
				header = []string{}
			}
		}
		if err != nil || typ != zeeklog.Record {
			if err != nil {
				lr.malformed(line, err)
			}
			lr.track.skip(line.File, line.End, header)
			continue
		}
		if line.File != srcFile {
			srcFile, src = line.File, sourceID(lr.path, line.File)
		}
		origin := produce.Origin{Source: src, End: line.End, Hash: lineHash(line.Data)}
		if lr.seen != nil {
			if _, dup := lr.seen[origin]; dup {
				delete(lr.seen, origin)
				if len(lr.seen) == 0 {
					lr.seen = nil
				}
				lr.dups.Inc()
				lr.track.skip(line.File, line.End, header)
				continue
			}
		}
		origin.Put(lr.origin[:])
		hdrs := [1]produce.Header{{Key: originKey, Value: lr.origin[:]}}
		msg := produce.Message{Value: value, Headers: hdrs[:]}
		if uid != "" {
			lr.key = append(lr.key[:0], uid...)
			msg.Key = lr.key
		}
		if err := lr.out.Fits(&msg); err != nil {
			// Kafka would refuse it on every attempt: skip it like a
			// malformed line instead of stopping the log behind it.
			lr.malformed(line, &zeeklog.LineError{Kind: kindTooLarge, Msg: err.Error()})
			lr.track.skip(line.File, line.End, header)
			continue
		}
		var partition int32
		if msg.Key != nil {
			partition = produce.Partition(msg.Key, lr.partitions)
		} else {
			lr.keyless = (lr.keyless + 1) % lr.partitions
			partition = lr.keyless
		}
		// Entries are allocated by the hundred.
		if len(lr.entries) == 0 {
			lr.entries = make([]entry, 256)
		}
		e := &lr.entries[0]
		lr.entries = lr.entries[1:]
		e.file, e.end, e.header = line.File, line.End, header
		if sampled++; sampled%latencySample == 0 {
			e.sent = time.Now()
		}
		lr.track.add(e)
		if err := lr.out.Send(ctx, partition, &msg, e); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

func (lr *logRun) headerIfReset(line follow.Line) []string {
	if line.Reset {
		return []string{}
	}
	return nil
}

func (lr *logRun) malformed(line follow.Line, err error) {
	kind := zeeklog.ErrorKind(err)
	lr.f.metrics.Errors.WithLabelValues(lr.path, kind).Inc()
	if ok, quiet := lr.f.limit.Allow(lr.path + "\x00" + kind); ok {
		lr.log.Warn("skipping malformed line", "kind", kind, "end_offset", line.End, "err", err, "similar_lines_not_logged", quiet)
	}
}

func (lr *logRun) checkpoints(stop <-chan struct{}) {
	t := time.NewTicker(lr.f.cfg.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := lr.saveIfChanged(); err != nil {
				lr.log.Error("save position", "err", err)
			}
		}
	}
}

func (lr *logRun) saveIfChanged() error {
	lr.saveMu.Lock()
	defer lr.saveMu.Unlock()
	st, dirty := lr.track.snapshot()
	if dirty {
		if err := lr.f.store.Save(st); err != nil {
			lr.track.markDirty()
			return err
		}
	}
	// st is saved now (if an earlier save had failed, dirty is set).
	if lr.f.cfg.DeleteRotated {
		if dirty {
			lr.deletePassed(st.File)
		}
		lr.deleteFinal(st)
	}
	return nil
}

// deleteFinal deletes the rotated file being read when nothing follows it
// yet (Zeek writes a new dns.log only with its next record) and all of it
// is saved as in Kafka: in a quiet hour it would otherwise wait for the
// next record, and Zeek's retention would report it as lost.
func (lr *logRun) deleteFinal(saved position.State) {
	s := lr.fol.Stat()
	if !s.Renamed || lr.finalDone.SameFile(s.File) || !saved.File.SameFile(s.File) || saved.Offset != s.Size {
		return
	}
	lr.finalDone = s.File // once: its successor, when it comes, starts anew
	name, err := follow.RemoveRotated(lr.path, s.File)
	if err != nil {
		lr.log.Warn("cannot delete a forwarded rotated log", "err", err)
		return
	}
	if name != "" {
		lr.deleted.Inc()
		lr.log.Info("deleted rotated log: every line is in kafka", "file", name)
	}
}

// deletePassed deletes the finished rotated files before saved, the file
// of a position just saved: every line of theirs is in Kafka.
func (lr *logRun) deletePassed(saved follow.Identity) {
	for _, id := range lr.rot.passed(saved) {
		name, err := follow.RemoveRotated(lr.path, id)
		if err != nil {
			lr.log.Warn("cannot delete a forwarded rotated log", "err", err)
			continue
		}
		if name != "" {
			lr.deleted.Inc()
			lr.log.Info("deleted rotated log: every line is in kafka", "file", name)
		}
	}
}

// save writes the final position of the session.
func (lr *logRun) save() error { return lr.saveIfChanged() }

// castagnoli is CRC-32C, which the CPU computes (SSE4.2, ARMv8 CRC) an
// order of magnitude faster than a byte-at-a-time hash.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// lineHash hashes a line for its origin header.
func lineHash(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
