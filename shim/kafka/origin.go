package kafka

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
)

// OriginHeader is the record header that says where a record came from:
// which file (Source), where its line ends in that file, and a hash of the
// line. After a crash the shim reads back the records written since its
// last saved position and skips the lines it finds there, so that each
// line is in Kafka once.
const OriginHeader = "pano-origin"

// Origin identifies one line of one file.
type Origin struct {
	Source uint64 // see SourceID
	End    int64  // offset just past the line
	Hash   uint32 // of the line
}

// OriginLen is the length of an encoded Origin.
const OriginLen = 20

// Put writes the header value into b, which holds OriginLen bytes.
func (o Origin) Put(b []byte) {
	binary.BigEndian.PutUint64(b, o.Source)
	binary.BigEndian.PutUint64(b[8:], uint64(o.End))
	binary.BigEndian.PutUint32(b[16:OriginLen], o.Hash)
}

// DecodeOrigin parses a header value.
func DecodeOrigin(b []byte) (Origin, bool) {
	if len(b) != OriginLen {
		return Origin{}, false
	}
	return Origin{Source: binary.BigEndian.Uint64(b), End: int64(binary.BigEndian.Uint64(b[8:])),
		Hash: binary.BigEndian.Uint32(b[16:])}, true
}

// SourceID names one file of one log in the origin header: the log's
// path, the file's device and inode, and how many times that file was
// truncated, so that the offsets of one source only ever grow. Untruncated
// files keep the ids earlier shims gave them, so that a read-back across
// the upgrade finds their records.
func SourceID(path string, dev, ino uint64, truncations int) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%d\x00%d", path, dev, ino)
	if truncations > 0 {
		fmt.Fprintf(h, "\x00%d", truncations)
	}
	return h.Sum64()
}

// Partition strategies (Config.PartitionBy).
const (
	PartitionByLine = "line"
	PartitionByUID  = "uid"
)

// PartitionKey is what Partition hashes for a record with key under the
// strategy by: the key for PartitionByUID, nothing (so the line's origin)
// for PartitionByLine. A uid is a connection, and one connection can carry
// a whole DNS load (a resolver's or a load generator's single socket): by
// uid, that load lands in one partition and one flowlogs-pipeline replica.
func PartitionKey(by string, key []byte) []byte {
	if by == PartitionByUID {
		return key
	}
	return nil
}

// Partition picks the partition of a record among n: by its key (the
// record's uid, so one connection's records stay in order in one
// partition) or, without a key, by where its line ends. Either way the
// same line always goes to the same partition, which the read-back
// relies on.
func Partition(key []byte, o Origin, n int32) int32 {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	if len(key) > 0 {
		h.Write(key)
	} else {
		var b [OriginLen]byte
		o.Put(b[:])
		h.Write(b[:])
	}
	// As sarama's hash partitioner, which wrote the records of earlier
	// shims: a key keeps its partition across the upgrade.
	p := int32(h.Sum32()) % n
	if p < 0 {
		p = -p
	}
	return p
}
