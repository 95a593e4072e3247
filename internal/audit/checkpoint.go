package audit

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// checkpointHeader opens every checkpoint's note text, so a note signed for
// another purpose with the same key is never taken for a checkpoint.
const checkpointHeader = "gatehouse audit checkpoint v1"

// Checkpoint is the signed statement "the log held Count records and the
// last one hashed to Head at Time".
type Checkpoint struct {
	Count uint64
	Head  [32]byte
	Time  time.Time
}

func (c Checkpoint) text() string {
	return checkpointHeader + "\n" + strconv.FormatUint(c.Count, 10) + "\n" +
		base64.StdEncoding.EncodeToString(c.Head[:]) + "\n" + c.Time.UTC().Format(time.RFC3339Nano) + "\n"
}

func parseCheckpointText(t string) (Checkpoint, error) {
	var c Checkpoint
	lines := strings.Split(strings.TrimSuffix(t, "\n"), "\n")
	if len(lines) != 4 || lines[0] != checkpointHeader {
		return c, errors.New("not a gatehouse checkpoint")
	}
	n, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return c, fmt.Errorf("checkpoint count: %w", err)
	}
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != 32 {
		return c, errors.New("checkpoint head hash is not 32 bytes of base64")
	}
	ts, err := time.Parse(time.RFC3339Nano, lines[3])
	if err != nil {
		return c, fmt.Errorf("checkpoint time: %w", err)
	}
	c.Count, c.Time = n, ts
	copy(c.Head[:], h)
	return c, nil
}

// signCheckpoint returns the signed note for c.
func signCheckpoint(c Checkpoint, s note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: c.text()}, s)
}

// Checkpoint verification failures, told apart so verify can say whether a
// note was altered or signed by someone else.
var (
	ErrCheckpointForged   = errors.New("checkpoint signature does not verify: the checkpoint was forged or altered")
	ErrCheckpointWrongKey = errors.New("checkpoint is not signed by the given key: re-signed with another key, or the wrong --key")
)

// openCheckpoint verifies a signed note against v and parses it.
func openCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unknown *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &invalid):
			return Checkpoint{}, ErrCheckpointForged
		case errors.As(err, &unknown):
			// note.Open reports a bad signature by a known key name+hash
			// as invalid; anything else is a signature it cannot check.
			return Checkpoint{}, ErrCheckpointWrongKey
		default:
			return Checkpoint{}, fmt.Errorf("checkpoint is not a signed note: %w", err)
		}
	}
	return parseCheckpointText(n.Text)
}

// GenerateKey returns a new signer key (keep secret) and verifier key
// (publish) in the note key format, named name.
func GenerateKey(name string) (signer, verifier string, err error) {
	return note.GenerateKey(rand.Reader, name)
}

// LoadSigner reads a signer key written by GenerateKey.
func LoadSigner(path string) (note.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read audit signing key: %w", err)
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("audit signing key %s: %w", path, err)
	}
	return s, nil
}

// LoadVerifier accepts a verifier key or the path of a file holding one.
func LoadVerifier(keyOrPath string) (note.Verifier, error) {
	text := keyOrPath
	if b, err := os.ReadFile(keyOrPath); err == nil {
		text = string(b)
	}
	v, err := note.NewVerifier(strings.TrimSpace(text))
	if err != nil {
		return nil, fmt.Errorf("audit verifier key: %w (pass the .pub file written by 'gatehouse logs keygen')", err)
	}
	return v, nil
}
