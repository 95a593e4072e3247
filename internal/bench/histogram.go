package bench

import (
	"math"
	"math/bits"
	"time"
)

// histogram records latencies with bounded relative error, in the manner of
// HdrHistogram: values below 2^subBits ns are exact, above that each power
// of two is split into 2^subBits buckets, so a bucket is at most 1/128 (<1%)
// of its value wide. It has a fixed size, so recording never allocates.
type histogram struct {
	counts [buckets]uint64
	total  uint64
	max    uint64
}

const (
	subBits = 7
	subN    = 1 << subBits
	buckets = (64 - subBits + 1) * subN
)

func bucketOf(v uint64) int {
	if v < subN {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return (shift+1)*subN + int(v>>shift) - subN
}

// bucketValue is the middle of bucket i, in ns.
func bucketValue(i int) uint64 {
	if i < subN {
		return uint64(i)
	}
	shift := i/subN - 1
	lo := uint64(i%subN+subN) << shift
	return lo + (uint64(1)<<shift)/2
}

func (h *histogram) record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)]++
	h.total++
	h.max = max(h.max, v)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// quantile returns the latency below which a fraction q of the recorded
// values lie (0 when nothing was recorded).
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = min(max(rank, 1), h.total)
	if rank == h.total {
		return time.Duration(h.max)
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketValue(i), h.max))
		}
	}
	return time.Duration(h.max)
}
