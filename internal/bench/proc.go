package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// proc is a child process the harness started and must stop. Its stdout
// and stderr go to a log file in the run's temp dir (the first stdout line
// can be read as the child's "ready" announcement first).
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	stdin   io.WriteCloser
	done    chan struct{} // closed when the process has exited
	waitErr error
}

// startProc starts path with args and extra env. When announce is set, it
// waits (up to timeout) for the child's first stdout line and returns it.
func startProc(name, logPath, path string, args, env []string, announce bool, timeout time.Duration) (*proc, string, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logf
	setProcAttrs(cmd)
	var stdout io.ReadCloser
	if announce {
		if stdout, err = cmd.StdoutPipe(); err != nil {
			logf.Close()
			return nil, "", err
		}
	} else {
		cmd.Stdout = logf
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		logf.Close()
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, stdin: stdin, done: make(chan struct{})}
	lines := make(chan string, 1)
	if announce {
		go func() {
			br := bufio.NewReader(stdout)
			line, _ := br.ReadString('\n')
			lines <- strings.TrimSpace(line)
			// Keep draining so a chatty child never blocks on a full pipe.
			_, _ = io.Copy(logf, br)
		}()
	}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	if !announce {
		return p, "", nil
	}
	select {
	case line := <-lines:
		if line == "" {
			<-p.done
			return nil, "", fmt.Errorf("%s exited before it was ready: %v\n%s", name, p.waitErr, p.logTail(20))
		}
		return p, line, nil
	case <-time.After(timeout):
		p.stop(time.Second)
		return nil, "", fmt.Errorf("%s was not ready after %s\n%s", name, timeout, p.logTail(20))
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the child to go (SIGTERM and closing its stdin), waits up to
// grace, then kills it. It returns once the process has exited.
func (p *proc) stop(grace time.Duration) {
	if p == nil || p.exited() {
		return
	}
	_ = p.stdin.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// logTail returns the last n lines of the child's log, indented.
func (p *proc) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil || len(b) == 0 {
		return "  (" + p.name + " wrote no log)"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var sb strings.Builder
	for _, l := range lines {
		sb.WriteString("  ")
		sb.Write(l)
		sb.WriteByte('\n')
	}
	return strings.TrimRight(sb.String(), "\n")
}

// announced parses "ready k=v k=v" lines from a child.
func announced(line string) (map[string]string, error) {
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != "ready" {
		return nil, fmt.Errorf("unexpected announcement %q", line)
	}
	m := map[string]string{}
	for _, kv := range f[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, errors.New("bad announcement " + line)
		}
		m[k] = v
	}
	return m, nil
}
