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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pano-observability/pano/shim/follow"
	"github.com/pano-observability/pano/shim/kafka"
	"github.com/pano-observability/pano/shim/position"
	"github.com/pano-observability/pano/shim/zeeklog"
)

// latencySample: one record in latencySample is timed for the produce
// latency histogram; timing every record costs more than it tells.
const latencySample = 8

// logRun follows one log path for the life of the shim.
type logRun struct {
	f     *Forwarder
	cl    *kgo.Client
	path  string
	topic string
	log   *slog.Logger

	// Set by open, used by the reading goroutine only.
	fol         *follow.Follower
	parser      *zeeklog.Parser
	track       *tracker
	sent        kafka.Sent // found by the read-back; nil when nothing was
	sentCount   int32      // partitions the lines in sent were spread over
	file        follow.Identity
	truncations int    // of file
	fresh       bool   // no line read yet from file
	src         uint64 // kafka.SourceID of file and truncations
	srcLast     int64  // sent.Last(src)
	slots       []slot // unused, allocated in blocks
	arena       []byte // unused room for keys and values
	sampled     int

	lines, produced, dups, deleted prometheus.Counter

	saveMu    sync.Mutex // one save at a time; guards fol and track while open sets them
	rot       rotation
	finalDone follow.Identity // deleteFinal's last file, under saveMu
}

// slot holds one record for franz-go, with its origin header and its
// place in the tracker; slots come in blocks to spare an allocation each.
type slot struct {
	rec    kgo.Record
	hdr    [1]kgo.RecordHeader
	origin [kafka.OriginLen]byte
	e      entry
	t      *tracker // e's
}

func (f *Forwarder) newLogRun(cl *kgo.Client, path string) *logRun {
	topic := f.cfg.Topic
	if topic == "" {
		topic = TopicFor(f.cfg.TopicPrefix, path)
	}
	return &logRun{
		f: f, cl: cl, path: path, topic: topic, log: f.log.With("log", path, "topic", topic),
		lines:    f.metrics.LinesRead.WithLabelValues(path),
		produced: f.metrics.RecordsProduced.WithLabelValues(path, topic),
		dups:     f.metrics.DuplicatesSkip.WithLabelValues(path),
		deleted:  f.metrics.RotatedDeleted.WithLabelValues(path),
	}
}

