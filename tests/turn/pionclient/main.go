// pionclient: an independent TURN client (pion/turn) for underpass's TURN tests and benchmark.
//
// Each of -clients clients allocates a relay on the TURN server (UDP, or TCP to the server with
// -tcp, or TLS with -tls [-ca FILE]), binds a channel to a UDP echo peer on loopback and exchanges datagrams with it through
// the relay: -n datagrams each, or for -duration. Every echoed payload is checked byte for byte
// against what was sent; round trips are timed. At most -window datagrams per client are in
// flight (-window 1 is strict ping-pong, the latency measurement); -rate paces each client.
//
// The echo peer is run by the program itself on -peer (default 127.0.0.1:0, a free port), or,
// with -external-peer, is already listening on -peer (e.g. coturn's turnutils_peer).
//
// Channel binding is checked, not assumed: pion sends the first datagrams to a new peer as Send
// indications while it binds a channel in the background, so a warm-up phase (not counted) runs
// until the client has seen its own ChannelData go out and an echo come back; in the measured
// phase every datagram must go out, and come back, as ChannelData.
//
// Prints one JSON object on stdout:
//
//	{"sent", "received", "lost", "mismatched", "duplicates", "p50_us", "p99_us", "max_us",
//	 "msgs_per_s", "elapsed_s", "channel_data_sent", "send_indications_sent",
//	 "channel_data_received", "data_indications_received", "relayed", ...}
//
// Exit status: 0 all datagrams came back byte-exact over channels; 1 loss, mismatch or no
// channel; 2 usage; 3 setup failed (allocation, permission: e.g. a wrong password or a refused
// peer; the JSON then has "error"); 4 the -deadline passed.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v4"
)

var (
	server       = flag.String("server", "127.0.0.1:3478", "TURN server host:port")
	user         = flag.String("user", "", "long-term credential user name")
	pass         = flag.String("pass", "", "long-term credential password")
	realm        = flag.String("realm", "example.org", "realm")
	peer         = flag.String("peer", "127.0.0.1:0", "UDP echo peer address (run by this program unless -external-peer)")
	externalPeer = flag.Bool("external-peer", false, "the echo peer on -peer is already running; do not start one")
	count        = flag.Int("n", 10000, "datagrams per client (ignored with -duration)")
	duration     = flag.Duration("duration", 0, "measure for this long instead of -n datagrams")
	size         = flag.Int("size", 200, "payload bytes per datagram (>= 16)")
	clients      = flag.Int("clients", 1, "concurrent clients, one allocation each")
	window       = flag.Int("window", 1, "datagrams in flight per client (1 = ping-pong)")
	rate         = flag.Float64("rate", 0, "datagrams per second per client (0 = as fast as -window allows)")
	useTCP       = flag.Bool("tcp", false, "TCP to the TURN server (the relay stays UDP)")
	useTLS       = flag.Bool("tls", false, "TLS over TCP to the TURN server (implies -tcp)")
	caFile       = flag.String("ca", "", "with -tls: verify the server's certificate against this PEM file (default: no verification)")
	timeout      = flag.Duration("timeout", 2*time.Second, "a datagram not echoed within this is lost")
	warmupFor    = flag.Duration("warmup", 5*time.Second, "bound on the warm-up (allocation, permission, channel binding)")
	deadline     = flag.Duration("deadline", 120*time.Second, "hard bound on the whole run")
	verbose      = flag.Bool("v", false, "pion debug logging on stderr")
)

const (
	kindMeasure = 0
	kindWarmup  = 1
	headerLen   = 16 // seq uint64 | kind byte | client byte | 6 bytes of zero
)

// countingConn wraps the client's socket to the server and classifies every TURN message that
// crosses it: ChannelData starts with 0b01, STUN messages with 0b00 (RFC 8656 section 12).
type countingConn struct {
	net.PacketConn
	chanOut, sendInd, chanIn, dataInd atomic.Int64
}

func (c *countingConn) WriteTo(b []byte, to net.Addr) (int, error) {
	if len(b) >= 4 {
		switch {
		case b[0]&0xC0 == 0x40:
			c.chanOut.Add(1)
		case b[0] == 0x00 && b[1] == 0x16: // Send indication (method 0x006, class indication)
			c.sendInd.Add(1)
		}
	}
	return c.PacketConn.WriteTo(b, to)
}

func (c *countingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.PacketConn.ReadFrom(b)
	if n >= 4 {
		switch {
		case b[0]&0xC0 == 0x40:
			c.chanIn.Add(1)
		case b[0] == 0x00 && b[1] == 0x17: // Data indication (method 0x007, class indication)
			c.dataInd.Add(1)
		}
	}
	return n, from, err
}

