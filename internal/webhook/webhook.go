// Package webhook delivers JSON notices (incident notices, alerts) to HTTP
// receivers with bounded retries.
package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// DefaultClient bounds every delivery to 5 seconds.
var DefaultClient = &http.Client{Timeout: 5 * time.Second}

// Post sends body as application/json; any 2xx is success. The response
// body is drained (bounded) and discarded.
func Post(ctx context.Context, c *http.Client, url string, body []byte) error {
	if c == nil {
		c = DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return Do(c, req)
}

// Do sends req; any 2xx is success. The response body is drained
// (bounded) and discarded, so the connection can be reused.
func Do(c *http.Client, req *http.Request) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", req.URL.Host, resp.Status)
	}
	return nil
}

// Deliver posts with up to attempts tries, waiting backoff, 2×backoff, …
// between them. It returns the attempt that succeeded (1-based) or the
// last error; onFail, when set, hears of each failed attempt.
func Deliver(ctx context.Context, c *http.Client, url string, body []byte, attempts int, backoff time.Duration,
	onFail func(attempt int, err error)) (int, error) {
	var last error
	for i := range max(attempts, 1) {
		if i > 0 {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(backoff << (i - 1)):
			}
		}
		if last = Post(ctx, c, url, body); last == nil {
			return i + 1, nil
		}
		if onFail != nil {
			onFail(i+1, last)
		}
	}
	return 0, last
}
