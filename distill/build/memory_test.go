package build

import (
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/distillvq/distillvq/distill"
)

func TestSampleIndices(t *testing.T) {
	const n, k, trials = 50, 10, 4000
	count := make([]int, n)
	for s := range uint64(trials) {
		idx := sampleIndices(n, k, s)
		if len(idx) != k || !slices.IsSorted(idx) || len(slices.Compact(slices.Clone(idx))) != k || idx[0] < 0 || idx[k-1] >= n {
			t.Fatalf("seed %d: %v is not %d sorted distinct indices below %d", s, idx, k, n)
		}
		for _, i := range idx {
			count[i]++
		}
	}
	// Each index is drawn with probability k/n: 800 of 4000, sd ≈ 25.
	for i, c := range count {
		if math.Abs(float64(c)-trials*k/n) > 5*math.Sqrt(trials*k/n*(1-float64(k)/n)) {
			t.Errorf("index %d drawn %d times, want about %d", i, c, trials*k/n)
		}
	}
	if got := sampleIndices(5, 9, 1); !slices.Equal(got, []int{0, 1, 2, 3, 4}) {
		t.Errorf("k > n: %v", got)
	}
}

// TestPlanMemory checks that the k-means plan shrinks its training sample
// to fit, never below 39 points per list, and that other trainers say what
// would fit instead.
func TestPlanMemory(t *testing.T) {
	cfg := distill.Config{Nlist: 4096, M: 64, Nbits: 8}
	const n, d = 1_000_000, 768
	o := Options{Train: KMeans, MaxMemory: 3 << 30}
	p, err := planMemory(o, cfg, n, d)
	if err != nil {
		t.Fatal(err)
	}
	if p.bytes > 3<<30 || p.trainRows >= n || p.trainRows < 39*4096 {
		t.Errorf("1M x 768 in 3 GiB: plan %+v", p)
	}
	t.Logf("1M x 768, nlist 4096, M 64 in 3 GiB: %d training rows, %s planned", p.trainRows, ShowBytes(p.bytes))
	if _, err := planMemory(Options{Train: KMeans, MaxMemory: 200 << 20}, cfg, n, d); err == nil || !strings.Contains(err.Error(), "39 per list") {
		t.Errorf("200 MiB: %v", err)
	}
	if p, err := planMemory(Options{Train: Distill, MaxMemory: 3 << 30}, cfg, n, d); err != nil || !p.distillSample || p.bytes > 3<<30 || p.trainRows >= n {
		t.Errorf("distill in 3 GiB: %+v, %v", p, err)
	} else {
		t.Logf("distill in 3 GiB: learns from %d documents, %s planned", p.trainRows, ShowBytes(p.bytes))
	}
	for _, o := range []Options{{Train: Distill, Qrels: [][]int64{{1}}, MaxMemory: 3 << 30}, {Train: FAISS, MaxMemory: 3 << 30}} {
		if _, err := planMemory(o, cfg, n, d); err == nil || !strings.Contains(err.Error(), "--train kmeans streams") {
			t.Errorf("%s in 3 GiB: %v", o.Train, err)
		}
	}
	if p, err := planMemory(Options{Train: KMeans, MaxMemory: -1}, cfg, n, d); err != nil || p.trainRows != n {
		t.Errorf("no bound: %+v, %v", p, err)
	}
}

// TestPlanMemoryHugeShapes plans builds of 3 billion vectors: every size is
// an int64 product, so the plan neither overflows nor goes negative, and a
// bound too small says so in positive sizes.
func TestPlanMemoryHugeShapes(t *testing.T) {
	cfg := distill.Config{Nlist: 65536, M: 64, Nbits: 8}
	const n, d = 3_000_000_000, 768
	p, err := planMemory(Options{Train: KMeans, MaxMemory: -1}, cfg, n, d)
	if err != nil {
		t.Fatal(err)
	}
	// The codes alone are 64 bytes a vector; ids, lists and the writer's
	// ordering 20 more.
	if min := int64(n) * (64 + 20); p.bytes < min {
		t.Errorf("3e9 x 768: plan %d bytes, below the %d its codes and ids take", p.bytes, min)
	}
	_, err = planMemory(Options{Train: KMeans, MaxMemory: 64 << 30}, cfg, n, d)
	if err == nil || regexp.MustCompile(`[^-]-[0-9]`).MatchString(err.Error()) {
		t.Errorf("3e9 x 768 in 64 GiB: %v", err)
	}
	if p, err := planMemory(Options{Train: Distill, MaxMemory: 1 << 50}, cfg, n, d); err != nil || p.trainRows > 1<<31-1 {
		t.Errorf("distilling 3e9 x 768 within 1 PiB: learns from %d documents (at most 2^31-1), %v", p.trainRows, err)
	}
}
