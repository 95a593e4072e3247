package revoke

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Reconnection backoff of RedisNotifier.Listen, and its dead-connection
// detection: a PING every healthEvery, the connection given up when nothing
// (message or pong) arrived for two of them.
const (
	minBackoff  = 100 * time.Millisecond
	maxBackoff  = 10 * time.Second
	healthEvery = 5 * time.Second
	redisDialTO = 2 * time.Second
)

// ChannelSuffix is appended to the prefix given to NewRedisNotifier to name
// the pub/sub channel.
const ChannelSuffix = "revocations"

// RedisNotifier propagates revocation notices over Redis pub/sub. Each
// notice is only this process's random origin ID: receivers read the
// entries from the store, so whoever can publish on the channel can make
// replicas poll early and nothing more.
type RedisNotifier struct {
	client  *redis.Client
	channel string
	origin  string
	log     *slog.Logger

	subscribed atomic.Bool
}

var _ Notifier = (*RedisNotifier)(nil)

// NewRedisNotifier connects lazily to the Redis at url
// (redis://[user:password@]host:port/db or rediss:// for TLS) and uses the
// channel prefix+"revocations". Replicas of one deployment must share the
// prefix; distinct deployments on one Redis use distinct prefixes.
func NewRedisNotifier(url, prefix string, logger *slog.Logger) (*RedisNotifier, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		// The parse error may quote the URL, password included.
		return nil, errors.New("revoke: invalid redis URL: want redis://[user:password@]host:port/db")
	}
	opt.DialTimeout = redisDialTO
	opt.ReadTimeout = redisDialTO
	opt.WriteTimeout = redisDialTO
	// One attempt each: Listen has its own backoff, and a notice that does
	// not go out at once is covered by the store poll anyway.
	opt.MaxRetries = -1
	opt.DialerRetries = 1
	if logger == nil {
		logger = slog.Default()
	}
	b := make([]byte, 8)
	crand.Read(b)
	return &RedisNotifier{
		client:  redis.NewClient(opt),
		channel: prefix + ChannelSuffix,
		origin:  hex.EncodeToString(b),
		log:     logger,
	}, nil
}

// Channel returns the pub/sub channel name.
func (n *RedisNotifier) Channel() string { return n.channel }

// Subscribed reports whether Listen currently holds a confirmed subscription.
func (n *RedisNotifier) Subscribed() bool { return n.subscribed.Load() }

// Close releases the connections. Listen returns soon after.
func (n *RedisNotifier) Close() error { return n.client.Close() }

// Notify implements Notifier.
func (n *RedisNotifier) Notify(ctx context.Context) error {
	if err := n.client.Publish(ctx, n.channel, n.origin).Err(); err != nil {
		return fmt.Errorf("publish revocation notice: %w", err)
	}
	return nil
}

// Listen implements Notifier. While Redis is unreachable it retries with
// exponential backoff (with jitter, up to maxBackoff) and logs once when
// the notices stop and once when they resume; the store poll covers the gap.
func (n *RedisNotifier) Listen(ctx context.Context, wake func()) {
	backoff := minBackoff
	down := false
	onSubscribed := func() {
		if down {
			down = false
			n.log.Info("revocation notices resumed", "channel", n.channel)
		}
	}
	for ctx.Err() == nil {
		subscribed, err := n.listenOnce(ctx, wake, onSubscribed)
		n.subscribed.Store(false)
		if ctx.Err() != nil {
			return
		}
		if subscribed {
			backoff = minBackoff
		}
		if !down {
			down = true
			n.log.Warn("revocation notices unavailable; relying on the store poll until redis is back",
				"channel", n.channel, "err", err)
		} else {
			n.log.Debug("revocation notices still unavailable", "channel", n.channel, "err", err)
		}
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// listenOnce subscribes and relays notices until the connection fails. It
// reports whether the subscription was ever confirmed.
func (n *RedisNotifier) listenOnce(ctx context.Context, wake, onSubscribed func()) (bool, error) {
	ps := n.client.Subscribe(ctx)
	defer ps.Close()
	// Receive does not watch ctx; closing the PubSub unblocks it.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()

	if err := ps.Subscribe(ctx, n.channel); err != nil {
		return false, err
	}
	msg, err := ps.ReceiveTimeout(ctx, redisDialTO)
	if err != nil {
		return false, err
	}
	if _, ok := msg.(*redis.Subscription); !ok {
		return false, fmt.Errorf("unexpected reply %T to SUBSCRIBE", msg)
	}
	n.subscribed.Store(true)
	onSubscribed()
	// Whatever was published while we were not listening is lost: catch
	// up from the store now.
	wake()

	lastHeard := time.Now()
	for {
		msg, err := ps.ReceiveTimeout(ctx, healthEvery)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return true, err
			}
			if time.Since(lastHeard) > 2*healthEvery {
				return true, errors.New("no reply from redis: connection presumed dead")
			}
			if err := ps.Ping(ctx); err != nil {
				return true, err
			}
			continue
		}
		lastHeard = time.Now()
		switch m := msg.(type) {
		case *redis.Message:
			if m.Payload != n.origin {
				wake()
			}
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				wake()
			}
		}
	}
}
