package fxevents

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// lastV7 is the last UUIDv7 timestamp handed out: Unix milliseconds << 12
// | a 12-bit sub-millisecond sequence, as github.com/google/uuid's NewV7
// lays it out, so the IDs of one process strictly increase.
var lastV7 atomic.Int64

// newEventID returns a fresh UUIDv7 of now in its 36-character text form, the
// same layout as uuid.NewV7().String() (48-bit Unix milliseconds, 12-bit
// sequence, 62 random bits) without its costs per event: no read of
// crypto/rand (a system call), no global mutex, and no allocation of its
// own. The random bits come from math/rand/v2's runtime ChaCha8 generator,
// seeded by the OS; the strings are cut from a shared block (idBlock).
func newEventID(now time.Time) string {
	nano := now.UnixNano()
	ms := nano / int64(time.Millisecond)
	want := ms<<12 + (nano-ms*int64(time.Millisecond))>>8 // seq 0..3906, as uuid.NewV7
	var ts int64
	for {
		last := lastV7.Load()
		ts = max(want, last+1)
		if lastV7.CompareAndSwap(last, ts) {
			break
		}
	}
	var u [16]byte
	ms, seq := ts>>12, ts&0xfff
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	u[6], u[7] = 0x70|byte(seq>>8)&0x0f, byte(seq)
	binary.BigEndian.PutUint64(u[8:], rand.Uint64())
	u[8] = u[8]&0x3f | 0x80 // variant 10
	b := idBlocks.Get().(*idBlock)
	s := b.format(&u)
	idBlocks.Put(b)
	return s
}

// idBlock cuts ID strings out of one strings.Builder's buffer, 64 IDs per
// allocation: a Builder only ever appends, so a string taken from it never
// changes, and a new buffer is started when one is full. An ID kept alive
// keeps its block (2.3 KiB) alive.
type idBlock struct{ sb strings.Builder }

const idsPerBlock = 64

var idBlocks = sync.Pool{New: func() any { return new(idBlock) }}

const hexDigits = "0123456789abcdef"

func (b *idBlock) format(u *[16]byte) string {
	if b.sb.Cap()-b.sb.Len() < 36 {
		b.sb = strings.Builder{}
		b.sb.Grow(36 * idsPerBlock)
	}
	start := b.sb.Len()
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b.sb.WriteByte('-')
		}
		b.sb.WriteByte(hexDigits[c>>4])
		b.sb.WriteByte(hexDigits[c&0x0f])
	}
	return b.sb.String()[start:]
}
