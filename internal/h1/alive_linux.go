package h1

import (
	"syscall"
	"unsafe"
)

// alive reports whether a pooled connection can carry another request: no
// close from the upstream is pending and no unsolicited bytes wait on it.
// One non-blocking peek; net/http learns the same from the reader
// goroutine it keeps on every connection.
func alive(rc syscall.RawConn) bool {
	if rc == nil {
		return true // not a socket (a test pipe)
	}
	ok := false
	var buf [1]byte
	err := rc.Read(func(fd uintptr) bool {
		// MSG_DONTWAIT: never blocks, so the raw call is safe.
		n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		// 0 bytes is the upstream's FIN, more is data nobody asked for;
		// only "would block" means an open, quiet connection.
		ok = n == ^uintptr(0) && (errno == syscall.EAGAIN || errno == syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && ok
}
