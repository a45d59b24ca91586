package zeekstandin

import (
	"encoding/binary"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
)

// RTTMode says which responses get an rtt.
type RTTMode int

const (
	// RTTStock is stock Zeek (8.0): rtt is set while handling the first
	// answer record, so responses without answers (NXDOMAIN, NODATA,
	// SERVFAIL...) have none.
	RTTStock RTTMode = iota
	// RTTEveryResponse is Zeek with this project's zeek-package
	// (dns-rtt.zeek): every response matched to its query gets an rtt.
	RTTEveryResponse
)

// Record is one dns.log entry, fields in Zeek's order and with Zeek's names.
// Pointers are Zeek's &optional fields: nil is "unset", absent in JSON.
type Record struct {
	TS         float64   `json:"ts"`
	UID        string    `json:"uid"`
	OrigH      string    `json:"id.orig_h"`
	OrigP      uint16    `json:"id.orig_p"`
	RespH      string    `json:"id.resp_h"`
	RespP      uint16    `json:"id.resp_p"`
	Proto      string    `json:"proto"`
	TransID    uint16    `json:"trans_id"`
	RTT        *float64  `json:"rtt,omitempty"`
	Query      *string   `json:"query,omitempty"`
	QClass     *int      `json:"qclass,omitempty"`
	QClassName *string   `json:"qclass_name,omitempty"`
	QType      *int      `json:"qtype,omitempty"`
	QTypeName  *string   `json:"qtype_name,omitempty"`
	RCode      *int      `json:"rcode,omitempty"`
	RCodeName  *string   `json:"rcode_name,omitempty"`
	AA         bool      `json:"AA"`
	TC         bool      `json:"TC"`
	RD         bool      `json:"RD"`
	RA         bool      `json:"RA"`
	Z          int       `json:"Z"`
	Answers    []string  `json:"answers,omitempty"`
	TTLs       []float64 `json:"TTLs,omitempty"`
	Rejected   bool      `json:"rejected"`

	sawQuery, sawReply bool
}

// Message is one DNS message as tshark dissected it.
type Message struct {
	Time             float64 // capture time, seconds since the epoch
	Proto            string  // "udp" or "tcp"
	Src, Dst         netip.AddrPort
	ID, Flags        uint16
	QDCount, ANCount int
	NSCount, ARCount int
	HasQuestion      bool // the first question was dissected
	QName            string
	QType, QClass    int
	Answers          []Answer // answer section only, in order
	BadChecksum      bool
}

// Answer is one resource record of the answer section.
type Answer struct {
	Name string
	Type int
	TTL  float64
	Text string // what Zeek puts in answers ("" adds nothing, like WKS)
}

func (m *Message) qr() bool    { return m.Flags&0x8000 != 0 }
func (m *Message) opcode() int { return int(m.Flags>>11) & 0xf }

type connKey struct {
	proto          string
	client, server netip.AddrPort
}

type conn struct {
	uid      string
	last     float64
	pendingQ map[uint16][]*Record // queries waiting for a response
	pendingR map[uint16][]*Record // responses waiting for a query
}

// analyzer pairs messages into records as Zeek's base DNS script does.
type analyzer struct {
	mode    RTTMode
	timeout float64 // seconds an unmatched message waits before it is logged
	conns   map[connKey]*conn
	emit    func(*Record)
	now     float64 // network time: never goes back, as in Zeek
}

// connIdle is Zeek's default UDP inactivity timeout: a connection quiet
// this long ends, and the next packet starts a new one with a new uid.
const connIdle = 60.0

func newAnalyzer(mode RTTMode, timeout float64, emit func(*Record)) *analyzer {
	return &analyzer{mode: mode, timeout: timeout, conns: map[connKey]*conn{}, emit: emit}
}

func (a *analyzer) conn(m *Message) (*conn, connKey) {
	k := connKey{proto: m.Proto, client: m.Src, server: m.Dst}
	if m.qr() {
		k.client, k.server = m.Dst, m.Src
	}
	c := a.conns[k]
	if c != nil && m.Time-c.last > connIdle && len(c.pendingQ) == 0 && len(c.pendingR) == 0 {
		c = nil
	}
	if c == nil {
		c = &conn{uid: makeUID(k, m.Time), pendingQ: map[uint16][]*Record{}, pendingR: map[uint16][]*Record{}}
		a.conns[k] = c
	}
	c.last = m.Time
	return c, k
}

