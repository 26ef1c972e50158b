package distill

import (
	"sync"
	"sync/atomic"
)

// eachJob runs jobs 0..n-1 on up to workers goroutines, each claiming the
// next unclaimed job until none is left, so they meet only at the end.
// newWorker runs once per goroutine, with its number w, and returns the
// function that does one job with that goroutine's own buffers. With one
// worker, or one job, everything runs on the caller's goroutine.
//
// Which goroutine does which job varies from run to run; callers keep their
// results independent of it by giving each job a fixed share of the work.
func eachJob(n, workers int, newWorker func(w int) func(job int)) {
	workers = min(workers, n)
	if workers <= 1 {
		if n > 0 {
			do := newWorker(0)
			for j := 0; j < n; j++ {
				do(j)
			}
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do := newWorker(w)
			for {
				j := int(next.Add(1) - 1)
				if j >= n {
					return
				}
				do(j)
			}
		}()
	}
	wg.Wait()
}
