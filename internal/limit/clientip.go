package limit

import "net/netip"

// Default prefix lengths of ClientIPKey. An IPv6 client usually holds a
// whole /64 (SLAAC, privacy addresses), so limiting per address would let
// one client rotate through 2^64 budgets.
const (
	DefaultIPv4Bits = 32
	DefaultIPv6Bits = 64
)

// InvalidIPKey is ClientIPKey's answer for an unknown client address: all
// such requests share one budget rather than escaping limits.
const InvalidIPKey = "ip:invalid"

// ClientIPKey returns the limit key of a client address: the address
// masked to v4Bits (IPv4, including IPv4-mapped IPv6) or v6Bits (IPv6),
// as "ip:" and the prefix, e.g. "ip:203.0.113.7/32" or
// "ip:2001:db8:1:2::/64". A zone is dropped. Bits out of range (≤ 0 or
// beyond the family's length) mean the defaults. It allocates only the
// returned string.
func ClientIPKey(ip netip.Addr, v4Bits, v6Bits int) string {
	if !ip.IsValid() {
		return InvalidIPKey
	}
	ip = ip.Unmap().WithZone("")
	bits := v6Bits
	if ip.Is4() {
		bits = v4Bits
		if bits <= 0 || bits > 32 {
			bits = DefaultIPv4Bits
		}
	} else if bits <= 0 || bits > 128 {
		bits = DefaultIPv6Bits
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return InvalidIPKey
	}
	var buf [64]byte
	b := append(buf[:0], "ip:"...)
	b = p.AppendTo(b)
	return string(b)
}
