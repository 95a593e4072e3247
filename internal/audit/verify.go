package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/mod/sumdb/note"
)

// Break is the first place where the log is not what the writer wrote.
type Break struct {
	Segment string // file name
	Line    int    // 1-based line in the segment
	Seq     uint64 // the record concerned, when known
	Reason  string
}

func (b *Break) Error() string {
	s := b.Segment
	if b.Line > 0 {
		s += ":" + strconv.Itoa(b.Line)
	}
	if b.Seq > 0 {
		s += ": record " + strconv.FormatUint(b.Seq, 10)
	}
	return s + ": " + b.Reason
}

// Report is what Verify found.
type Report struct {
	Segments    int
	Records     uint64
	Checkpoints int
	// Signed is the record count covered by the last valid checkpoint;
	// Records-Signed records at the end are not yet under a signature.
	Signed  uint64
	Notices []string // unclean shutdowns and unsigned tails: visible gaps, not tampering
	Broken  *Break
}

// Verify checks every segment in dir against the verifier key: the hash
// chain, the sequence numbers, every checkpoint's signature and claim, the
// segment numbering, and the latest checkpoint against the log's end. It
// stops at the first break.
func Verify(dir string, v note.Verifier) (*Report, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return nil, fmt.Errorf("read audit dir: %w", err)
	}
	rep := &Report{Segments: len(segs)}
	var (
		seq  uint64
		head [32]byte
	)
	for i, sg := range segs {
		name := filepath.Base(sg.path)
		if sg.n != i+1 {
			missing := segmentName(i + 1)
			rep.Broken = &Break{Segment: missing, Reason: "segment is missing (deleted or renamed); records from " + strconv.FormatUint(seq+1, 10) + " on are not accounted for"}
			return rep, nil
		}
		f, err := os.Open(sg.path)
		if err != nil {
			return nil, fmt.Errorf("open segment: %w", err)
		}
		br := bufio.NewReaderSize(f, 256<<10)
		for lineNo := 1; ; lineNo++ {
			line, err := br.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				f.Close()
				rep.Broken = &Break{Segment: name, Line: lineNo, Reason: "line longer than any record the writer produces: inserted or corrupted data"}
				return rep, nil
			}
			if err == io.EOF {
				if len(line) > 0 {
					f.Close()
					rep.Broken = &Break{Segment: name, Line: lineNo, Seq: seq + 1, Reason: "truncated record: the segment ends in the middle of a line (tail cut or torn write)"}
					return rep, nil
				}
				break
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("read segment %s: %w", name, err)
			}
			line = line[:len(line)-1]
			if b := checkLine(rep, line, &seq, &head, v); b != nil {
				f.Close()
				b.Segment, b.Line = name, lineNo
				rep.Broken = b
				return rep, nil
			}
		}
		f.Close()
	}
	rep.Records = seq
	if msg, err := os.ReadFile(filepath.Join(dir, LatestFile)); err == nil {
		c, err := openCheckpoint(msg, v)
		switch {
		case err != nil:
			rep.Broken = &Break{Segment: LatestFile, Reason: err.Error()}
			return rep, nil
		case c.Count > seq:
			rep.Broken = &Break{Segment: LatestFile, Seq: seq + 1, Reason: "log truncated: the latest signed checkpoint covers " +
				strconv.FormatUint(c.Count, 10) + " records but the segments end at " + strconv.FormatUint(seq, 10)}
			return rep, nil
		case c.Count > rep.Signed:
			rep.Broken = &Break{Segment: LatestFile, Reason: "the latest signed checkpoint is missing from the segments: checkpoints were removed"}
			return rep, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read latest checkpoint: %w", err)
	} else if rep.Checkpoints > 0 {
		rep.Notices = append(rep.Notices, LatestFile+" is missing: truncation back to an older checkpoint cannot be ruled out")
	}
	if n := rep.Records - rep.Signed; n > 0 {
		rep.Notices = append(rep.Notices, strconv.FormatUint(n, 10)+" records after the last checkpoint are not yet signed (a writer still running, or a crash): records lost or cut after it would not be detectable")
	}
	return rep, nil
}

func checkLine(rep *Report, line []byte, seq *uint64, head *[32]byte, v note.Verifier) *Break {
	var h lineHead
	if err := json.Unmarshal(line, &h); err != nil {
		return &Break{Seq: *seq + 1, Reason: "record is not valid JSON: modified or inserted bytes"}
	}
	if h.Checkpoint != nil {
		c, err := openCheckpoint([]byte(*h.Checkpoint), v)
		if err != nil {
			return &Break{Reason: err.Error()}
		}
		if c.Count != *seq {
			return &Break{Seq: *seq, Reason: "checkpoint covers " + strconv.FormatUint(c.Count, 10) + " records but the chain before it has " +
				strconv.FormatUint(*seq, 10) + ": records were inserted or deleted"}
		}
		if c.Head != *head {
			return &Break{Seq: *seq, Reason: "checkpoint head hash does not match the chain: records before it were modified"}
		}
		rep.Checkpoints++
		rep.Signed = c.Count
		return nil
	}
	if h.Seq == nil {
		return &Break{Seq: *seq + 1, Reason: "line is neither a record nor a checkpoint: inserted or modified"}
	}
	want := *seq + 1
	switch {
	case *h.Seq > want:
		return &Break{Seq: want, Reason: "record(s) " + strconv.FormatUint(want, 10) + "–" + strconv.FormatUint(*h.Seq-1, 10) + " missing here (deleted or reordered): the next record present is " + strconv.FormatUint(*h.Seq, 10)}
	case *h.Seq < want:
		return &Break{Seq: *h.Seq, Reason: "record " + strconv.FormatUint(*h.Seq, 10) + " appears after record " + strconv.FormatUint(*seq, 10) + ": records inserted or reordered"}
	}
	var prev [32]byte
	if len(h.Prev) != 64 {
		return &Break{Seq: want, Reason: "record's prev hash is malformed: modified"}
	}
	if n, err := hex.Decode(prev[:], []byte(h.Prev)); err != nil || n != 32 {
		return &Break{Seq: want, Reason: "record's prev hash is malformed: modified"}
	}
	if prev != *head {
		if want == 1 {
			return &Break{Seq: 1, Reason: "first record does not start the chain: modified"}
		}
		return &Break{Seq: want - 1, Reason: "hash chain broken: record " + strconv.FormatUint(want-1, 10) + " was modified (or replaced) after it was written"}
	}
	if h.Type == TypeSystem && h.Event == "unclean_shutdown" {
		rep.Notices = append(rep.Notices, "record "+strconv.FormatUint(want, 10)+": unclean shutdown: "+h.Detail)
	}
	*seq, *head = want, sha256.Sum256(line)
	return nil
}

// IsCheckpoint reports whether a log line is a checkpoint (for readers that
// skip them).
func IsCheckpoint(line []byte) bool { return bytes.HasPrefix(line, []byte(`{"checkpoint":`)) }
