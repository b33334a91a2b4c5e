package fxhttp

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
)

// recorder wraps the ResponseWriter to learn the status and the bytes
// written. It keeps Flush, Hijack and ReadFrom (sendfile) working, and
// Unwrap serves http.ResponseController.
//
// When the request body went past the limit (bodyReader sets tooLarge)
// before the response started, the response is 413, whatever the handler
// answers: the recorder writes the problem itself and discards what the
// handler writes. A handler (grpc-gateway's, a hand-written io.ReadAll)
// often turns the read error into a 400 or a 500; the client must learn
// that its body was too large, as it does for a declared Content-Length.
type recorder struct {
	w           http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
	hijacked    bool
	discard     bool   // the handler's writes are dropped (413 already sent)
	tooLarge    int64  // the body limit the request went past; 0: not
	path, id    string // for the 413 problem: request path and id
}

func (r *recorder) Header() http.Header { return r.w.Header() }

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader && !r.hijacked {
		if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
			r.w.WriteHeader(code) // informational: the real status comes later
			return
		}
		if r.tooLarge > 0 {
			r.refuseBody()
			return
		}
		r.status = code
		r.wroteHeader = true
	}
	r.w.WriteHeader(code)
}

// start marks an implicit 200 (a Write, ReadFrom or Flush without
// WriteHeader), or answers 413 for a body past the limit.
func (r *recorder) start() {
	if r.tooLarge > 0 {
		r.refuseBody()
		return
	}
	r.status = http.StatusOK
	r.wroteHeader = true
}

// refuseBody answers 413 in place of the handler's response.
func (r *recorder) refuseBody() {
	limit := r.tooLarge
	r.tooLarge = 0
	h := r.w.Header()
	h.Set("Connection", "close") // the rest of the body is not read
	h.Del("Content-Encoding")    // the problem is written as is
	writeProblem(r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is larger than %d bytes", limit), r.path, r.id)
	r.discard = true
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.start()
	}
	if r.discard {
		return len(b), nil
	}
	n, err := r.w.Write(b)
	r.bytes += int64(n)
	return n, err
}

// ReadFrom keeps the sendfile path of *http.response for io.Copy.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if !r.wroteHeader {
		r.start()
	}
	if r.discard {
		return io.Copy(io.Discard, src)
	}
	var n int64
	var err error
	if rf, ok := r.w.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(writerOnly{r.w}, src)
	}
	r.bytes += n
	return n, err
}

type writerOnly struct{ io.Writer }

// Flush sends buffered data to the client (server-sent events, streaming).
func (r *recorder) Flush() {
	if !r.wroteHeader {
		r.start()
	}
	_ = http.NewResponseController(r.w).Flush()
}

// Hijack hands the connection to the handler (websockets).
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(r.w).Hijack()
	if err == nil {
		r.hijacked = true
		if !r.wroteHeader {
			r.status = http.StatusSwitchingProtocols
			r.wroteHeader = true
		}
	}
	return c, rw, err
}

// Unwrap returns the wrapped ResponseWriter for http.ResponseController.
func (r *recorder) Unwrap() http.ResponseWriter { return r.w }

// bodyReader counts the request body and enforces the size limit like
// http.MaxBytesReader, without an allocation of its own.
type bodyReader struct {
	rc        io.ReadCloser
	rec       *recorder
	limit     int64 // 0: none
	remaining int64
	read      int64
	err       error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.limit <= 0 {
		n, err := b.rc.Read(p)
		b.read += int64(n)
		return n, err
	}
	// Ask for at most one byte past the limit: enough to know it is exceeded.
	if int64(len(p))-1 > b.remaining {
		p = p[:b.remaining+1]
	}
	n, err := b.rc.Read(p)
	if int64(n) <= b.remaining {
		b.remaining -= int64(n)
		b.read += int64(n)
		b.err = err
		return n, err
	}
	n = int(b.remaining)
	b.read += int64(n)
	b.remaining = 0
	if !b.rec.wroteHeader && !b.rec.hijacked {
		// The response becomes 413, and the rest of the body is not read:
		// the connection cannot be reused.
		b.rec.tooLarge = b.limit
		b.rec.Header().Set("Connection", "close")
	}
	b.err = &http.MaxBytesError{Limit: b.limit}
	return n, b.err
}

func (b *bodyReader) Close() error { return b.rc.Close() }
