package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

func writeN(t *testing.T, dir string, from, to int) {
	t.Helper()
	s, _ := testKeys(t, "exp")
	w, err := Open(Options{Dir: dir, Mode: Buffered, Signer: s, SegmentMaxBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i <= to; i++ {
		if err := w.WriteRequest(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func seqsOf(t *testing.T, data []byte) []uint64 {
	t.Helper()
	var out []uint64
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var h struct {
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
			t.Fatalf("exported line %q: %v", sc.Bytes(), err)
		}
		out = append(out, h.Seq)
	}
	return out
}

// wantSeqs checks every record 1..n arrived exactly once, in order (the
// writer's restart records included in n).
func wantSeqs(t *testing.T, got []uint64, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("exported %d records, want %d", len(got), n)
	}
	for i, s := range got {
		if s != uint64(i+1) {
			t.Fatalf("record %d has seq %d: lost, duplicated or reordered", i, s)
		}
	}
}

// An HTTP collector that is down, then erroring, then up again receives
// every record exactly once: the log is the spool and the position moves
// only after a 2xx.
func TestHTTPExporterOutageLosesNothing(t *testing.T) {
	dir := t.TempDir()
	writeN(t, dir, 1, 300)
	var mu sync.Mutex
	var got bytes.Buffer
	fail := 3
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		if fail > 0 {
			fail--
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		got.Write(body)
	}))
	defer srv.Close()
	x := &HTTPExporter{Label: "http", URL: srv.URL}
	o := ExportOptions{Dir: dir, Batch: 100}

	// Fully down: connection refused.
	down := &HTTPExporter{Label: "http", URL: "http://" + closedListener(t)}
	if n, err := ExportOnce(t.Context(), down, o); err == nil || n != 0 {
		t.Fatalf("export to a closed port: %d sent, err %v", n, err)
	}
	// Erroring, then recovering, through the retry loop.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	go RunExporter(ctx, x, ExportOptions{Dir: dir, Batch: 100, Poll: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(seqsOf(t, got.Bytes()))
		mu.Unlock()
		if n >= 300 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling a collector, not synchronising
	}
	// More records arrive while the exporter runs (a restart of the writer).
	writeN(t, dir, 301, 350)
	deadline = time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(seqsOf(t, got.Bytes()))
		mu.Unlock()
		if n >= 350 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	mu.Lock()
	defer mu.Unlock()
	// 350 requests plus no restart notice: both writers closed cleanly.
	wantSeqs(t, seqsOf(t, got.Bytes()), 350)
}

func closedListener(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestFileExporterResumes(t *testing.T) {
	dir := t.TempDir()
	writeN(t, dir, 1, 120)
	out := filepath.Join(t.TempDir(), "export.jsonl")
	x := &FileExporter{Label: "file", Path: out}
	if n, err := ExportOnce(t.Context(), x, ExportOptions{Dir: dir, Batch: 50}); err != nil || n != 120 {
		t.Fatalf("export: %d, %v", n, err)
	}
	writeN(t, dir, 121, 130)
	if n, err := ExportOnce(t.Context(), x, ExportOptions{Dir: dir, Batch: 50}); err != nil || n != 10 {
		t.Fatalf("second export: %d, %v", n, err)
	}
	b, _ := os.ReadFile(out)
	wantSeqs(t, seqsOf(t, b), 130)
}

// Syslog frames are RFC 5424 with octet counting (RFC 6587 §3.4.1).
func TestSyslogExporterFraming(t *testing.T) {
	dir := t.TempDir()
	writeN(t, dir, 1, 20)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	msgs := make(chan string, 100)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for {
			ls, err := br.ReadString(' ')
			if err != nil {
				return
			}
			n, err := strconv.Atoi(ls[:len(ls)-1])
			if err != nil || n <= 0 || n > 1<<20 {
				msgs <- "bad frame length " + ls
				return
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(br, buf); err != nil {
				return
			}
			msgs <- string(buf)
		}
	}()
	x := &SyslogExporter{Label: "syslog", Address: ln.Addr().String(), Hostname: "gw1"}
	if n, err := ExportOnce(t.Context(), x, ExportOptions{Dir: dir}); err != nil || n != 20 {
		t.Fatalf("export: %d, %v", n, err)
	}
	for i := 1; i <= 20; i++ {
		select {
		case m := <-msgs:
			prefix := "<165>1 "
			if len(m) < len(prefix) || m[:len(prefix)] != prefix || !bytes.Contains([]byte(m), []byte(" gw1 gatehouse - audit - {\"seq\":"+strconv.Itoa(i)+",")) {
				t.Fatalf("message %d: %q", i, m)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d not received", i)
		}
	}
}
