package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

func testKeys(t testing.TB, name string) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func sampleRecord(i int) *Record {
	return &Record{Time: time.Unix(1700000000, int64(i)), RequestID: "req-" + strconv.Itoa(i), Consumer: "acme-billing",
		Partner: "acme", CredentialID: "cred_1", API: "orders", Version: "v2", Operation: "getOrder", Method: "GET",
		PathTemplate: "/orders/v2/{id}", Path: "/orders/v2/" + strconv.Itoa(i) + "?expand", ClientIP: "127.0.0.1",
		UserAgent: "test\"agent\n", Status: 200, Latency: time.Millisecond, BytesOut: 42, Decision: "allow"}
}

// writeLog writes n records with the real writer: a checkpoint every 5
// records and segments of about 2 KiB, closed cleanly.
func writeLog(t *testing.T, dir string, s note.Signer, n int) {
	t.Helper()
	w, err := Open(Options{Dir: dir, Mode: Durable, Signer: s, CheckpointEvery: 5, SegmentMaxBytes: 2048})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if err := w.WriteRequest(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// segLines reads segment k (1-based) as lines without their newlines.
func segLines(t *testing.T, dir string, k int) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, segmentName(k)))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func writeSeg(t *testing.T, dir string, k int, lines [][]byte) {
	t.Helper()
	b := append(bytes.Join(lines, []byte("\n")), '\n')
	if err := os.WriteFile(filepath.Join(dir, segmentName(k)), b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// recordIdx returns the index of the i-th record line (0-based, skipping
// checkpoints) of a segment.
func recordIdx(lines [][]byte, i int) int {
	for j, l := range lines {
		if IsCheckpoint(l) {
			continue
		}
		if i == 0 {
			return j
		}
		i--
	}
	return -1
}

func TestVerifyDetectsTampering(t *testing.T) {
	signer, verifier := testKeys(t, "gatehouse-audit")
	otherSigner, _ := testKeys(t, "gatehouse-audit")
	cases := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		want   string // substring of the break reason; "" means the log must verify
	}{
		{"untouched log verifies", func(*testing.T, string) {}, ""},
		{"changed byte", func(t *testing.T, dir string) {
			l := segLines(t, dir, 2)
			i := recordIdx(l, 1)
			l[i] = bytes.Replace(l[i], []byte(`"status":200`), []byte(`"status":201`), 1)
			writeSeg(t, dir, 2, l)
		}, "was modified"},
		{"changed byte in the last record before a checkpoint", func(t *testing.T, dir string) {
			l := segLines(t, dir, 1)
			for j := range l {
				if IsCheckpoint(l[j]) {
					l[j-1] = bytes.Replace(l[j-1], []byte("acme-billing"), []byte("acme-billinG"), 1)
					break
				}
			}
			writeSeg(t, dir, 1, l)
		}, "modified"},
		{"deleted record", func(t *testing.T, dir string) {
			l := segLines(t, dir, 2)
			i := recordIdx(l, 1)
			writeSeg(t, dir, 2, append(l[:i:i], l[i+1:]...))
		}, "deleted or reordered"},
		{"inserted record", func(t *testing.T, dir string) {
			l := segLines(t, dir, 2)
			i := recordIdx(l, 1)
			forged := bytes.Replace(l[i], []byte(`"acme-billing"`), []byte(`"mallory"`), 1)
			out := append([][]byte{}, l[:i+1]...)
			out = append(out, forged)
			writeSeg(t, dir, 2, append(out, l[i+1:]...))
		}, "inserted or reordered"},
		{"reordered records", func(t *testing.T, dir string) {
			l := segLines(t, dir, 2)
			i, j := recordIdx(l, 0), recordIdx(l, 1)
			l[i], l[j] = l[j], l[i]
			writeSeg(t, dir, 2, l)
		}, "deleted or reordered"}, // the later record now comes first: a gap at its position
		{"re-chained insertion caught by the checkpoint", func(t *testing.T, dir string) {
			// The attacker recomputes every following prev hash and seq,
			// but cannot re-sign the checkpoint.
			l := segLines(t, dir, 1)
			var out [][]byte
			var head [32]byte
			var seq uint64
			for j, line := range l {
				if IsCheckpoint(line) {
					out = append(out, line)
					continue
				}
				rs := [][]byte{line}
				if j == 0 {
					rs = append(rs, line)
				}
				for _, r := range rs {
					seq++
					body := r[bytes.Index(r, []byte(`"type"`)):]
					nl := []byte(`{"seq":` + strconv.FormatUint(seq, 10) + `,"prev":"` + hexString(head) + `",`)
					nl = append(nl, body...)
					head = sha256Sum(nl)
					out = append(out, nl)
				}
			}
			writeSeg(t, dir, 1, out)
		}, "inserted or deleted"},
		{"truncated tail mid-record", func(t *testing.T, dir string) {
			segs, _ := listSegments(dir)
			last := segs[len(segs)-1].path
			fi, _ := os.Stat(last)
			if err := os.Truncate(last, fi.Size()-40); err != nil {
				t.Fatal(err)
			}
		}, "truncated record"},
		{"truncated tail at a line boundary, last checkpoint removed", func(t *testing.T, dir string) {
			segs, _ := listSegments(dir)
			k := segs[len(segs)-1].n
			l := segLines(t, dir, k)
			writeSeg(t, dir, k, l[:len(l)-2])
		}, "log truncated"},
		{"missing middle segment", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, segmentName(2))); err != nil {
				t.Fatal(err)
			}
		}, "segment is missing"},
		{"missing last segment", func(t *testing.T, dir string) {
			segs, _ := listSegments(dir)
			if err := os.Remove(segs[len(segs)-1].path); err != nil {
				t.Fatal(err)
			}
		}, "log truncated"},
		{"forged checkpoint (text changed, old signature)", func(t *testing.T, dir string) {
			l := segLines(t, dir, 1)
			for j := range l {
				if IsCheckpoint(l[j]) {
					msg := checkpointText(t, l[j])
					text, sigs, _ := strings.Cut(msg, "\n\n")
					c, err := parseCheckpointText(text + "\n")
					if err != nil {
						t.Fatal(err)
					}
					c.Count--
					l[j] = appendString([]byte(`{"checkpoint":`), c.text()+"\n"+sigs)
					l[j] = append(l[j], '}')
					break
				}
			}
			writeSeg(t, dir, 1, l)
		}, "forged or altered"},
		{"checkpoint re-signed with another key", func(t *testing.T, dir string) {
			l := segLines(t, dir, 1)
			for j := range l {
				if IsCheckpoint(l[j]) {
					c, err := parseNoteText(checkpointText(t, l[j]))
					if err != nil {
						t.Fatal(err)
					}
					msg, err := signCheckpoint(c, otherSigner)
					if err != nil {
						t.Fatal(err)
					}
					l[j] = appendString([]byte(`{"checkpoint":`), string(msg))
					l[j] = append(l[j], '}')
					break
				}
			}
			writeSeg(t, dir, 1, l)
		}, "not signed by the given key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLog(t, dir, signer, 40)
			if segs, _ := listSegments(dir); len(segs) < 3 {
				t.Fatalf("want at least 3 segments, got %d", len(segs))
			}
			tc.tamper(t, dir)
			rep, err := Verify(dir, verifier)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if rep.Broken != nil {
					t.Fatalf("untampered log reported broken: %v", rep.Broken)
				}
				if rep.Records != 40 || rep.Signed != 40 || len(rep.Notices) != 0 {
					t.Fatalf("report %+v", rep)
				}
				return
			}
			if rep.Broken == nil {
				t.Fatalf("tampering not detected; report %+v", rep)
			}
			if !strings.Contains(rep.Broken.Error(), tc.want) {
				t.Fatalf("break %q, want it to mention %q", rep.Broken.Error(), tc.want)
			}
			t.Logf("detected: %v", rep.Broken)
		})
	}
}

func checkpointText(t *testing.T, line []byte) string {
	t.Helper()
	var h lineHead
	if err := jsonUnmarshal(line, &h); err != nil || h.Checkpoint == nil {
		t.Fatalf("not a checkpoint: %s", line)
	}
	return *h.Checkpoint
}