// loop opens the log and forwards it until readCtx ends. A log that
// cannot be read is opened again once everything sent from it is
// settled, from its saved position.
func (lr *logRun) loop(readCtx, prodCtx context.Context) {
	backoff := time.Second
	for readCtx.Err() == nil {
		if err := lr.open(readCtx); err != nil {
			return // readCtx ended
		}
		err := lr.run(readCtx, prodCtx)
		lr.fol.Close()
		if readCtx.Err() != nil {
			return
		}
		lr.log.Error("reading the log failed; starting again from the saved position once kafka settled what was sent", "err", err, "in", backoff)
		for lr.track.pending() > 0 && sleep(readCtx, 100*time.Millisecond) == nil {
		}
		if err := lr.saveIfChanged(); err != nil {
			lr.log.Error("save position", "err", err)
		}
		if sleep(readCtx, backoff) != nil {
			return
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// open loads the saved position and prepares reading from it. After a
// restart it reads back what the run before wrote past that position.
// It waits, retrying, while Kafka does not answer; it fails only when
// ctx ends.
func (lr *logRun) open(ctx context.Context) error {
	defer lr.f.progress.wait()()
	backoff := 500 * time.Millisecond
	for {
		err := lr.tryOpen(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		lr.f.metrics.Errors.WithLabelValues(lr.path, "kafka_unavailable").Inc()
		if ok, quiet := lr.f.limit.Allow(lr.path + "\x00open"); ok {
			lr.log.Error("waiting for kafka before reading the log", "err", err, "retry_in", backoff, "similar_errors_not_logged", quiet)
		}
		if sleep(ctx, backoff) != nil {
			return ctx.Err()
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (lr *logRun) tryOpen(ctx context.Context) error {
	st, ok, err := lr.f.store.Load(lr.path)
	if err != nil {
		// Without a trustworthy position the only safe start is the
		// beginning of the file; say so loudly.
		lr.log.Error("unusable saved position; reading the log from its beginning", "err", err)
		ok = false
	}
	if err := kafka.AskForTopic(ctx, lr.cl, lr.topic); err != nil {
		return err
	}
	ends, err := kafka.EndOffsets(ctx, lr.cl, lr.topic)
	if err != nil {
		return err
	}
	if _, err := lr.f.limits.Learn(ctx, lr.cl, lr.topic); err != nil {
		lr.log.Warn("topic limit", "err", err)
	}
	lr.sent, lr.sentCount = nil, 0
	if !ok || st.Topic != lr.topic {
		st = position.State{Path: lr.path, Topic: lr.topic, Partitions: ends, PartitionCount: len(ends)}
		// Saved before anything is sent, so that after a crash the
		// read-back starts before this run's first record.
		if err := lr.f.store.Save(st); err != nil {
			return err
		}
	} else {
		start := time.Now()
		sent, stats, err := kafka.ReadBack(ctx, lr.f.clientOpts, lr.topic, st.Partitions)
		if err != nil {
			return err
		}
		lr.sent, lr.sentCount = sent, int32(st.PartitionCount)
		if lr.sentCount == 0 {
			lr.sentCount = int32(len(ends)) // saved by a shim that kept no count
		}
		if st.PartitionCount == 0 || st.PartitionCount > len(ends) {
			st.PartitionCount = len(ends)
		}
		lr.log.Info("resuming", "offset", st.Offset, "read_back_records", stats.Records, "read_back_partitions", stats.Partitions,
			"read_back", time.Since(start).Round(time.Millisecond))
	}
	parser := zeeklog.NewParser()
	if err := parser.RestoreHeader(st.Header); err != nil {
		return err
	}
	lr.parser = parser
	lr.file, lr.truncations, lr.fresh = st.File, st.Truncations, false
	lr.setSource()
	if ok && lr.f.cfg.DeleteRotated {
		lr.deleteBefore(st.File)
	}
	// Under saveMu: a scrape (behind) or a save may run meanwhile.
	lr.saveMu.Lock()
	lr.fol = follow.New(follow.Options{Path: lr.path, PollInterval: lr.f.cfg.PollInterval, MaxLineBytes: lr.f.cfg.MaxLineBytes, Logger: lr.log},
		follow.Position{File: st.File, Offset: st.Offset})
	lr.track = newTracker(st)
	lr.saveMu.Unlock()
	lr.f.metrics.Behind.Set(lr.path, lr.behind)
	return nil
}

// deleteBefore deletes the rotated files older than file, passed before a
// restart that came before their deletion.
func (lr *logRun) deleteBefore(file follow.Identity) {
	old, err := follow.RotatedBefore(lr.path, file)
	if err != nil {
		lr.log.Warn("looking for rotated files already passed", "err", err)
	}
	for _, name := range old {
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			lr.log.Warn("cannot delete a rotated log already forwarded", "file", name, "err", err)
			continue
		}
		lr.deleted.Inc()
		lr.log.Info("deleted rotated log: forwarded before the restart", "file", name)
	}
}

func (lr *logRun) setSource() {
	lr.src = kafka.SourceID(lr.path, lr.file.Dev, lr.file.Ino, lr.truncations)
	lr.srcLast = 0
	if lr.sent != nil {
		lr.srcLast = lr.sent.Last(lr.src)
	}
}

// behind is the size of the file being read minus the settled position
// (the whole file when the position is in an earlier file).
func (lr *logRun) behind() float64 {
	lr.saveMu.Lock()
	defer lr.saveMu.Unlock()
	s := lr.fol.Stat()
	st := lr.track.peek()
	if st.File.SameFile(s.File) {
		return float64(max(0, s.Size-st.Offset))
	}
	return float64(s.Size)
}

// run reads, checks and sends until readCtx ends or reading fails.
func (lr *logRun) run(readCtx, prodCtx context.Context) error {
	stop := make(chan struct{})
	defer close(stop)
	go lr.checkpoints(stop)
	version := lr.parser.HeaderVersion()
	var value []byte
	for {
		line, err := lr.fol.Next(readCtx)
		if err != nil {
			if readCtx.Err() != nil {
				return nil
			}
			return fmt.Errorf("follow %s: %w", lr.path, err)
		}
		if line.Opened {
			// The previous file is finished: once this position is
			// saved, it can go.
			lr.rot.moved(line.Prev, line.File)
			lr.newFile(line.File, false)
			lr.track.skip(line.File, line.End, lr.truncations, []string{})
			continue
		}
		lr.lines.Inc()
		if !line.File.SameFile(lr.file) {
			lr.newFile(line.File, false)
		} else if line.Reset && !lr.fresh {
			lr.newFile(line.File, true) // truncated: read again from its start
		}
		lr.fresh = false
		if line.Reset {
			lr.parser = zeeklog.NewParser()
			version = 0
		}
		var header []string
		if line.TooLong {
			lr.malformed(line, &zeeklog.LineError{Kind: zeeklog.KindTooLong, Msg: fmt.Sprintf("longer than SHIM_MAX_LINE_BYTES=%d", lr.f.cfg.MaxLineBytes)})
			if line.Reset {
				header = []string{}
			}
			lr.track.skip(line.File, line.End, lr.truncations, header)
			continue
		}
		var uid string
		var typ zeeklog.LineType
		value, uid, typ, err = lr.parser.Parse(value[:0], line.Data)
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
			lr.track.skip(line.File, line.End, lr.truncations, header)
			continue
		}
		origin := kafka.Origin{Source: lr.src, End: line.End, Hash: crc32.Checksum(line.Data, castagnoli)}
		key := lr.bytes(uid)
		if line.End <= lr.srcLast && lr.sent.Has(kafka.Partition(kafka.PartitionKey(lr.f.cfg.Kafka.PartitionBy, key), origin, lr.sentCount), origin) {
			lr.dups.Inc()
			lr.track.skip(line.File, line.End, lr.truncations, header)
			continue
		}
		lr.send(prodCtx, line, header, origin, key, value)
	}
}

// newFile notes that reading moved to file, or started file again after
// a truncation.
func (lr *logRun) newFile(file follow.Identity, truncated bool) {
	if truncated {
		lr.truncations++
	} else {
		lr.truncations = 0
	}
	lr.file, lr.fresh = file, !truncated
	lr.setSource()
}

// send hands one record to franz-go.
func (lr *logRun) send(ctx context.Context, line follow.Line, header []string, origin kafka.Origin, key, value []byte) {
	if len(lr.slots) == 0 {
		lr.slots = make([]slot, 256)
	}
	s := &lr.slots[0]
	lr.slots = lr.slots[1:]
	s.e = entry{file: line.File, end: line.End, truncations: lr.truncations, header: header}
	if lr.sampled++; lr.sampled%latencySample == 0 {
		s.e.sent = time.Now()
	}
	s.t = lr.track
	n := s.t.add(&s.e)
	origin.Put(s.origin[:])
	s.hdr[0] = kgo.RecordHeader{Key: kafka.OriginHeader, Value: s.origin[:]}
	s.rec = kgo.Record{Topic: lr.topic, Key: key, Value: lr.copy(value), Headers: s.hdr[:], Partition: kafka.Partition(kafka.PartitionKey(lr.f.cfg.Kafka.PartitionBy, key), origin, n)}
	lr.f.progress.hand()
	lr.cl.Produce(ctx, &s.rec, func(r *kgo.Record, err error) { lr.settled(s, r, err) })
}

// settled runs on franz-go's promise goroutine with Kafka's answer.
func (lr *logRun) settled(s *slot, r *kgo.Record, err error) {
	if err == nil {
		s.t.settle(&s.e, true, r.Partition, r.Offset)
		lr.produced.Inc()
		if !s.e.sent.IsZero() {
			lr.f.metrics.ProduceLatency.Observe(time.Since(s.e.sent).Seconds())
		}
		lr.f.progress.settle()
		return
	}
	ref, ok := kafka.Refused(err)
	if !ok {
		return // the shim is stopping: sent again after the restart
	}
	s.t.settle(&s.e, false, 0, 0)
	lr.f.progress.settle()
	lr.f.metrics.Refused.WithLabelValues(lr.path, lr.topic, ref.Reason).Inc()
	if ok, quiet := lr.f.limit.Allow(lr.path + "\x00refused\x00" + ref.Reason); ok {
		lr.log.Error("kafka refused a record for good; it is skipped", "reason", ref.Reason, "fix", ref.Fix,
			"end_offset", s.e.end, "err", err, "similar_errors_not_logged", quiet)
	}
}

// bytes copies s into the arena.
func (lr *logRun) bytes(s string) []byte {
	if s == "" {
		return nil
	}
	b := lr.room(len(s))
	copy(b, s)
	return b
}

// copy copies b into the arena: franz-go keeps the record until Kafka
// answers, while the line's buffer is reused at once.
func (lr *logRun) copy(b []byte) []byte {
	out := lr.room(len(b))
	copy(out, b)
	return out
}

// room returns n bytes from the arena, which is allocated in chunks of
// 256 KiB (a chunk is freed once none of its records is held).
func (lr *logRun) room(n int) []byte {
	if n > len(lr.arena) {
		if n > 64<<10 {
			return make([]byte, n)
		}
		lr.arena = make([]byte, 256<<10)
	}
	b := lr.arena[:n:n]
	lr.arena = lr.arena[n:]
	return b
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
			lr.rebaseIfIdle()
			if err := lr.saveIfChanged(); err != nil {
				lr.log.Error("save position", "err", err)
			}
		}
	}
}

// rebaseIfIdle moves the read-back start up to the topic's end while
// nothing of this log waits for Kafka: a log that is quiet while others
// fill the topic then reads back little after a crash.
func (lr *logRun) rebaseIfIdle() {
	added, idle := lr.track.quiet()
	if !idle {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), lr.f.cfg.CheckpointInterval)
	defer cancel()
	ends, err := kafka.EndOffsets(ctx, lr.cl, lr.topic)
	if err == nil {
		lr.track.rebase(ends, added)
	}
}

func (lr *logRun) saveIfChanged() error {
	lr.saveMu.Lock()
	defer lr.saveMu.Unlock()
	if lr.track == nil {
		return nil // never opened
	}
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

// castagnoli is CRC-32C, which the CPU computes (SSE4.2, ARMv8 CRC) an
// order of magnitude faster than a byte-at-a-time hash.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