// process handles one message; complete records are emitted at once.
func (a *analyzer) process(m *Message) {
	// A packet stamped earlier than one before it (captures taken on
	// several CPUs) does not move Zeek's network time back: records and
	// rtts use network time, not the packet's own stamp.
	if m.Time < a.now {
		m.Time = a.now
	}
	a.now = m.Time
	if m.opcode() != 0 { // Zeek tracks standard queries only
		return
	}
	c, k := a.conn(m)
	if !m.qr() {
		rec := pop(c.pendingR, m.ID)
		if rec == nil {
			rec = newRecord(c, k, m)
			c.pendingQ[m.ID] = append(c.pendingQ[m.ID], rec)
		}
		if m.HasQuestion {
			rec.RD = m.Flags&0x0100 != 0
			rec.TC = m.Flags&0x0200 != 0
			rec.Z = int(m.Flags>>4) & 7
			rec.QClass, rec.QClassName = ptr(m.QClass), ptr(qclassName(m.QClass))
			rec.QType, rec.QTypeName = ptr(m.QType), ptr(qtypeName(m.QType))
			rec.Query = ptr(strings.ToLower(m.QName))
		}
		rec.sawQuery = true
		if rec.sawReply {
			a.emit(rec)
		}
		return
	}

	rec := pop(c.pendingQ, m.ID)
	if rec == nil {
		rec = newRecord(c, k, m)
		c.pendingR[m.ID] = append(c.pendingR[m.ID], rec)
	}
	rcode := int(m.Flags & 0xf)
	rec.RCode, rec.RCodeName = ptr(rcode), ptr(rcodeName(rcode))
	if rcode != 0 && m.QDCount == 0 {
		rec.Rejected = true
	}
	if m.HasQuestion && m.ANCount == 0 && m.NSCount == 0 && m.ARCount == 0 {
		rec.Rejected = true // Zeek's dns_rejected event
	}
	for _, ans := range m.Answers {
		if notLogged[ans.Type] {
			continue
		}
		if rec.Query == nil {
			rec.Query = ptr(strings.ToLower(ans.Name))
		}
		rec.AA = m.Flags&0x0400 != 0
		rec.RA = m.Flags&0x0080 != 0
		if rec.RTT == nil {
			if d := m.Time - rec.TS; d != 0 {
				rec.RTT = ptr(d)
			}
		}
		if ans.Text != "" {
			rec.Answers = append(rec.Answers, ans.Text)
			rec.TTLs = append(rec.TTLs, ans.TTL)
		}
	}
	rec.sawReply = true
	if a.mode == RTTEveryResponse && rec.RTT == nil && rec.sawQuery && rec.TransID == m.ID {
		if d := m.Time - rec.TS; d > 0 {
			rec.RTT = ptr(d)
		}
	}
	if rec.sawQuery {
		a.emit(rec)
	}
}

// expire logs the messages that waited longer than the timeout for their
// other half, as of network time now, and forgets idle connections.
func (a *analyzer) expire(now float64) {
	var out []*Record
	for k, c := range a.conns {
		for _, m := range []map[uint16][]*Record{c.pendingQ, c.pendingR} {
			for id, q := range m {
				i := 0
				for i < len(q) && now-q[i].TS > a.timeout {
					out = append(out, q[i])
					i++
				}
				if i == len(q) {
					delete(m, id)
				} else {
					m[id] = q[i:]
				}
			}
		}
		if now-c.last > connIdle && len(c.pendingQ) == 0 && len(c.pendingR) == 0 {
			delete(a.conns, k)
		}
	}
	a.emitSorted(out)
}

// flush logs every unmatched message (end of input).
func (a *analyzer) flush() {
	var out []*Record
	for _, c := range a.conns {
		for _, m := range []map[uint16][]*Record{c.pendingQ, c.pendingR} {
			for _, q := range m {
				out = append(out, q...)
			}
		}
	}
	a.conns = map[connKey]*conn{}
	a.emitSorted(out)
}

func (a *analyzer) emitSorted(recs []*Record) {
	slices.SortFunc(recs, func(x, y *Record) int {
		if x.TS != y.TS {
			if x.TS < y.TS {
				return -1
			}
			return 1
		}
		return int(x.TransID) - int(y.TransID)
	})
	for _, r := range recs {
		a.emit(r)
	}
}

func newRecord(c *conn, k connKey, m *Message) *Record {
	return &Record{
		TS: m.Time, UID: c.uid, Proto: k.proto, TransID: m.ID,
		OrigH: k.client.Addr().String(), OrigP: k.client.Port(),
		RespH: k.server.Addr().String(), RespP: k.server.Port(),
	}
}

func pop(m map[uint16][]*Record, id uint16) *Record {
	q := m[id]
	if len(q) == 0 {
		return nil
	}
	r := q[0]
	if len(q) == 1 {
		delete(m, id)
	} else {
		m[id] = q[1:]
	}
	return r
}

func ptr[T any](v T) *T { return &v }

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// makeUID derives a Zeek-looking connection uid from the connection's
// endpoints and start time: deterministic, so runs can be compared.
func makeUID(k connKey, start float64) string {
	h := fnv.New64a()
	h.Write([]byte(k.proto))
	b, _ := k.client.MarshalBinary()
	h.Write(b)
	b, _ = k.server.MarshalBinary()
	h.Write(b)
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], uint64(start*1e6))
	h.Write(t[:])
	v := h.Sum64()
	var sb strings.Builder
	sb.WriteByte('C')
	for range 11 {
		sb.WriteByte(base62[v%62])
		v /= 62
	}
	return sb.String()
}
