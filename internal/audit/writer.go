package audit

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Mode says when a response may leave relative to its record.
type Mode string

const (
	// Buffered: records are written by a background goroutine and reach
	// the operating system at least every FlushInterval (100 ms); a crash
	// of the process (not the machine) loses at most what was queued.
	Buffered Mode = "buffered"
	// Durable: a response is released only after its record is fsynced.
	Durable Mode = "durable"
)

// Options configure a Writer.
type Options struct {
	Dir                string
	Mode               Mode
	Signer             note.Signer
	CheckpointEvery    int           // records between checkpoints (default 1000)
	CheckpointInterval time.Duration // time between checkpoints (default 5s)
	SegmentMaxBytes    int64         // rotate past this size (default 64 MiB)
	SegmentMaxAge      time.Duration // rotate past this age (0: never by age)
	QueueSize          int           // bounded queue of records waiting (default 8192)
	FlushInterval      time.Duration // buffered mode (default 100ms, never more)
	Log                *slog.Logger
}

// ErrUnavailable is returned when a record could not be written (full
// disk, unwritable directory, writer closed). Durable mode then refuses
// the request rather than serve it unrecorded.
var ErrUnavailable = errors.New("audit log unavailable")

// Stats are the writer's counters for metrics.
type Stats struct {
	Records     uint64 // records written
	Errors      uint64 // write or fsync failures
	Checkpoints uint64
	Healthy     bool
	QueueLen    int
}

type entry struct {
	body *[]byte
	done chan error // durable: told when the record is on disk
}

var entryPool = sync.Pool{New: func() any { return &entry{done: make(chan error, 1)} }}

// Writer appends records to the hash-chained log with group commit: one
// goroutine takes every record queued since its last write, appends them
// and (durable) fsyncs once for all of them.
type Writer struct {
	o       Options
	q       chan *entry
	stop    chan struct{}
	stopped chan struct{}
	closeMu sync.RWMutex
	closed  bool

	records, errs, ckpts atomic.Uint64
	healthy              atomic.Bool

	// Owned by the loop goroutine.
	f          *os.File
	bw         *bufio.Writer
	segNo      int
	segSize    int64
	segOpened  time.Time
	seq        uint64
	head       [32]byte
	sinceCkpt  int
	lastCkpt   time.Time
	dirty      bool // written but not yet flushed to the OS
	line       []byte
	batch      []*entry
	lastFlush  time.Time
	needSystem []byte // a system record to append first (restart notice)

	// kick wakes a buffered-mode writer early when the queue fills up.
	kick chan struct{}

	testHook chan func() // tests swap files on the loop goroutine
	testDone chan struct{}
}

// Open recovers the log's tail in o.Dir and starts the writer. Each process
// start opens a fresh segment; an unclean previous shutdown is recorded as
// a system record at the head of the chain.
func Open(o Options) (*Writer, error) {
	if o.Signer == nil {
		return nil, errors.New("audit: a signing key is required")
	}
	if o.Mode == "" {
		o.Mode = Buffered
	}
	if o.Mode != Buffered && o.Mode != Durable {
		return nil, fmt.Errorf("audit: mode %q: want buffered or durable", o.Mode)
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 1000
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = 5 * time.Second
	}
	if o.SegmentMaxBytes <= 0 {
		o.SegmentMaxBytes = 64 << 20
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 8192
	}
	if o.FlushInterval <= 0 || o.FlushInterval > 100*time.Millisecond {
		o.FlushInterval = 100 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("audit dir: %w", err)
	}
	if err := ensureLogID(o.Dir); err != nil {
		return nil, fmt.Errorf("audit log id: %w", err)
	}
	st, err := recoverTail(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("audit: recover log in %s: %w", o.Dir, err)
	}
	w := &Writer{o: o, q: make(chan *entry, o.QueueSize), stop: make(chan struct{}), stopped: make(chan struct{}),
		testHook: make(chan func()), testDone: make(chan struct{}), kick: make(chan struct{}, 1),
		segNo: st.segments, seq: st.seq, head: st.head, lastCkpt: time.Now(), lastFlush: time.Now()}
	if !st.clean {
		detail := "previous writer stopped without a final checkpoint after seq " + strconv.FormatUint(st.seq, 10) +
			"; last signed checkpoint covered " + strconv.FormatUint(st.ckptCount, 10) + " records"
		if st.tornBytes > 0 {
			detail += "; a torn record of " + strconv.FormatInt(st.tornBytes, 10) + " bytes was cut"
		}
		o.Log.Warn("audit log: unclean shutdown found", "dir", o.Dir, "detail", detail)
		w.needSystem = systemBody(nil, time.Now(), "unclean_shutdown", detail)
	}
	if err := w.openSegment(); err != nil {
		return nil, err
	}
	w.healthy.Store(true)
	if w.needSystem != nil {
		if err := w.appendLine(w.needSystem); err == nil {
			err = w.sync()
		}
		w.needSystem = nil
	}
	go w.loop()
	return w, nil
}

