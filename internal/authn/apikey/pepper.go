package apikey

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/gatehouse/gatehouse/internal/config"
)

const maxPepperFile = 4096

// ErrNoPepper is returned when a key must be hashed but no pepper is set.
var ErrNoPepper = errors.New("apikey: no pepper: set identity.pepper (via ${ENV}) or identity.pepper_file")

// LoadPepper returns the server pepper API keys are hashed with, from
// identity.pepper or the file identity.pepper_file names, surrounding
// whitespace trimmed. The file must not be readable by group or others: a
// pepper anyone on the host can read protects nothing.
func LoadPepper(id config.Identity) ([]byte, error) {
	var p string
	switch {
	case id.Pepper != "" && id.PepperFile != "":
		return nil, errors.New("apikey: set identity.pepper or identity.pepper_file, not both")
	case id.Pepper != "":
		p = strings.TrimSpace(id.Pepper)
	case id.PepperFile != "":
		f, err := os.Open(id.PepperFile)
		if err != nil {
			return nil, fmt.Errorf("apikey: read pepper file: %w", err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("apikey: read pepper file: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("apikey: pepper file %s is not a regular file", id.PepperFile)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			return nil, fmt.Errorf("apikey: pepper file %s is readable or writable by group or others (mode %04o): run chmod 600 %s",
				id.PepperFile, perm, id.PepperFile)
		}
		b, err := io.ReadAll(io.LimitReader(f, maxPepperFile+1))
		if err != nil {
			return nil, fmt.Errorf("apikey: read pepper file: %w", err)
		}
		if len(b) > maxPepperFile {
			return nil, fmt.Errorf("apikey: pepper file %s is larger than 4 KiB; it should hold one random secret", id.PepperFile)
		}
		p = strings.TrimSpace(string(b))
	default:
		return nil, ErrNoPepper
	}
	if len(p) < config.MinPepperBytes {
		return nil, fmt.Errorf("apikey: pepper is too short (%d bytes): use at least %d random bytes, e.g. openssl rand -base64 48",
			len(p), config.MinPepperBytes)
	}
	return []byte(p), nil
}

// hasher computes HMAC-SHA-256(pepper, key). Keyed HMAC states are pooled
// with their buffers: hmac.New pads and hashes the key each time, and
// handing fresh slices to the hash.Hash interface would allocate on every
// request.
type hasher struct {
	pool sync.Pool
}

type macState struct {
	mac     hash.Hash
	scratch []byte
	sum     [sha256.Size]byte
}

func newHasher(pepper []byte) (*hasher, error) {
	if len(pepper) < config.MinPepperBytes {
		return nil, fmt.Errorf("apikey: pepper is too short: use at least %d random bytes", config.MinPepperBytes)
	}
	p := append([]byte(nil), pepper...)
	h := &hasher{}
	h.pool.New = func() any {
		return &macState{mac: hmac.New(sha256.New, p), scratch: make([]byte, 0, 2*KeyLen)}
	}
	return h, nil
}

// compute leaves the MAC of key in st.sum.
func (st *macState) compute(key string) {
	st.scratch = append(st.scratch[:0], key...)
	st.mac.Reset()
	_, _ = st.mac.Write(st.scratch)
	st.mac.Sum(st.sum[:0])
	clear(st.scratch) // no copy of a key outlives the call
}

// hash returns the MAC of key, as stored in store.Credential.Hash.
func (h *hasher) hash(key string) []byte {
	st := h.pool.Get().(*macState)
	defer h.pool.Put(st)
	st.compute(key)
	return append([]byte(nil), st.sum[:]...)
}

// burn spends the work of one verification, for timing parity.
func (h *hasher) burn(key string) {
	st := h.pool.Get().(*macState)
	st.compute(key)
	h.pool.Put(st)
}

// verify reports, in constant time, whether key's MAC equals want.
func (h *hasher) verify(key string, want []byte) bool {
	st := h.pool.Get().(*macState)
	defer h.pool.Put(st)
	st.compute(key)
	return hmac.Equal(st.sum[:], want)
}
