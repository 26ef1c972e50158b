package build

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/distillvq/distillvq/distill"
)

// memoryPlan is what a build expects to hold at its peak.
type memoryPlan struct {
	trainRows int   // rows of the training sample read from disk
	bytes     int64 // planned peak
	limit     int64 // the bound planned against; <= 0 for none
	// distillSample is set when the distillation learns from trainRows
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

// maxDistillDocs is the most documents the distillation learns from: it
// numbers them with int32 (teacher lists, candidates, list members), half
// the memory of int64 where it holds the most. A larger collection is
// learned from a random sample of this size and encoded whole.
const maxDistillDocs = 1<<31 - 1

// planMemory sizes the build against o.MaxMemory before any work starts.
// Every size is an int64 product, so shapes of 2^31 vectors and more plan
// without overflow.
//
// What is counted: the ids, list numbers and codes of every document, the
// writer's ordering of them by list (faissio.WriteIVF), one encoding block
// with its rotated copy and the list scores in progress, the centroids.
// The k-means trainer
// reads a training sample (FAISS's 256 points per centroid and per
// codeword, or TrainSize) and streams the documents; when the default
// sample would not fit, it shrinks to what does, down to FAISS's minimum of
// 39 points per centroid. The other trainers hold every document as
// float32; when that does not fit, the distillation learns from as many
// documents as fit (drawn at random) and the rest are encoded with what it
// learned. FAISS's own training also holds FAISS's copy of the lists and,
// for an L2 IVFPQ, its precomputed table (nlist x M x 2^nbits floats). A
// plan that cannot fit is an error that says what would.
func planMemory(o Options, cfg distill.Config, n, d int) (memoryPlan, error) {
	limit := o.MaxMemory
	if limit == 0 {
		limit = availableMemory()
	}
	N, D, nlist := int64(n), int64(d), int64(cfg.Nlist)
	ksub := int64(0)
	if cfg.M > 0 {
		ksub = 1 << cfg.Nbits
	}
	codeSize := 4 * D
	if cfg.M > 0 {
		codeSize = int64(cfg.M*cfg.Nbits+7) / 8
	}
	rows := int64(cfg.TrainSize)
	if rows == 0 {
		rows = int64(DefaultTrainSize(cfg.Nlist, cfg.Nbits*min(cfg.M, 1)))
	}
	rows = min(rows, N)
	fixed := int64(baseBytes) + N*(8+8+4) + N*codeSize +
		blockBytes(N, d, cfg.Nlist) + nlist*D*4
	if o.Train == FAISS {
		fixed += N*(codeSize+8) + nlist*int64(cfg.M)*ksub*4
	}
	perRow := D * 4
	if o.OPQ {
		perRow *= 2 // the rotated copy
	}
	// The PQ training copies its sample (256 per codeword) and computes its
	// residuals beside it.
	pqSample := 2 * min(N, 256*ksub) * D * 4
	plan := memoryPlan{trainRows: int(rows), limit: limit}
	// The planned peak is the live data counted here plus headroom, 15% of
	// the peak, for the Go collector (goMemoryLimit) and for FAISS's and
	// OpenBLAS's own memory; live data may use what the bound leaves.
	peak := func(live int64) int64 { return live * 20 / 17 }
	budget := limit / 20 * 17
	if o.Train != KMeans {
		// Every document, plus the distillation's teacher lists and
		// gradients (a generous 25% more), plus, while the k-means trains,
		// the copy of its sample when it is not all the documents held.
		perDoc := perRow * 5 / 4
		training := func(held int64) int64 {
			if held > rows {
				return rows*perRow + pqSample
			}
			return pqSample
		}
		held := N
		if o.Train == Distill {
			held = min(N, maxDistillDocs)
		}
		plan.trainRows = int(held)
		plan.bytes = peak(fixed + held*perDoc + training(held))
		if limit <= 0 || plan.bytes <= limit {
			plan.distillSample = held < N
			return plan, nil
		}
		// Distillation can learn from a sample of the documents, as the
		// k-means does, and encode the rest with what it learned.
		least := max(39*nlist, ksub, 1000)
		fit := (budget - fixed - training(N)) / perDoc
		if fit <= rows {
			fit = (budget - fixed - training(0)) / perDoc
		}
		fit = min(fit, maxDistillDocs)
		if o.Train == Distill && o.Qrels == nil && fit >= least {
			plan.trainRows, plan.distillSample = int(fit), true
			plan.bytes = peak(fixed + fit*perDoc + training(fit))
			return plan, nil
		}
		return plan, fmt.Errorf("--train %s holds all %d documents in memory: about %s, more than --max-memory %s; --train kmeans streams them and needs about %s",
			o.Train, n, ShowBytes(plan.bytes), ShowBytes(limit), ShowBytes(peak(fixed+rows*perRow+pqSample)))
	}
	plan.bytes = peak(fixed + rows*perRow + pqSample)
	if limit <= 0 || plan.bytes <= limit {
		return plan, nil
	}
	least := min(N, max(39*nlist, ksub))
	if fit := (budget - fixed - pqSample) / perRow; o.TrainSize == 0 && fit >= least {
		plan.trainRows = int(fit)
		plan.bytes = peak(fixed + fit*perRow + pqSample)
		return plan, nil
	}
	return plan, fmt.Errorf("the build needs about %s for %d training rows, more than --max-memory %s; the least it can train with (%d rows, 39 per list) needs %s",
		ShowBytes(plan.bytes), rows, ShowBytes(limit), least, ShowBytes(peak(fixed+least*perRow+pqSample)))
}

// AddMemory is the planned peak memory of Trained.Add encoding rows
// documents, then writing them as a part: the figure to size a worker of a
// distributed build by. It counts the trained index (centroids, codebooks,
// encoding weight, the held documents' lists), each document's id, list
// and code and the writer's ordering of them, one encoding block with its
// rotated copy and the list scores in progress, and the headroom the
// build's own plan keeps (15%).
func AddMemory(t *Trained, rows int) int64 {
	m := t.Model
	N, D, nlist := int64(rows), int64(m.D), int64(m.Nlist)
	codeSize := int64(m.CodeSize())
	live := int64(baseBytes) + nlist*D*4 + int64(len(m.Codebooks)+len(m.EncodeWeight)+len(t.Rotation))*4 +
		int64(len(t.held))*48 + N*(8+8+4+codeSize) +
		blockBytes(N, m.D, m.Nlist)
	return live * 20 / 17
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

// ShowBytes formats a byte count for messages: "2.71 GiB", "544 MiB".
func ShowBytes(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", b)
}