// Mode returns the writer's mode.
func (w *Writer) Mode() Mode { return w.o.Mode }

// Stats returns the current counters.
func (w *Writer) Stats() Stats {
	return Stats{Records: w.records.Load(), Errors: w.errs.Load(), Checkpoints: w.ckpts.Load(),
		Healthy: w.healthy.Load(), QueueLen: len(w.q)}
}

// WriteRequest queues r. In durable mode it returns only once r is on
// disk; an error means it is not, and the caller must not serve the
// response. In buffered mode it returns when r is queued; a full queue
// makes the caller wait (back-pressure) instead of growing without bound.
func (w *Writer) WriteRequest(r *Record) error {
	b := getBuf()
	*b = r.appendBody(*b)
	return w.submit(b)
}

// WriteAdmin queues an admin record with the same guarantees as
// WriteRequest.
func (w *Writer) WriteAdmin(r *AdminRecord) error {
	b := getBuf()
	*b = r.appendBody(*b)
	return w.submit(b)
}

func (w *Writer) submit(b *[]byte) error {
	if len(*b) > maxLine-200 {
		putBuf(b)
		return fmt.Errorf("audit record too large (%d bytes)", len(*b))
	}
	w.closeMu.RLock()
	if w.closed {
		w.closeMu.RUnlock()
		putBuf(b)
		return ErrUnavailable
	}
	e := entryPool.Get().(*entry)
	e.body = b
	durable := w.o.Mode == Durable
	w.q <- e
	w.closeMu.RUnlock()
	if !durable {
		if len(w.q) > cap(w.q)/2 {
			select {
			case w.kick <- struct{}{}:
			default:
			}
		}
		return nil
	}
	err := <-e.done
	entryPool.Put(e)
	return err
}

