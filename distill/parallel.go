package distill

import (
	"context"
	"runtime/pprof"
	"sync"
	"sync/atomic"
)

// eachJob runs jobs 0..n-1 on up to workers goroutines, each claiming the
// next unclaimed job until none is left, so they meet only at the end.
// newWorker runs once per goroutine, with its number w, and returns the
// function that does one job with that goroutine's own buffers. With one
// worker, or one job, everything runs on the caller's goroutine.
//
// ctx is checked before every job, as FAISS checks its InterruptCallback
// per block: once it is cancelled no further job starts and eachJob
// returns ctx's error when the running ones end. Jobs are sized so that
// one takes well under a second.
//
// Which goroutine does which job varies from run to run; callers keep their
// results independent of it by giving each job a fixed share of the work.
func eachJob(ctx context.Context, n, workers int, newWorker func(w int) func(job int)) error {
	workers = min(workers, n)
	if workers <= 1 {
		if n > 0 {
			do := newWorker(0)
			for j := 0; j < n; j++ {
				if err := ctx.Err(); err != nil {
					return err
				}
				do(j)
			}
		}
		return ctx.Err()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do := newWorker(w)
			for ctx.Err() == nil {
				j := int(next.Add(1) - 1)
				if j >= n {
					return
				}
				do(j)
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// phase runs f under the pprof label phase=name, which the goroutines f
// starts inherit, so that a CPU profile of a build (DISTILLVQ_CPUPROFILE)
// splits its seconds by phase: go tool pprof -tags. Labels cost nothing
// when no profile is taken.
func phase(ctx context.Context, name string, f func()) {
	pprof.Do(ctx, pprof.Labels("phase", name), func(context.Context) { f() })
}
