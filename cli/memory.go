package cli

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"github.com/distillvq/distillvq/distill"
	"github.com/distillvq/distillvq/faissio"
)

// memoryPlan is what a build expects to hold at its peak.
type memoryPlan struct {
	trainRows int   // rows of the training sample read from disk
	bytes     int64 // planned peak
	limit     int64 // the bound planned against; <= 0 for none
	// distillSample is set when --train distill learns from trainRows
	// documents rather than all of them, to fit.
	distillSample bool
}

// goMemoryLimit is the Go collector's soft limit for a build planned
// against limit: the heap may grow past the live data the plan counts (at
// most 85% of limit) until this, which leaves FAISS's and OpenBLAS's own
// memory room below limit.
func goMemoryLimit(limit int64) int64 { return limit - baseBytes - limit/20 }

// baseBytes is what the process holds before any data: the Go runtime,
// FAISS and OpenBLAS's buffers.
const baseBytes = 100 << 20

// planMemory sizes the build against o.MaxMemory before any work starts.
// The k-means trainer reads a training sample (FAISS's 256 points per
// centroid and per codeword, or --train-size) and streams the documents;
// when the default sample would not fit, it shrinks to what does, down to
// FAISS's minimum of 39 points per centroid. The other trainers hold every
// document as float32; when that does not fit, the distillation learns
// from as many documents as fit (drawn at random) and the rest are encoded
// with what it learned. A plan that cannot fit is an error that says what
// would.
func planMemory(o BuildOptions, cfg distill.Config, n, d int) (memoryPlan, error) {
	limit := o.MaxMemory
	if limit == 0 {
		limit = availableMemory()
	}
	ksub := 0
	if cfg.M > 0 {
		ksub = 1 << cfg.Nbits
	}
	codeSize := 4 * d
	if cfg.M > 0 {
		codeSize = (cfg.M*cfg.Nbits + 7) / 8
	}
	rows := cfg.TrainSize
	if rows == 0 {
		rows = max(256*cfg.Nlist, 256*ksub)
	}
	rows = min(rows, n)
	// Fixed costs: ids, list numbers and codes, ours and FAISS's copy, and
	// one encoding block with its distances to the centroids.
	fixed := int64(baseBytes) + int64(n)*(8+8+8) + 2*int64(n)*int64(codeSize) +
		int64(min(n, encodeBlock(cfg.Nlist, d)))*int64(2*d+cfg.Nlist)*4 + int64(cfg.Nlist)*int64(d)*4
	perRow := int64(d) * 4
	if o.OPQ {
		perRow *= 2 // the rotated copy
	}
	// The PQ training copies its sample (256 per codeword) and computes its
	// residuals beside it.
	pqSample := 2 * int64(min(n, 256*ksub)) * int64(d) * 4
	plan := memoryPlan{trainRows: rows, limit: limit}
	// The planned peak is the live data counted here plus headroom, 15% of
	// the peak, for the Go collector (goMemoryLimit) and for FAISS's and
	// OpenBLAS's own memory; live data may use what the bound leaves.
	peak := func(live int64) int64 { return live * 20 / 17 }
	budget := limit * 17 / 20
	if o.Train != "kmeans" {
		// Every document, plus the distillation's teacher lists and
		// gradients (a generous 25% more), plus, while the k-means trains,
		// the copy of its sample when it is not all the documents held.
		perDoc := perRow * 5 / 4
		training := func(held int) int64 {
			if held > rows {
				return int64(rows)*perRow + pqSample
			}
			return pqSample
		}
		plan.trainRows = n
		plan.bytes = peak(fixed + int64(n)*perDoc + training(n))
		if limit <= 0 || plan.bytes <= limit {
			return plan, nil
		}
		// Distillation can learn from a sample of the documents, as the
		// k-means does, and encode the rest with what it learned.
		least := max(39*cfg.Nlist, ksub, 1000)
		fit := int((budget - fixed - training(n)) / perDoc)
		if fit <= rows {
			fit = int((budget - fixed - training(0)) / perDoc)
		}
		if o.Train == "distill" && o.Qrels == "" && fit >= least {
			plan.trainRows, plan.distillSample = fit, true
			plan.bytes = peak(fixed + int64(fit)*perDoc + training(fit))
			return plan, nil
		}
		return plan, fmt.Errorf("--train %s holds all %d documents in memory: about %s, more than --max-memory %s; --train kmeans streams them and needs about %s",
			o.Train, n, showBytes(plan.bytes), showBytes(limit), showBytes(peak(fixed+int64(rows)*perRow+pqSample)))
	}
	plan.bytes = peak(fixed + int64(rows)*perRow + pqSample)
	if limit <= 0 || plan.bytes <= limit {
		return plan, nil
	}
	least := min(n, max(39*cfg.Nlist, ksub))
	if fit := int((budget - fixed - pqSample) / perRow); o.TrainSize == 0 && fit >= least {
		plan.trainRows = fit
		plan.bytes = peak(fixed + int64(fit)*perRow + pqSample)
		return plan, nil
	}
	return plan, fmt.Errorf("the build needs about %s for %d training rows, more than --max-memory %s; the least it can train with (%d rows, 39 per list) needs %s",
		showBytes(plan.bytes), rows, showBytes(limit), least, showBytes(peak(fixed+int64(least)*perRow+pqSample)))
}

// readSample reads rows distinct documents drawn at random (all of them
// when rows >= Rows), in file order.
func readSample(src *faissio.Source, rows int, seed uint64) (faissio.Matrix, error) {
	m := faissio.Matrix{Rows: min(rows, src.Rows), Cols: src.Cols}
	m.Data = make([]float32, m.Rows*m.Cols)
	if m.Rows == src.Rows {
		return m, src.Read(0, src.Rows, m.Data)
	}
	return m, src.Gather(sampleIndices(src.Rows, m.Rows, seed), m.Data)
}

// sampleIndices draws k of 0..n-1 uniformly without replacement, in
// ascending order, by selection sampling (Knuth's algorithm S): one pass,
// no memory beyond the result.
func sampleIndices(n, k int, seed uint64) []int {
	r := rand.New(rand.NewPCG(seed, 0x736f75726365))
	out := make([]int, 0, k)
	for i := 0; i < n && len(out) < k; i++ {
		if r.IntN(n-i) < k-len(out) {
			out = append(out, i)
		}
	}
	return out
}

// availableMemory is the kernel's MemAvailable, or 0 if unknown.
func availableMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// parseBytes reads a size such as "3GiB", "500MB", "2g" or "1048576";
// "" is 0 (the default) and "none" is -1 (no bound).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	switch s {
	case "":
		return 0, nil
	case "none":
		return -1, nil
	}
	units := []struct {
		suffix string
		mult   int64
	}{{"gib", 1 << 30}, {"mib", 1 << 20}, {"kib", 1 << 10}, {"gb", 1e9}, {"mb", 1e6}, {"kb", 1e3}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}, {"b", 1}}
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a size such as 3GiB or 500MB", s)
	}
	return int64(v * float64(mult)), nil
}

// showBytes formats a byte count for messages.
func showBytes(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", b)
}