type result struct {
	Server                  string   `json:"server"`
	Transport               string   `json:"transport"`
	Clients                 int      `json:"clients"`
	Size                    int      `json:"size"`
	Window                  int      `json:"window"`
	Sent                    int64    `json:"sent"`
	Received                int64    `json:"received"`
	Lost                    int64    `json:"lost"`
	Mismatched              int64    `json:"mismatched"`
	Duplicates              int64    `json:"duplicates"`
	Late                    int64    `json:"late"`
	P50us                   float64  `json:"p50_us"`
	P99us                   float64  `json:"p99_us"`
	MaxUs                   float64  `json:"max_us"`
	MsgsPerS                float64  `json:"msgs_per_s"`
	ElapsedS                float64  `json:"elapsed_s"`
	ChannelDataSent         int64    `json:"channel_data_sent"`
	SendIndicationsSent     int64    `json:"send_indications_sent"`
	ChannelDataReceived     int64    `json:"channel_data_received"`
	DataIndicationsReceived int64    `json:"data_indications_received"`
	Relayed                 []string `json:"relayed"`
	Peer                    string   `json:"peer"`
	Error                   string   `json:"error,omitempty"`
}

var (
	outMu   sync.Mutex
	printed bool
)

func emit(r *result, code int) {
	outMu.Lock()
	defer outMu.Unlock()
	if printed {
		return
	}
	printed = true
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
	os.Exit(code)
}

func fatal(r *result, code int, format string, a ...any) {
	r.Error = fmt.Sprintf(format, a...)
	fmt.Fprintln(os.Stderr, "pionclient:", r.Error)
	emit(r, code)
}

// payload fills b with the datagram for (client, seq, kind): a header, then bytes that follow
// from it, so the echo can be checked without keeping copies.
func payload(b []byte, client int, seq uint64, kind byte) {
	for i := range b {
		b[i] = 0
	}
	binary.BigEndian.PutUint64(b[0:8], seq)
	b[8] = kind
	b[9] = byte(client)
	x := seq*0x9E3779B97F4A7C15 + uint64(client)*0xBF58476D1CE4E5B9 + uint64(kind) + 1
	for i := headerLen; i < len(b); i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
}

type cl struct {
	id    int
	conn  *countingConn
	tc    *turn.Client
	relay net.PacketConn
	peer  *net.UDPAddr

	mu       sync.Mutex
	sentAt   []time.Time     // by seq, measured datagrams
	got      []bool          // by seq: echoed (any time)
	inflight map[uint64]bool // seq -> counted in the window
	slots    chan struct{}
	rtts     []time.Duration

	sent, received, mismatched, duplicates, late atomic.Int64
	warmEchoed                                   atomic.Bool
	stop                                         chan struct{}
	readerDone                                   chan struct{}
}

func newClient(id int, peerAddr *net.UDPAddr, res *result) *cl {
	var base net.PacketConn
	if *useTCP || *useTLS {
		c, err := net.DialTimeout("tcp", *server, 5*time.Second)
		if err != nil {
			fatal(res, 3, "client %d: connect to %s: %v", id, *server, err)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		if *useTLS {
			tc := tls.Client(c, tlsConfig(res))
			_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err != nil {
				fatal(res, 3, "client %d: TLS handshake with %s: %v", id, *server, err)
			}
			_ = tc.SetDeadline(time.Time{})
			c = tc
		}
		base = turn.NewSTUNConn(c)
	} else {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			fatal(res, 3, "client %d: listen: %v", id, err)
		}
		if uc, ok := c.(*net.UDPConn); ok {
			_ = uc.SetReadBuffer(4 << 20)
			_ = uc.SetWriteBuffer(4 << 20)
		}
		base = c
	}
	cc := &countingConn{PacketConn: base}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelWarn
	if *verbose {
		lf.DefaultLogLevel = logging.LogLevelDebug
	}
	tc, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: *server,
		TURNServerAddr: *server,
		Conn:           cc,
		Username:       *user,
		Password:       *pass,
		Realm:          *realm,
		LoggerFactory:  lf,
	})
	if err != nil {
		fatal(res, 3, "client %d: %v", id, err)
	}
	if err := tc.Listen(); err != nil {
		fatal(res, 3, "client %d: listen: %v", id, err)
	}
	relay, err := tc.Allocate()
	if err != nil {
		fatal(res, 3, "client %d: allocate: %v", id, err)
	}
	return &cl{id: id, conn: cc, tc: tc, relay: relay, peer: peerAddr,
		inflight: map[uint64]bool{}, slots: make(chan struct{}, *window),
		stop: make(chan struct{}), readerDone: make(chan struct{})}
}