// Close writes what is queued, signs a final checkpoint, fsyncs and closes
// the segment.
func (w *Writer) Close() error {
	w.closeMu.Lock()
	if w.closed {
		w.closeMu.Unlock()
		return nil
	}
	w.closed = true
	w.closeMu.Unlock()
	close(w.stop)
	<-w.stopped
	var err error
	if w.f != nil {
		if w.healthy.Load() {
			err = w.checkpoint()
		}
		if cerr := w.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

func (w *Writer) loop() {
	defer close(w.stopped)
	if w.o.Mode == Buffered {
		w.bufferedLoop()
		return
	}
	tick := time.NewTicker(w.o.FlushInterval / 2)
	defer tick.Stop()
	for {
		select {
		case e := <-w.q:
			w.batch = append(w.batch[:0], e)
			w.drain()
			w.writeBatch()
		case <-tick.C:
			w.periodic()
		case fn := <-w.testHook:
			fn()
			w.testDone <- struct{}{}
		case <-w.stop:
			for {
				select {
				case e := <-w.q:
					w.batch = append(w.batch[:0], e)
					w.writeBatch()
					continue
				default:
				}
				break
			}
			if w.dirty {
				_ = w.sync()
			}
			return
		}
	}
}

// drain adds what is queued to the batch, up to a bound.
func (w *Writer) drain() {
	for len(w.batch) < 4096 {
		select {
		case e := <-w.q:
			w.batch = append(w.batch, e)
		default:
			return
		}
	}
}

// bufferedLoop wakes on a timer (or when the queue is half full) instead
// of per record: a request only puts its record on a buffered channel,
// and no goroutine is woken for it, which is what keeps buffered mode
// cheap on the hot path.
func (w *Writer) bufferedLoop() {
	tick := time.NewTicker(w.o.FlushInterval / 4)
	defer tick.Stop()
	for {
		stopping := false
		select {
		case <-tick.C:
		case <-w.kick:
		case fn := <-w.testHook:
			fn()
			w.testDone <- struct{}{}
			continue
		case <-w.stop:
			stopping = true
		}
		for len(w.q) > 0 {
			w.batch = w.batch[:0]
			w.drain()
			w.writeBatch()
		}
		w.periodic()
		if stopping {
			if w.dirty {
				_ = w.sync()
			}
			return
		}
	}
}

// writeBatch appends the batch and commits it as one group. On failure the
// segment is cut back to the last good record and the chain state restored,
// so the log stays verifiable and the next batch tries again.
func (w *Writer) writeBatch() {
	if w.rotateDue() {
		if err := w.rotate(); err != nil {
			w.fail(err)
		}
	}
	goodSeq, goodHead, goodSize := w.seq, w.head, w.segSize
	var err error
	if w.f == nil {
		err = ErrUnavailable
	}
	for _, e := range w.batch {
		if err == nil {
			err = w.appendLine(*e.body)
		}
	}
	durable := w.o.Mode == Durable
	if err == nil && (durable || w.bw.Buffered() > 256<<10 || time.Since(w.lastFlush) >= w.o.FlushInterval) {
		if durable {
			err = w.sync()
		} else {
			err = w.flush()
		}
	}
	if err != nil {
		w.fail(err)
		w.seq, w.head, w.segSize = goodSeq, goodHead, goodSize
		w.sinceCkpt = 0
		if w.f != nil {
			_ = w.f.Truncate(goodSize)
			w.bw.Reset(w.f)
		}
		w.dirty = false
		err = fmt.Errorf("%w: %v", ErrUnavailable, err)
	} else {
		w.records.Add(uint64(len(w.batch)))
		if !w.healthy.Load() {
			w.o.Log.Info("audit log writable again", "dir", w.o.Dir)
			w.healthy.Store(true)
		}
	}
	for i, e := range w.batch {
		putBuf(e.body)
		e.body = nil
		if durable {
			e.done <- err
		} else {
			entryPool.Put(e)
		}
		w.batch[i] = nil
	}
	if err == nil && w.sinceCkpt >= w.o.CheckpointEvery {
		if cerr := w.checkpoint(); cerr != nil {
			w.fail(cerr)
		}
	}
}

func (w *Writer) fail(err error) {
	w.errs.Add(1)
	if w.healthy.Swap(false) {
		w.o.Log.Error("audit log write failed", "dir", w.o.Dir, "error", err.Error())
	}
}

func (w *Writer) periodic() {
	if w.dirty && time.Since(w.lastFlush) >= w.o.FlushInterval/2 {
		if err := w.flush(); err != nil {
			w.fail(err)
		}
	}
	if w.sinceCkpt > 0 && time.Since(w.lastCkpt) >= w.o.CheckpointInterval {
		if err := w.checkpoint(); err != nil {
			w.fail(err)
		}
	}
	if w.f == nil || w.rotateDue() {
		// Also retries opening a segment after the directory failed.
		if err := w.rotate(); err != nil {
			w.fail(err)
		}
	}
}

// appendLine chains body (the members after seq and prev) and writes it.
func (w *Writer) appendLine(body []byte) error {
	seq := w.seq + 1
	l := append(w.line[:0], `{"seq":`...)
	l = strconv.AppendUint(l, seq, 10)
	l = append(l, `,"prev":"`...)
	l = hex.AppendEncode(l, w.head[:])
	l = append(l, '"', ',')
	l = append(l, body...)
	w.line = l
	if _, err := w.bw.Write(l); err != nil {
		return err
	}
	if err := w.bw.WriteByte('\n'); err != nil {
		return err
	}
	w.seq, w.head = seq, sha256.Sum256(l)
	w.segSize += int64(len(l) + 1)
	w.sinceCkpt++
	w.dirty = true
	return nil
}

func (w *Writer) flush() error {
	if err := w.bw.Flush(); err != nil {
		return err
	}
	w.dirty, w.lastFlush = false, time.Now()
	return nil
}

func (w *Writer) sync() error {
	if err := w.flush(); err != nil {
		return err
	}
	return w.f.Sync()
}

// checkpoint signs (count, head, now), appends it to the segment, makes it
// durable, and only then publishes it as the latest checkpoint.
func (w *Writer) checkpoint() error {
	if w.f == nil {
		return ErrUnavailable
	}
	c := Checkpoint{Count: w.seq, Head: w.head, Time: time.Now()}
	msg, err := signCheckpoint(c, w.o.Signer)
	if err != nil {
		return fmt.Errorf("sign checkpoint: %w", err)
	}
	l := append(w.line[:0], `{"checkpoint":`...)
	l = appendString(l, string(msg))
	l = append(l, '}', '\n')
	w.line = l
	if _, err := w.bw.Write(l); err != nil {
		return err
	}
	w.segSize += int64(len(l))
	if err := w.sync(); err != nil {
		return err
	}
	w.sinceCkpt, w.lastCkpt = 0, c.Time
	w.ckpts.Add(1)
	tmp := filepath.Join(w.o.Dir, LatestFile+".tmp")
	if err := os.WriteFile(tmp, msg, 0o640); err != nil {
		return fmt.Errorf("write latest checkpoint: %w", err)
	}
	return os.Rename(tmp, filepath.Join(w.o.Dir, LatestFile))
}

func (w *Writer) rotateDue() bool {
	if w.f == nil {
		return true
	}
	return w.segSize >= w.o.SegmentMaxBytes || (w.o.SegmentMaxAge > 0 && w.segSize > 0 && time.Since(w.segOpened) >= w.o.SegmentMaxAge)
}

// rotate closes the current segment with a checkpoint and opens the next.
func (w *Writer) rotate() error {
	if w.f != nil {
		if err := w.checkpoint(); err != nil {
			return err
		}
		if err := w.f.Close(); err != nil {
			return err
		}
		w.f = nil
	}
	return w.openSegment()
}

func (w *Writer) openSegment() error {
	n := w.segNo + 1
	f, err := os.OpenFile(filepath.Join(w.o.Dir, segmentName(n)), os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_EXCL, 0o640)
	if err != nil && errors.Is(err, os.ErrExist) {
		// A pre-made path (say, a symlink a test or an operator put there)
		// is opened as is rather than skipped, so numbering stays gapless.
		f, err = os.OpenFile(filepath.Join(w.o.Dir, segmentName(n)), os.O_WRONLY|os.O_APPEND, 0o640)
	}
	if err != nil {
		return fmt.Errorf("open audit segment: %w", err)
	}
	w.f, w.segNo, w.segSize, w.segOpened = f, n, 0, time.Now()
	if w.bw == nil {
		w.bw = bufio.NewWriterSize(f, 64<<10)
	} else {
		w.bw.Reset(f)
	}
	return nil
}
