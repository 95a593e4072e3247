package gateway

import (
	"net/netip"
	"strings"
)

// TrustedProxies decides whose X-Forwarded-For is believed.
type TrustedProxies []netip.Prefix

func (t TrustedProxies) contains(a netip.Addr) bool {
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP returns the address of the client that made the request. The
// peer's own address is the answer unless the peer is a trusted proxy; then
// X-Forwarded-For is walked from the right, skipping trusted hops, and the
// first untrusted address wins. Walking from the left would let any client
// choose its own IP by sending a forged header.
func (t TrustedProxies) ClientIP(remoteAddr string, xff []string) netip.Addr {
	peer := parseRemote(remoteAddr)
	if len(t) == 0 || !peer.IsValid() || !t.contains(peer) || len(xff) == 0 {
		return peer
	}
	client := peer
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				// A malformed hop ends the trusted chain: believe nothing
				// to its left.
				return client
			}
			a = a.Unmap()
			client = a
			if !t.contains(a) {
				return a
			}
		}
	}
	return client
}

func parseRemote(remoteAddr string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(remoteAddr); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

// clientIPString is ClientIP as text. Without trusted proxies the peer's
// address is sliced out of RemoteAddr, which costs no allocation.
func (t TrustedProxies) clientIPString(remoteAddr string, xff []string) string {
	if len(t) == 0 {
		if i := strings.LastIndexByte(remoteAddr, ':'); i > 0 {
			host := remoteAddr[:i]
			if host[0] == '[' {
				host = host[1 : len(host)-1]
			}
			if !strings.HasPrefix(host, "::ffff:") {
				return host
			}
		}
	}
	return t.ClientIP(remoteAddr, xff).String()
}