// reader takes every echo from the relay, checks it and releases its window slot.
func (c *cl) reader() {
	defer close(c.readerDone)
	buf := make([]byte, 65536)
	want := make([]byte, *size)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		_ = c.relay.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, from, err := c.relay.ReadFrom(buf)
		now := time.Now()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		got := buf[:n]
		fu, ok := from.(*net.UDPAddr)
		if !ok || !fu.IP.Equal(c.peer.IP) || fu.Port != c.peer.Port || n != *size {
			c.mismatched.Add(1)
			continue
		}
		seq := binary.BigEndian.Uint64(got[0:8])
		kind := got[8]
		if int(got[9]) != c.id&0xFF || (kind != kindMeasure && kind != kindWarmup) {
			c.mismatched.Add(1)
			continue
		}
		payload(want, c.id, seq, kind)
		if !bytes.Equal(got, want) {
			c.mismatched.Add(1)
			continue
		}
		if kind == kindWarmup {
			c.warmEchoed.Store(true)
			continue
		}
		c.mu.Lock()
		if seq >= uint64(len(c.sentAt)) {
			c.mu.Unlock()
			c.mismatched.Add(1) // never sent
			continue
		}
		if c.got[seq] {
			c.mu.Unlock()
			c.duplicates.Add(1)
			continue
		}
		c.got[seq] = true
		if c.inflight[seq] {
			delete(c.inflight, seq)
			c.received.Add(1)
			c.rtts = append(c.rtts, now.Sub(c.sentAt[seq]))
			c.mu.Unlock()
			<-c.slots
		} else {
			c.mu.Unlock()
			c.late.Add(1) // already given up on: counts as lost
		}
	}
}

// expire gives up on datagrams in flight for longer than -timeout, freeing their slots.
func (c *cl) expire() {
	c.mu.Lock()
	var freed int
	now := time.Now()
	for seq := range c.inflight {
		if now.Sub(c.sentAt[seq]) > *timeout {
			delete(c.inflight, seq)
			freed++
		}
	}
	c.mu.Unlock()
	for i := 0; i < freed; i++ {
		<-c.slots
	}
}

// warmup sends uncounted datagrams until one has been echoed and the client has sent
// ChannelData (the channel is bound).
func (c *cl) warmup(res *result) {
	buf := make([]byte, *size)
	end := time.Now().Add(*warmupFor)
	for seq := uint64(0); ; seq++ {
		payload(buf, c.id, seq, kindWarmup)
		if _, err := c.relay.WriteTo(buf, c.peer); err != nil {
			fatal(res, 3, "client %d: send to peer %s: %v", c.id, c.peer, err)
		}
		step := time.Now().Add(20 * time.Millisecond)
		for time.Now().Before(step) {
			if c.warmEchoed.Load() && c.conn.chanOut.Load() > 0 {
				time.Sleep(20 * time.Millisecond) // the last warm-up echoes, not to be counted
				return
			}
			time.Sleep(time.Millisecond)
		}
		if time.Now().After(end) {
			if !c.warmEchoed.Load() {
				fatal(res, 3, "client %d: no echo from peer %s through the relay within %v",
					c.id, c.peer, *warmupFor)
			}
			fatal(res, 1, "client %d: no channel bound to %s within %v (pion sent %d Send indications, %d ChannelData)",
				c.id, c.peer, *warmupFor, c.conn.sendInd.Load(), c.conn.chanOut.Load())
		}
	}
}

// run sends the measured datagrams: -n of them, or until `until`.
func (c *cl) run(res *result, until time.Time) {
	buf := make([]byte, *size)
	var interval time.Duration
	if *rate > 0 {
		interval = time.Duration(float64(time.Second) / *rate)
	}
	next := time.Now()
	for seq := uint64(0); ; seq++ {
		if *duration > 0 {
			if !time.Now().Before(until) {
				return
			}
		} else if seq >= uint64(*count) {
			return
		}
		for acquired := false; !acquired; {
			select {
			case c.slots <- struct{}{}:
				acquired = true
			case <-time.After(*timeout / 4):
				c.expire()
			}
		}
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(interval)
		}
		payload(buf, c.id, seq, kindMeasure)
		c.mu.Lock()
		c.sentAt = append(c.sentAt, time.Now())
		c.got = append(c.got, false)
		c.inflight[seq] = true
		c.mu.Unlock()
		if _, err := c.relay.WriteTo(buf, c.peer); err != nil {
			fatal(res, 3, "client %d: send: %v", c.id, err)
		}
		c.sent.Add(1)
	}
}

