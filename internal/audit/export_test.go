package audit

import "os"

func openReadOnly(path string) (*os.File, error) { return os.Open(path) }

// submitSync runs fn on the writer goroutine's state while it is idle
// (tests only): it holds the loop by queueing nothing and waiting for the
// queue to drain.
func (w *Writer) submitSync(fn func()) {
	w.testHook <- fn
	<-w.testDone
}
