package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ghCounts is what Gatehouse itself counted, from its /metrics. It cross-
// checks the load generator: wrk does not count 3xx responses as failures,
// and Gatehouse's own counters see every response it sent.
type ghCounts struct {
	ok int64 // allowed and 2xx
	// clientGone are allowed requests with a 4xx status. The bench upstream
	// only ever answers 200 and Gatehouse counts its own refusals as deny,
	// so these are 499s: the client closed the connection mid-request, as
	// wrk does with its requests in flight when its time is up.
	clientGone int64
	notOK      int64 // everything else: denials, errors, 3xx, 5xx
}

var requestsLine = regexp.MustCompile(`^gatehouse_requests_total\{([^}]*)\}\s+(\S+)`)
var labelPair = regexp.MustCompile(`(\w+)="([^"]*)"`)

// scrapeGatehouse reads gatehouse_requests_total from the admin listener.
func scrapeGatehouse(ctx context.Context, url string) (ghCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ghCounts{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ghCounts{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ghCounts{}, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return parseRequestCounts(io.LimitReader(resp.Body, 16<<20))
}

func parseRequestCounts(r io.Reader) (ghCounts, error) {
	var c ghCounts
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "gatehouse_requests_total{") {
			continue
		}
		m := requestsLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return c, fmt.Errorf("metrics line %q: %w", line, err)
		}
		labels := map[string]string{}
		for _, kv := range labelPair.FindAllStringSubmatch(m[1], -1) {
			labels[kv[1]] = kv[2]
		}
		switch class, allow := labels["status_class"], labels["decision"] == "allow"; {
		case allow && class == "2xx":
			c.ok += int64(v)
		case allow && class == "4xx":
			c.clientGone += int64(v)
		default:
			c.notOK += int64(v)
		}
	}
	return c, sc.Err()
}