// drain waits (up to -timeout) for the datagrams still in flight.
func (c *cl) drain() {
	end := time.Now().Add(*timeout)
	for time.Now().Before(end) {
		c.mu.Lock()
		n := len(c.inflight)
		c.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func tlsConfig(res *result) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	host, _, _ := net.SplitHostPort(*server)
	cfg.ServerName = host
	if *caFile == "" {
		cfg.InsecureSkipVerify = true //nolint:gosec // a test client on loopback
		return cfg
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		fatal(res, 2, "-ca: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fatal(res, 2, "-ca %s: no certificate in it", *caFile)
	}
	cfg.RootCAs = pool
	return cfg
}

func echoPeer(addr string, res *result) *net.UDPAddr {
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		fatal(res, 3, "echo peer: listen %s: %v", addr, err)
	}
	uc := pc.(*net.UDPConn)
	_ = uc.SetReadBuffer(8 << 20)
	_ = uc.SetWriteBuffer(8 << 20)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := uc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = uc.WriteToUDP(buf[:n], from)
		}
	}()
	return uc.LocalAddr().(*net.UDPAddr)
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted)-1) + 0.5)
	return float64(sorted[i].Nanoseconds()) / 1000
}

func main() {
	flag.Parse()
	res := &result{Server: *server, Transport: "udp", Clients: *clients, Size: *size, Window: *window,
		Relayed: []string{}}
	if *useTCP {
		res.Transport = "tcp"
	}
	if *useTLS {
		res.Transport = "tls"
	}
	if *size < headerLen || *size > 65000 || *clients < 1 || *clients > 255 || *window < 1 ||
		(*duration == 0 && *count < 1) || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "pionclient: bad arguments (need -size >= 16, 1 <= -clients <= 255, -window >= 1, -n >= 1)")
		flag.Usage()
		os.Exit(2)
	}
	time.AfterFunc(*deadline, func() { fatal(res, 4, "deadline of %v passed", *deadline) })

	var peerAddr *net.UDPAddr
	if *externalPeer {
		a, err := net.ResolveUDPAddr("udp4", *peer)
		if err != nil || a.Port == 0 {
			fatal(res, 2, "-external-peer needs -peer host:port, got %q", *peer)
		}
		peerAddr = a
	} else {
		peerAddr = echoPeer(*peer, res)
	}
	res.Peer = peerAddr.String()

	cs := make([]*cl, *clients)
	for i := range cs {
		cs[i] = newClient(i, peerAddr, res)
		res.Relayed = append(res.Relayed, cs[i].relay.LocalAddr().String())
		go cs[i].reader()
	}
	for _, c := range cs {
		c.warmup(res)
	}
	// Counters from here on are the measured phase only.
	base := make([][4]int64, len(cs))
	for i, c := range cs {
		base[i] = [4]int64{c.conn.chanOut.Load(), c.conn.sendInd.Load(), c.conn.chanIn.Load(), c.conn.dataInd.Load()}
	}

	start := time.Now()
	until := start.Add(*duration)
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func(c *cl) {
			defer wg.Done()
			c.run(res, until)
			c.drain()
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all []time.Duration
	for i, c := range cs {
		close(c.stop)
		<-c.readerDone
		res.Sent += c.sent.Load()
		res.Received += c.received.Load()
		res.Mismatched += c.mismatched.Load()
		res.Duplicates += c.duplicates.Load()
		res.Late += c.late.Load()
		res.ChannelDataSent += c.conn.chanOut.Load() - base[i][0]
		res.SendIndicationsSent += c.conn.sendInd.Load() - base[i][1]
		res.ChannelDataReceived += c.conn.chanIn.Load() - base[i][2]
		res.DataIndicationsReceived += c.conn.dataInd.Load() - base[i][3]
		c.mu.Lock()
		all = append(all, c.rtts...)
		c.mu.Unlock()
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	res.Lost = res.Sent - res.Received
	res.P50us = percentile(all, 0.50)
	res.P99us = percentile(all, 0.99)
	res.MaxUs = percentile(all, 1.0)
	res.ElapsedS = elapsed.Seconds()
	if elapsed > 0 {
		res.MsgsPerS = float64(res.Received) / elapsed.Seconds()
	}
	for _, c := range cs {
		_ = c.relay.Close() // deallocates (a refresh with lifetime 0)
		c.tc.Close()
		_ = c.conn.Close()
	}

	var why []string
	if res.Lost > 0 {
		why = append(why, fmt.Sprintf("%d of %d datagrams lost", res.Lost, res.Sent))
	}
	if res.Mismatched > 0 {
		why = append(why, fmt.Sprintf("%d echoes not byte-exact", res.Mismatched))
	}
	if res.Duplicates > 0 {
		why = append(why, fmt.Sprintf("%d duplicated", res.Duplicates))
	}
	if res.SendIndicationsSent > 0 || res.ChannelDataSent < res.Sent {
		why = append(why, fmt.Sprintf("sent over the channel: %d ChannelData, %d Send indications for %d datagrams",
			res.ChannelDataSent, res.SendIndicationsSent, res.Sent))
	}
	if res.DataIndicationsReceived > 0 {
		why = append(why, fmt.Sprintf("the server answered a bound channel with %d Data indications",
			res.DataIndicationsReceived))
	}
	if len(why) > 0 {
		fatal(res, 1, "%v", why)
	}
	emit(res, 0)
}
