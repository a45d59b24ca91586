package produce

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/IBM/sarama"
)

// Kafka API keys a brokerConn speaks (produce in the versions of
// produceVersion).
const (
	apiProduce          int16 = 0
	apiSASLHandshake    int16 = 17
	apiSASLAuthenticate int16 = 36
)

// maxResponseBytes bounds what a broker may claim a response is, so that
// a stream out of step (or not Kafka at all) cannot make us allocate
// gigabytes.
const maxResponseBytes = 16 << 20

// brokerConn is one connection to a broker that carries produce requests
// already encoded by the caller: sarama's Broker encodes a request in two
// passes into freshly allocated buffers, which cost the shim more CPU than
// reading, parsing and converting the line. Everything else (metadata,
// producer ids, reading back) still goes through sarama's client.
//
// One goroutine may write while another reads; the broker answers the
// requests of a connection in the order they came.
type brokerConn struct {
	nc           net.Conn
	rd           *bufio.Reader
	clientID     string
	readTimeout  time.Duration
	writeTimeout time.Duration

	corr   int32  // correlation id of the next request; the writer's
	prefix []byte // the writer's scratch for request headers
	resp   []byte // the reader's buffer for response bodies
}

// dialBroker connects to addr with the client settings of conf: TLS and
// SASL as sarama would use them.
func dialBroker(ctx context.Context, addr string, conf *sarama.Config) (*brokerConn, error) {
	d := net.Dialer{Timeout: conf.Net.DialTimeout, KeepAlive: conf.Net.KeepAlive}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if conf.Net.TLS.Enable {
		tc := conf.Net.TLS.Config.Clone()
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if tc.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			tc.ServerName = host
		}
		tlsConn := tls.Client(nc, tc)
		hctx, cancel := context.WithTimeout(ctx, conf.Net.DialTimeout)
		err := tlsConn.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		nc = tlsConn
	}
	c := &brokerConn{nc: nc, rd: bufio.NewReaderSize(nc, 4096), clientID: conf.ClientID,
		readTimeout: conf.Net.ReadTimeout, writeTimeout: conf.Net.WriteTimeout}
	if conf.Net.SASL.Enable {
		if err := c.authenticate(conf); err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("SASL %s as %q: %w", conf.Net.SASL.Mechanism, conf.Net.SASL.User, err)
		}
	}
	return c, nil
}

func (c *brokerConn) Close() error { return c.nc.Close() }

// writeProduce sends a produce request for one partition carrying
// records, an encoded record batch, and returns its correlation id; the
// answer is read with readProduce, in the order of the writes.
func (c *brokerConn) writeProduce(version, acks int16, timeout time.Duration, topic string, partition int32, records []byte) (int32, error) {
	e := c.header(apiProduce, version)
	e = binary.BigEndian.AppendUint16(e, 0xffff) // no transactional id
	e = binary.BigEndian.AppendUint16(e, uint16(acks))
	e = binary.BigEndian.AppendUint32(e, uint32(timeout/time.Millisecond))
	e = binary.BigEndian.AppendUint32(e, 1) // one topic
	e = appendString(e, topic)
	e = binary.BigEndian.AppendUint32(e, 1) // one partition
	e = binary.BigEndian.AppendUint32(e, uint32(partition))
	e = binary.BigEndian.AppendUint32(e, uint32(len(records)))
	c.prefix = e
	return c.write(records)
}

// header starts a request in c.prefix: room for the size, then the
// request header (v1: key, version, correlation id, client id).
func (c *brokerConn) header(key, version int16) []byte {
	e := append(c.prefix[:0], 0, 0, 0, 0)
	e = binary.BigEndian.AppendUint16(e, uint16(key))
	e = binary.BigEndian.AppendUint16(e, uint16(version))
	e = binary.BigEndian.AppendUint32(e, uint32(c.corr))
	return appendString(e, c.clientID)
}

// write sends the request in c.prefix followed by body, in one system
// call when the connection allows it, and returns its correlation id.
func (c *brokerConn) write(body []byte) (int32, error) {
	binary.BigEndian.PutUint32(c.prefix, uint32(len(c.prefix)-4+len(body)))
	if c.writeTimeout > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	}
	bufs := net.Buffers{c.prefix, body}
	if _, err := bufs.WriteTo(c.nc); err != nil {
		return 0, err
	}
	c.corr++
	return c.corr - 1, nil
}

// produceResult is a broker's answer for one partition.
type produceResult struct {
	err     sarama.KError
	offset  int64 // of the batch's first record
	message string
}

// readProduce reads the answer to the produce request corr, which must be
// the oldest unanswered, for topic's partition.
func (c *brokerConn) readProduce(corr int32, version int16, topic string, partition int32) (produceResult, error) {
	d, err := c.readResponse(corr)
	if err != nil {
		return produceResult{}, err
	}
	var res produceResult
	found := false
	for nt := d.int32(); nt > 0 && d.err == nil; nt-- {
		name := d.string()
		for np := d.int32(); np > 0 && d.err == nil; np-- {
			r := produceResult{}
			idx := d.int32()
			r.err = sarama.KError(d.int16())
			r.offset = d.int64()
			d.int64() // log append time (v2+)
			if version >= 5 {
				d.int64() // log start offset
			}
			if version >= 8 {
				for ne := d.int32(); ne > 0 && d.err == nil; ne-- {
					d.int32() // index of the refused record
					d.nullableString()
				}
				r.message = d.nullableString()
			}
			if name == topic && idx == partition {
				res, found = r, true
			}
		}
	}
	d.int32() // throttle time
	if d.err != nil {
		return produceResult{}, fmt.Errorf("produce response: %w", d.err)
	}
	if !found {
		return produceResult{}, fmt.Errorf("produce response has no result for %s/%d", topic, partition)
	}
	return res, nil
}

