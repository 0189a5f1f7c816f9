// Package recovery supports the recovery part of the key backup procedure:
// which HSMs lost which keys, what the backup token can bring back, and how
// long each zone's signatures last, so that "go insecure" is decided from
// facts.
package recovery

import (
	"bufio"
	"strings"

	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/ods-keyguard/ods-keyguard/enforcer"
)

// Signatures is what a signed zone file says about its RRSIGs.
type Signatures struct {
	Count    int       `json:"count"`
	Earliest time.Time `json:"earliest_expiration"` // the first RRSIG to expire
	Owner    string    `json:"earliest_owner"`
	Type     string    `json:"earliest_type"` // the type it covers
}

// Limits on reading a signed zone: a crash can leave a file of NULs, a
// mistake a FIFO or /dev/zero in its place.
const (
	MaxZoneFile = 4 << 30 // bytes
	maxZoneLine = 1 << 20 // bytes on one line
	maxQuote    = 120     // bytes of an error's quote of the file
)

// ReadSignedOutput reads a zone's signed output when its output adapter is
// a file.
func ReadSignedOutput(z *enforcer.Zone) (Signatures, error) {
	if !strings.EqualFold(z.OutputType, "File") || z.OutputURI == "" {
		return Signatures{}, fmt.Errorf("output adapter %s %q is not a file", z.OutputType, z.OutputURI)
	}
	return ReadSignedZone(z.OutputURI, z.Name)
}

// ReadSignedZone reads a zone file in presentation format and finds the
// RRSIG that expires first. It reads only a regular file, at most
// MaxZoneFile bytes, with no NUL byte and no line over a megabyte.
func ReadSignedZone(path, origin string) (Signatures, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return Signatures{}, fmt.Errorf("signed zone %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Signatures{}, fmt.Errorf("signed zone %s: %w", path, unwrap(err))
	}
	if !fi.Mode().IsRegular() {
		return Signatures{}, fmt.Errorf("signed zone %s: not a regular file (%s)", path, kind(fi.Mode()))
	}
	if fi.Size() > MaxZoneFile {
		return Signatures{}, fmt.Errorf("signed zone %s: %d bytes, more than the %d this reads", path, fi.Size(), int64(MaxZoneFile))
	}
	r := &guard{r: bufio.NewReaderSize(io.LimitReader(f, MaxZoneFile), 64*1024)}
	zp := dns.NewZoneParser(r, dns.Fqdn(origin), path)
	zp.SetIncludeAllowed(false)
	var s Signatures
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		sig, isSig := rr.(*dns.RRSIG)
		if !isSig {
			continue
		}
		exp := Expiration(sig.Inception, sig.Expiration)
		if s.Count == 0 || exp.Before(s.Earliest) {
			s.Earliest, s.Owner, s.Type = exp, sig.Header().Name, dns.TypeToString[sig.TypeCovered]
		}
		s.Count++
	}
	if r.err != nil {
		return Signatures{}, fmt.Errorf("signed zone %s: %w", path, r.err)
	}
	if err := zp.Err(); err != nil {
		return Signatures{}, fmt.Errorf("signed zone %s: %s", path, quote(err.Error()))
	}
	if s.Count == 0 {
		return Signatures{}, fmt.Errorf("signed zone %s: no RRSIG in it", path)
	}
	return s, nil
}

func kind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeDevice != 0:
		return "a device"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	}
	return m.Type().String()
}

// guard passes a zone file through, and stops it at a NUL byte or a line
// longer than maxZoneLine: what no zone file holds, and what would make the
// parser hold it all in memory.
type guard struct {
	r    *bufio.Reader
	line int   // bytes since the last newline
	off  int64 // bytes read
	err  error
}

func (g *guard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	for i, b := range p[:n] {
		switch {
		case b == 0:
			g.err = fmt.Errorf("binary data (a NUL byte at offset %d): not a zone file", g.off+int64(i))
		case b == '\n':
			g.line = 0
			continue
		default:
			g.line++
			if g.line > maxZoneLine {
				g.err = fmt.Errorf("a line longer than %d bytes at offset %d: not a zone file", maxZoneLine, g.off+int64(i))
			}
		}
		if g.err != nil {
			return 0, g.err
		}
	}
	g.off += int64(n)
	return n, err
}

// quote caps what an error quotes of the file.
func quote(s string) string {
	if len(s) <= maxQuote {
		return s
	}
	return s[:maxQuote] + "..."
}

// Expiration reads an RRSIG's expiration, an RFC 1982 serial of seconds,
// from its inception: the inception is the one nearest to now (a signature
// is made recently), and the expiration comes after it, however far. An
// RRSIG expiring in 2099 reads as 2099, one long expired as long expired.
func Expiration(inception, expiration uint32) time.Time {
	inc := serialTime(inception)
	return inc.Add(time.Duration(expiration-inception) * time.Second)
}

// serialTime reads an RFC 1982 serial of seconds: the nearest time to now
// that has that value modulo 2^32.
func serialTime(v uint32) time.Time {
	now := time.Now().Unix()
	base := now &^ 0xFFFFFFFF
	t := base + int64(v)
	switch {
	case t-now > 1<<31:
		t -= 1 << 32
	case now-t > 1<<31:
		t += 1 << 32
	}
	return time.Unix(t, 0).UTC()
}

func unwrap(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
