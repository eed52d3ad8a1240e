package payload

import (
	"net/http"
	"time"
)

// ServeTimeouts bound how long `slate serve` keeps a connection that does not
// make progress: a client that never finishes its request headers, a
// keep-alive connection left idle, or one that stops reading a response.
type ServeTimeouts struct {
	// ReadHeader bounds the request line and headers (slowloris).
	ReadHeader time.Duration
	// Idle closes a keep-alive connection with no request in flight.
	Idle time.Duration
	// Stall closes a connection whose response made no progress for this
	// long. It is not a bound on the whole response, which may be a root
	// image of hundreds of MiB on a slow link: every write moves the
	// deadline on.
	Stall time.Duration
}

// DefaultServeTimeouts are what `slate serve` uses.
var DefaultServeTimeouts = ServeTimeouts{ReadHeader: 10 * time.Second, Idle: 60 * time.Second, Stall: 60 * time.Second}

// NewServer is the HTTP server of `slate serve`: Serve(dir) with t.
func NewServer(dir string, t ServeTimeouts) *http.Server {
	h := Serve(dir)
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(&stallWriter{ResponseWriter: w, rc: http.NewResponseController(w), stall: t.Stall}, r)
		}),
		ReadHeaderTimeout: t.ReadHeader,
		// Requests are GETs and HEADs without a body: reading one takes
		// no longer than its headers.
		ReadTimeout: t.ReadHeader,
		// Up to the first byte of the response; stallWriter moves it on.
		WriteTimeout:   t.Stall,
		IdleTimeout:    t.Idle,
		MaxHeaderBytes: 64 << 10,
	}
}

// stallWriter moves the connection's write deadline on at every write.
type stallWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
}

func (s *stallWriter) Write(p []byte) (int, error) {
	if s.stall > 0 {
		_ = s.rc.SetWriteDeadline(time.Now().Add(s.stall))
	}
	return s.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the real writer.
func (s *stallWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
