package server

import (
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/gatehouse/gatehouse/internal/gateway"
)

// debounce collapses the burst of events an editor's save produces (write,
// chmod, rename) into one reload.
const debounce = 300 * time.Millisecond

// watcher reloads when a config or spec file changes. It watches the
// folders, not the files, because editors and config managers replace
// files by rename, which ends a watch on the file itself.
type watcher struct {
	log    *slog.Logger
	fs     *fsnotify.Watcher
	reload func()

	mu    sync.Mutex
	files map[string]bool
	dirs  map[string]bool
	timer *time.Timer
	stop  chan struct{}
}

func newWatcher(log *slog.Logger, reload func()) (*watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &watcher{log: log, fs: fw, reload: reload, files: map[string]bool{}, dirs: map[string]bool{}, stop: make(chan struct{})}
	go w.loop()
	return w, nil
}

func watchedFiles(rt *gateway.Runtime) []string {
	files := append([]string(nil), rt.Config.Files...)
	for _, a := range rt.Config.APIs {
		files = append(files, a.Spec)
	}
	// A config folder also reloads when a new file appears in it.
	for _, f := range rt.Config.Files {
		files = append(files, filepath.Join(filepath.Dir(f), "*"))
	}
	return files
}

// set replaces the watched file list (after each successful load).
func (w *watcher) set(files []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.files = map[string]bool{}
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			continue
		}
		w.files[abs] = true
		dir := filepath.Dir(abs)
		if !w.dirs[dir] {
			if err := w.fs.Add(dir); err != nil {
				w.log.Warn("cannot watch folder", "dir", dir, "error", err.Error())
				continue
			}
			w.dirs[dir] = true
		}
	}
}

func (w *watcher) relevant(name string) bool {
	abs, err := filepath.Abs(name)
	if err != nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.files[abs] {
		return true
	}
	ext := filepath.Ext(abs)
	return w.files[filepath.Join(filepath.Dir(abs), "*")] && (ext == ".yaml" || ext == ".yml")
}

func (w *watcher) loop() {
	for {
		select {
		case <-w.stop:
			return
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod || !w.relevant(ev.Name) {
				continue
			}
			w.mu.Lock()
			if w.timer != nil {
				w.timer.Stop()
			}
			w.timer = time.AfterFunc(debounce, w.reload)
			w.mu.Unlock()
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			w.log.Warn("config watch error", "error", err.Error())
		}
	}
}

func (w *watcher) close() {
	close(w.stop)
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
	_ = w.fs.Close()
}
