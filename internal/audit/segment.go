package audit

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Segment files are named audit-NNNNNNNN.jsonl, numbered from 1 without
// gaps: a missing number is a missing segment.
const (
	segPrefix = "audit-"
	segSuffix = ".jsonl"
	// LatestFile holds the most recent signed checkpoint, so cutting the
	// log back to an older checkpoint is visible.
	LatestFile = "checkpoint.latest"
	// LogIDFile names this log among every node's logs in a shared index.
	LogIDFile = "log.id"
	// maxLine bounds one record; the writer refuses larger ones.
	maxLine = 1 << 20
)

func segmentName(n int) string { return fmt.Sprintf("%s%08d%s", segPrefix, n, segSuffix) }

type segmentFile struct {
	n    int
	path string
}

// listSegments returns the segment files in dir in number order.
func listSegments(dir string) ([]segmentFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []segmentFile
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, segPrefix) || !strings.HasSuffix(name, segSuffix) {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, segPrefix), segSuffix))
		if err != nil || n <= 0 {
			continue
		}
		out = append(out, segmentFile{n, filepath.Join(dir, name)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n < out[j].n })
	return out, nil
}

// lineHead is the part of a line verify and recovery need.
type lineHead struct {
	Seq        *uint64 `json:"seq"`
	Prev       string  `json:"prev"`
	Type       string  `json:"type"`
	Event      string  `json:"event"`
	Detail     string  `json:"detail"`
	Checkpoint *string `json:"checkpoint"`
}

// tailState is where a log left off: the last record's sequence number and
// hash, and whether a checkpoint covers it (a clean shutdown).
type tailState struct {
	seq       uint64
	head      [32]byte
	ckptCount uint64
	clean     bool
	segments  int
	tornBytes int64
}

// recoverTail finds where the log in dir ends. A torn last line (a write
// cut short by a crash) is cut off: no response waited on it in durable
// mode, since its fsync never completed; the number of bytes cut is
// reported so the restart record can say so.
func recoverTail(dir string) (tailState, error) {
	var st tailState
	segs, err := listSegments(dir)
	if err != nil {
		return st, err
	}
	if len(segs) == 0 {
		st.clean = true
		return st, nil
	}
	st.segments = segs[len(segs)-1].n
	for i := len(segs) - 1; i >= 0; i-- {
		fi, err := os.Stat(segs[i].path)
		if err != nil {
			return st, err
		}
		if fi.Size() == 0 {
			// Created but never written (a crash right after rotation, or
			// a path an operator prepared): the writer reuses it, so the
			// numbering stays gapless. Not read: it may be a device.
			if i == len(segs)-1 {
				st.segments = segs[i].n - 1
			}
			continue
		}
		if !fi.Mode().IsRegular() {
			return st, fmt.Errorf("audit segment %s is not a regular file", segs[i].path)
		}
		data, err := os.ReadFile(segs[i].path)
		if err != nil {
			return st, err
		}
		if end := bytes.LastIndexByte(data, '\n') + 1; end < len(data) {
			if i == len(segs)-1 {
				st.tornBytes = int64(len(data) - end)
				if err := os.Truncate(segs[i].path, int64(end)); err != nil {
					return st, fmt.Errorf("cut torn audit record: %w", err)
				}
			}
			data = data[:end]
		}
		lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
		sawCkpt := false
		for j := len(lines) - 1; j >= 0; j-- {
			if len(lines[j]) == 0 {
				continue
			}
			var h lineHead
			if err := json.Unmarshal(lines[j], &h); err != nil {
				return st, fmt.Errorf("audit segment %s: unreadable record; run 'gatehouse logs verify': %w", segs[i].path, err)
			}
			if h.Checkpoint != nil {
				if !sawCkpt {
					if c, err := parseNoteText(*h.Checkpoint); err == nil {
						st.ckptCount = c.Count
					}
				}
				sawCkpt = true
				continue
			}
			if h.Seq == nil {
				continue
			}
			st.seq = *h.Seq
			st.head = sha256.Sum256(lines[j])
			st.clean = sawCkpt && st.ckptCount == st.seq && st.tornBytes == 0
			return st, nil
		}
	}
	st.clean = st.tornBytes == 0
	return st, nil
}

// parseNoteText reads a checkpoint's text without checking its signature
// (recovery only needs to know what it claims; verify checks it).
func parseNoteText(msg string) (Checkpoint, error) {
	i := strings.Index(msg, "\n\n")
	if i < 0 {
		return Checkpoint{}, fmt.Errorf("malformed note")
	}
	return parseCheckpointText(msg[:i+1])
}

// ReadLogID returns the log's identity, written when it was first opened.
func ReadLogID(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, LogIDFile))
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if id == "" || len(id) > 128 {
		return "", fmt.Errorf("audit log id in %s is malformed", dir)
	}
	return id, nil
}

// ensureLogID creates the log's identity on first use: the host name and
// random bits, so two nodes never share one.
func ensureLogID(dir string) error {
	if _, err := ReadLogID(dir); err == nil || !errors.Is(err, os.ErrNotExist) {
		return err
	}
	host, _ := os.Hostname()
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return err
	}
	id := host + "-" + hex.EncodeToString(r[:])
	if len(id) > 100 {
		id = id[len(id)-100:]
	}
	return os.WriteFile(filepath.Join(dir, LogIDFile), []byte(id+"\n"), 0o640)
}
