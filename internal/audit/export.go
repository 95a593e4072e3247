package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/webhook"
)

// An Exporter ships records to another system. The signed log on disk is
// its spool: each exporter reads the log from its own saved position and
// moves the position only after Send succeeded, so an outage of the
// destination loses nothing and the spool is bounded by the log's size.
type Exporter interface {
	Name() string
	// Send delivers the lines (records without their newline) or fails
	// as a whole; a failed batch is sent again.
	Send(ctx context.Context, lines [][]byte) error
}

// ExportOptions tune RunExporter.
type ExportOptions struct {
	Dir        string
	Poll       time.Duration // how often to look for new records (default 1s)
	MaxBackoff time.Duration // retry delay cap (default 30s)
	Batch      int           // records per Send (default 500)
	Log        *slog.Logger
}

// exportPosition is stored in DIR/export-NAME.pos as "segment offset".
func positionFile(dir, name string) string { return filepath.Join(dir, "export-"+name+".pos") }

func loadPosition(path string) (seg int, off int64) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 1, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 1, 0
	}
	s, err1 := strconv.Atoi(f[0])
	o, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || s < 1 || o < 0 {
		return 1, 0
	}
	return s, o
}

func savePosition(path string, seg int, off int64) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(seg)+" "+strconv.FormatInt(off, 10)+"\n"), 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// RunExporter ships the log to e until ctx ends, retrying failures with
// exponential backoff.
func RunExporter(ctx context.Context, e Exporter, o ExportOptions) {
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	backoff := o.Poll
	for {
		n, err := ExportOnce(ctx, e, o)
		wait := o.Poll
		switch {
		case err != nil && ctx.Err() == nil:
			o.Log.Warn("audit export failed; retrying", "exporter", e.Name(), "retry_in", backoff.String(), "error", err.Error())
			wait = backoff
			backoff = min(2*backoff, o.MaxBackoff)
		case n > 0:
			backoff = o.Poll
			continue // more may be waiting
		default:
			backoff = o.Poll
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// ExportOnce sends what is new since the saved position, in batches, and
// returns the number of records sent.
func ExportOnce(ctx context.Context, e Exporter, o ExportOptions) (int, error) {
	if o.Batch <= 0 {
		o.Batch = 500
	}
	pf := positionFile(o.Dir, e.Name())
	seg, off := loadPosition(pf)
	total := 0
	for ctx.Err() == nil {
		lines, nseg, noff, err := readLines(o.Dir, seg, off, o.Batch)
		if err != nil {
			return total, err
		}
		if nseg == seg && noff == off {
			return total, nil
		}
		if len(lines) > 0 {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = e.Send(sctx, lines)
			cancel()
			if err != nil {
				return total, fmt.Errorf("%s: %w", e.Name(), err)
			}
		}
		if err := savePosition(pf, nseg, noff); err != nil {
			return total, fmt.Errorf("save export position: %w", err)
		}
		total += len(lines)
		seg, off = nseg, noff
	}
	return total, ctx.Err()
}

// readLines returns up to max complete record lines after (seg, off),
// skipping checkpoints, and the position after them.
func readLines(dir string, seg int, off int64, max int) ([][]byte, int, int64, error) {
	f, err := os.Open(filepath.Join(dir, segmentName(seg)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, seg, off, nil
	}
	if err != nil {
		return nil, seg, off, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, seg, off, err
	}
	br := bufio.NewReaderSize(f, 64<<10)
	var out [][]byte
	for len(out) < max {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, seg, off, fmt.Errorf("audit segment %d: over-long line at offset %d", seg, off)
		}
		if err != nil {
			if len(line) == 0 && len(out) == 0 {
				if _, serr := os.Stat(filepath.Join(dir, segmentName(seg+1))); serr == nil {
					return nil, seg + 1, 0, nil
				}
			}
			break
		}
		off += int64(len(line))
		if IsCheckpoint(line) {
			continue
		}
		out = append(out, bytes.Clone(line[:len(line)-1]))
	}
	return out, seg, off, nil
}

// WriterExporter writes JSON Lines to w (stdout).
type WriterExporter struct {
	Label string
	W     io.Writer
}

func (x *WriterExporter) Name() string { return x.Label }

func (x *WriterExporter) Send(_ context.Context, lines [][]byte) error {
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	_, err := x.W.Write(b.Bytes())
	return err
}

// FileExporter appends JSON Lines to a file and fsyncs it.
type FileExporter struct {
	Label, Path string
}

func (x *FileExporter) Name() string { return x.Label }

func (x *FileExporter) Send(_ context.Context, lines [][]byte) error {
	f, err := os.OpenFile(x.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// HTTPExporter POSTs batches as application/x-ndjson; any 2xx is success.
type HTTPExporter struct {
	Label, URL string
	Header     http.Header // e.g. Authorization
	Client     *http.Client
}

func (x *HTTPExporter) Name() string { return x.Label }

func (x *HTTPExporter) Send(ctx context.Context, lines [][]byte) error {
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.URL, &b)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	for k, v := range x.Header {
		req.Header[k] = v
	}
	c := x.Client
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	return webhook.Do(c, req)
}

// SyslogExporter sends RFC 5424 messages over TCP, optionally TLS (RFC
// 5425), framed by octet counting. Facility local4 (20), severity notice.
type SyslogExporter struct {
	Label, Address string
	TLS            *tls.Config // nil: plain TCP
	Hostname       string
	conn           net.Conn
}

func (x *SyslogExporter) Name() string { return x.Label }

func (x *SyslogExporter) Send(ctx context.Context, lines [][]byte) error {
	if x.conn == nil {
		d := &net.Dialer{Timeout: 10 * time.Second}
		var c net.Conn
		var err error
		if x.TLS != nil {
			c, err = (&tls.Dialer{NetDialer: d, Config: x.TLS}).DialContext(ctx, "tcp", x.Address)
		} else {
			c, err = d.DialContext(ctx, "tcp", x.Address)
		}
		if err != nil {
			return err
		}
		x.conn = c
	}
	host := x.Hostname
	if host == "" {
		host = "-"
	}
	var b bytes.Buffer
	for _, l := range lines {
		// PRI 165 = local4.notice; TIMESTAMP is the send time (the record
		// carries its own); MSGID "audit".
		msg := "<165>1 " + time.Now().UTC().Format(time.RFC3339Nano) + " " + host + " gatehouse - audit - " + string(l)
		b.WriteString(strconv.Itoa(len(msg)))
		b.WriteByte(' ')
		b.WriteString(msg)
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(30 * time.Second)
	}
	_ = x.conn.SetWriteDeadline(dl)
	if _, err := x.conn.Write(b.Bytes()); err != nil {
		x.conn.Close()
		x.conn = nil
		return err
	}
	return nil
}