// readResponse reads the next response and checks it answers request
// corr; the decoder reads its body.
func (c *brokerConn) readResponse(corr int32) (*decoder, error) {
	if c.readTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.readTimeout))
	}
	var head [8]byte
	if _, err := io.ReadFull(c.rd, head[:]); err != nil {
		return nil, err
	}
	size := int32(binary.BigEndian.Uint32(head[:]))
	if size < 4 || size > maxResponseBytes {
		return nil, fmt.Errorf("broker sent a %d-byte response: not Kafka, or out of step", size)
	}
	if got := int32(binary.BigEndian.Uint32(head[4:])); got != corr {
		return nil, fmt.Errorf("response to request %d, expected %d", got, corr)
	}
	if cap(c.resp) < int(size-4) {
		c.resp = make([]byte, size-4)
	}
	c.resp = c.resp[:size-4]
	if _, err := io.ReadFull(c.rd, c.resp); err != nil {
		return nil, err
	}
	return &decoder{b: c.resp}, nil
}

// roundTrip sends a request whose body is body and returns the decoder of
// its answer; only while no other request is out (authentication).
func (c *brokerConn) roundTrip(key, version int16, body []byte) (*decoder, error) {
	c.prefix = c.header(key, version)
	corr, err := c.write(body)
	if err != nil {
		return nil, err
	}
	return c.readResponse(corr)
}

// authenticate runs the SASL exchange of conf (handshake v1, then the
// mechanism's messages wrapped in SaslAuthenticate v1).
func (c *brokerConn) authenticate(conf *sarama.Config) error {
	s := conf.Net.SASL
	mech := string(s.Mechanism)
	d, err := c.roundTrip(apiSASLHandshake, 1, appendString(nil, mech))
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	code := sarama.KError(d.int16())
	var offered []string
	for n := d.int32(); n > 0 && d.err == nil; n-- {
		offered = append(offered, d.string())
	}
	if d.err != nil {
		return fmt.Errorf("handshake response: %w", d.err)
	}
	if code != sarama.ErrNoError {
		return fmt.Errorf("handshake: %w (the broker offers %v)", code, offered)
	}
	switch s.Mechanism {
	case sarama.SASLTypePlaintext:
		token := append(append(append([]byte(s.AuthIdentity), 0), s.User...), 0)
		_, err := c.saslStep(append(token, s.Password...))
		return err
	case sarama.SASLTypeSCRAMSHA256, sarama.SASLTypeSCRAMSHA512:
		if s.SCRAMClientGeneratorFunc == nil {
			return errors.New("no SCRAM client configured")
		}
		sc := s.SCRAMClientGeneratorFunc()
		if err := sc.Begin(s.User, s.Password, s.SCRAMAuthzID); err != nil {
			return err
		}
		msg, err := sc.Step("")
		for err == nil && !sc.Done() {
			var challenge []byte
			if challenge, err = c.saslStep([]byte(msg)); err == nil {
				msg, err = sc.Step(string(challenge))
			}
		}
		return err
	}
	return fmt.Errorf("mechanism %q is not supported", mech)
}

// saslStep sends one SASL message and returns the broker's reply.
func (c *brokerConn) saslStep(msg []byte) ([]byte, error) {
	body := binary.BigEndian.AppendUint32(nil, uint32(len(msg)))
	d, err := c.roundTrip(apiSASLAuthenticate, 1, append(body, msg...))
	if err != nil {
		return nil, err
	}
	code := sarama.KError(d.int16())
	text := d.nullableString()
	reply := d.bytes()
	d.int64() // session lifetime
	if d.err != nil {
		return nil, fmt.Errorf("authenticate response: %w", d.err)
	}
	if code != sarama.ErrNoError {
		if text != "" {
			return nil, fmt.Errorf("%w: %s", code, text)
		}
		return nil, code
	}
	return reply, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// decoder reads the fixed-width fields of a response body; the first
// short read sets err, and every later read returns zero.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = fmt.Errorf("truncated: %d bytes wanted, %d left", n, len(d.b))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) int16() int16 {
	if v := d.take(2); v != nil {
		return int16(binary.BigEndian.Uint16(v))
	}
	return 0
}

func (d *decoder) int32() int32 {
	if v := d.take(4); v != nil {
		return int32(binary.BigEndian.Uint32(v))
	}
	return 0
}

func (d *decoder) int64() int64 {
	if v := d.take(8); v != nil {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

func (d *decoder) string() string {
	n := d.int16()
	return string(d.take(int(n)))
}

// nullableString reads a string whose length -1 means null ("").
func (d *decoder) nullableString() string {
	n := d.int16()
	if n < 0 {
		return ""
	}
	return string(d.take(int(n)))
}

func (d *decoder) bytes() []byte {
	n := d.int32()
	if n < 0 {
		return nil
	}
	return d.take(int(n))
}
