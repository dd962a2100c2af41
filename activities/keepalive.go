package activities

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
)

// KeepAlive returns the worker interceptor that makes every activity
// scheduled with a heartbeat timeout heartbeat while it runs. Without it a
// worker killed in the middle of a ThingSpace or Rev.io call is noticed only
// when the start-to-close timeout expires (minutes, sized for a call waiting
// its turn under the rate limit), and the bulk change sends nothing
// meanwhile; with it Temporal retries the call on another worker once the
// heartbeat timeout (seconds) passes. The heartbeat says the process is
// alive, not that the call progresses: start-to-close still bounds a call.
func KeepAlive() interceptor.WorkerInterceptor { return &keepAlive{} }

type keepAlive struct {
	interceptor.WorkerInterceptorBase
}

func (*keepAlive) InterceptActivity(
	_ context.Context,
	next interceptor.ActivityInboundInterceptor,
) interceptor.ActivityInboundInterceptor {
	i := &keepAliveInbound{}
	i.Next = next
	return i
}

type keepAliveInbound struct {
	interceptor.ActivityInboundInterceptorBase
}

func (i *keepAliveInbound) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	info := activity.GetInfo(ctx)
	if info.IsLocalActivity || info.HeartbeatTimeout <= 0 {
		return i.Next.ExecuteActivity(ctx, in)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		// Three beats per timeout: one lost or late beat is not a death.
		tick := time.NewTicker(info.HeartbeatTimeout / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return i.Next.ExecuteActivity(ctx, in)
}
