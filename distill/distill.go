package distill

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/distillvq/distillvq/faissio"
)

// DistillConfig sets up Distill-VQ training. Zero values take the defaults
// documented on each field.
type DistillConfig struct {
	// Queries are the training queries. PseudoQueries documents are drawn
	// as further queries, each with its own document excluded from its
	// candidates; default min(20000, n/5), -1 for none. On GloVe 100k with
	// 10k word queries, 20k pseudo-queries raised R10@10 at nprobe 16 from
	// .547 to .571.
	Queries       faissio.Matrix
	PseudoQueries int
	// Qrels optionally lists labelled positive documents (rows) per training
	// query; they join the query's candidates.
	Qrels [][]int32
	// Val is the number of training queries held out to measure recall
	// during training; default min(500, queries/10); -1 for none.
	Val       int
	ValNprobe int // default max(1, nlist/16)

	TopK int // teacher's top documents per query, default 200
	// TopKSample, when positive, draws this many of the Top-K afresh for
	// each step instead of using all K (the paper's Top-K^n sampling).
	TopKSample int
	// Negatives picks the candidates besides the teacher's Top-K:
	// "inbatch" (default: InBatch documents drawn from the other queries'
	// Top-K in the batch), "none" (Top-K only), "random" (InBatch random
	// documents).
	Negatives string
	InBatch   int // default 200

	Loss    string // listnet (default), kl, mse, margin-mse, ranknet
	IVFLoss string // "list" (default: softmax over all lists) or "doc" (the paper's)
	// Temperature in units of the median spread of the teacher's Top-K
	// scores (best minus K-th); default 0.2 (on GloVe 100k, R10@10 at
	// nprobe 16 was .493 at 0.05, .534 at 0.2, .540 at 0.4).
	Temperature float64
	// IVFWeight multiplies the IVF loss; 0 scales it to the PQ loss on the
	// first batch, as the reference code does.
	IVFWeight float64

	// Encode is how documents get their PQ codes, in training and at export:
	// "weighted" (default for inner product) minimises the expected error of
	// the query score, (u-û)ᵀE[qqᵀ](u-û), over the training queries; "l2"
	// is FAISS's nearest codeword. For L2 search only "l2" is used.
	Encode string

	// RefreshEvery is the number of steps between re-encodings of every
	// document with the current parameters; 0 means once per epoch.
	RefreshEvery int

	Epochs int // default 8
	Batch  int // queries per step, default 256
	// LRIVF and LRPQ are Adam learning rates in units of the RMS of the
	// document coordinates; default 0.01 for inner product (0.005 and 0.03
	// measured worse on GloVe), 0.003 for L2 (0.01 lost recall on
	// siftsmall at nprobe 16).
	LRIVF, LRPQ float64
	Seed        uint64
	// Progress is called after every epoch.
	Progress func(EpochStats)
}

// EpochStats is one point of the training curve.
type EpochStats struct {
	Epoch, Epochs int
	LossPQ        float64 `json:"loss_pq"`
	LossIVF       float64 `json:"loss_ivf"`
	// ValRecall is the 10-recall@10 of the held-out queries at ValNprobe,
	// against the teacher; -1 when no queries are held out.
	ValRecall float64       `json:"val_recall"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	Left      time.Duration `json:"left_ns"`
}

// Check reports option values that are wrong whatever the data, so a
// command line can be refused before any work.
func (c DistillConfig) Check() error {
	c.Queries = faissio.Matrix{Rows: 1}
	return c.defaults(1, 1, faissio.InnerProduct)
}

func (c *DistillConfig) defaults(n, nlist int, metric faissio.Metric) error {
	set := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	set(&c.PseudoQueries, min(20000, max(1, n/5)))
	if c.Queries.Rows == 0 && c.PseudoQueries < 0 {
		return fmt.Errorf("no training queries: give queries or allow pseudo-queries")
	}
	set(&c.TopK, 200)
	set(&c.InBatch, 200)
	set(&c.Epochs, 8)
	set(&c.Batch, 256)
	set(&c.ValNprobe, max(1, nlist/16))
	if c.Temperature == 0 {
		c.Temperature = 0.2
	}
	lr := 0.01
	if metric == faissio.L2 {
		lr = 0.003
	}
	if c.LRIVF == 0 {
		c.LRIVF = lr
	}
	if c.LRPQ == 0 {
		c.LRPQ = lr
	}
	if c.Negatives == "" {
		c.Negatives = "inbatch"
	}
	if c.Loss == "" {
		c.Loss = "listnet"
	}
	if c.IVFLoss == "" {
		c.IVFLoss = "list"
	}
	if c.Encode == "" {
		c.Encode = "weighted"
	}
	switch {
	case c.Negatives != "inbatch" && c.Negatives != "none" && c.Negatives != "random":
		return fmt.Errorf("negatives %q: want inbatch, none or random", c.Negatives)
	case c.Encode != "weighted" && c.Encode != "l2":
		return fmt.Errorf("encode %q: want weighted or l2", c.Encode)
	case c.IVFLoss != "list" && c.IVFLoss != "doc":
		return fmt.Errorf("IVF loss %q: want list or doc", c.IVFLoss)
	case c.TopK < 1 || c.Epochs < 1 || c.Batch < 1:
		return fmt.Errorf("top-k, epochs and batch must be at least 1")
	case c.InBatch < 0 || c.TopKSample < 0 || c.RefreshEvery < 0:
		return fmt.Errorf("in-batch, top-k sample and refresh interval must not be negative")
	case c.TopK > 1<<16 || c.InBatch > 1<<16:
		return fmt.Errorf("top-k and in-batch are at most 65536 candidates each")
	case c.Temperature < 0 || c.LRIVF < 0 || c.LRPQ < 0 || c.IVFWeight < 0:
		return fmt.Errorf("temperature, learning rates and IVF weight must not be negative")
	}
	_, err := LossByName(c.Loss)
	return err
}

// trainer is the state of one distillation run.
type trainer struct {
	cfg     DistillConfig
	docs    faissio.Matrix
	metric  faissio.Metric
	d, M    int
	nlist   int
	ksub    int
	dsub    int
	lists   []int32 // fixed doc -> list assignment
	codes   []uint8 // N*M codeword indices, refreshed every epoch
	model   *Model  // Centroids and Codebooks are the parameters trained
	loss    Loss
	temp    float64
	ivfW    float64
	members [][]int32 // documents of each list
	fresh   bool      // codes match the current parameters
}

// Distill trains init's centroids and codebooks so that search over the
// quantized documents ranks like exact search over docs (Distill-VQ). Each
// document stays in its list from lists (the assignment of the initial
// index) during training. It returns a new model and the training curve.
//
// Training stops with ctx's error when ctx is cancelled, at the next step.
func Distill(ctx context.Context, docs faissio.Matrix, init *Model, lists []int64, cfg DistillConfig) (*Model, []EpochStats, error) {
	if err := init.Validate(); err != nil {
		return nil, nil, err
	}
	if err := cfg.defaults(docs.Rows, init.Nlist, init.Metric); err != nil {
		return nil, nil, err
	}
	if cfg.Queries.Rows > 0 && cfg.Queries.Cols != docs.Cols {
		return nil, nil, fmt.Errorf("training queries have d=%d but documents have d=%d", cfg.Queries.Cols, docs.Cols)
	}
	if docs.Rows < 2 {
		return nil, nil, fmt.Errorf("distillation needs at least 2 documents, got %d", docs.Rows)
	}
	if docs.Cols != init.D || len(lists) != docs.Rows {
		return nil, nil, fmt.Errorf("%d lists for %d documents of d=%d, model d=%d", len(lists), docs.Rows, docs.Cols, init.D)
	}
	for i, l := range lists {
		if l < 0 || l >= int64(init.Nlist) {
			return nil, nil, fmt.Errorf("document %d is in list %d, outside 0..%d", i, l, init.Nlist-1)
		}
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x64697374696c6c))
	m := &Model{D: init.D, Metric: init.Metric, Nlist: init.Nlist, M: init.M, Nbits: init.Nbits,
		Centroids: slices.Clone(init.Centroids), Codebooks: slices.Clone(init.Codebooks)}
	t := newTrainer(cfg, docs, m, lists)
	t.loss, _ = LossByName(cfg.Loss)

	// Training queries: the given ones, then documents standing in for
	// queries.
	queries, exclude := cfg.Queries, []int32(nil)
	if np := min(cfg.PseudoQueries, docs.Rows); np > 0 {
		nq := cfg.Queries.Rows
		queries = faissio.Matrix{Rows: nq + np, Cols: docs.Cols, Data: make([]float32, (nq+np)*docs.Cols)}
		copy(queries.Data, cfg.Queries.Data)
		exclude = make([]int32, nq+np)
		for i := range nq {
			exclude[i] = -1
		}
		for i, r := range rng.Perm(docs.Rows)[:np] {
			copy(queries.Row(nq+i), docs.Row(r))
			exclude[nq+i] = int32(r)
		}
	}
	teacher := ExactTopK(docs, queries, cfg.TopK, t.metric, exclude)
	K := teacher.K

	// Temperature in units of the median spread of the teacher's Top-K.
	spreads := make([]float64, queries.Rows)
	for i := range spreads {
		spreads[i] = float64(teacher.Scores[i*K] - teacher.Scores[i*K+K-1])
	}
	sort.Float64s(spreads)
	t.temp = cfg.Temperature * math.Max(spreads[len(spreads)/2], 1e-12)

	order := rng.Perm(queries.Rows)
	nval := cfg.Val
	if nval == 0 {
		nval = min(500, queries.Rows/10)
	}
	nval = max(0, min(nval, queries.Rows-1))
	val, train := order[:nval], order[nval:]
	if cfg.Encode == "weighted" && t.metric == faissio.InnerProduct && m.M > 0 {
		m.EncodeWeight = SecondMoment(encodeQueries(queries, train, exclude))
	}

	rms := coordinateRMS(docs)
	optO := newAdam(len(m.Centroids), cfg.LRIVF*rms)
	optC := newAdam(len(m.Codebooks), cfg.LRPQ*rms)
	stepsPerEpoch := (len(train) + cfg.Batch - 1) / cfg.Batch
	totalSteps := stepsPerEpoch * cfg.Epochs
	warm := max(1, totalSteps/10)

	// Gradients are summed in a fixed number of shards, each over a fixed
	// share of the batch, then added in shard order: the result does not
	// depend on how many goroutines run them.
	const shards = 4
	workers := min(runtime.GOMAXPROCS(0), shards)
	grads := make([]*workerGrad, shards)
	for s := range grads {
		grads[s] = &workerGrad{gO: make([]float64, len(m.Centroids)), gC: make([]float64, len(m.Codebooks))}
	}

	// The model returned is the best by held-out recall, the starting point
	// included, so distillation never hands back a model that validates worse
	// than k-means.
	var curve []EpochStats
	best := -1.0
	bestCentroids, bestCodebooks := slices.Clone(m.Centroids), slices.Clone(m.Codebooks)
	if len(val) > 0 {
		t.refreshCodes()
		r := t.valRecall(queries, val, teacher, exclude)
		curve = append(curve, EpochStats{Epochs: cfg.Epochs, ValRecall: r})
		best = r
	}
	start := time.Now()
	step := 0
	for ep := 0; ep < cfg.Epochs; ep++ {
		if !t.fresh {
			t.refreshCodes()
		}
		rng.Shuffle(len(train), func(i, j int) { train[i], train[j] = train[j], train[i] })
		var sumPQ, sumIVF float64
		for b0 := 0; b0 < len(train); b0 += cfg.Batch {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			batch := train[b0:min(b0+cfg.Batch, len(train))]
			if cfg.RefreshEvery > 0 && step > 0 && step%cfg.RefreshEvery == 0 && !t.fresh {
				t.refreshCodes()
			}
			cands := t.candidates(batch, teacher, queries, exclude, rng)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for s := w; s < shards; s += workers {
						g := grads[s]
						g.reset()
						for i := s; i < len(batch); i += shards {
							t.queryGrad(queries.Row(batch[i]), cands[i], g)
						}
					}
				}(w)
			}
			wg.Wait()
			var lpq, livf float64
			for _, g := range grads[1:] {
				grads[0].add(g)
			}
			lpq, livf = grads[0].lossPQ, grads[0].lossIVF
			if t.ivfW == 0 {
				t.ivfW = cfg.IVFWeight
				if t.ivfW == 0 {
					t.ivfW = 1
					if m.M > 0 && livf > 0 {
						t.ivfW = lpq / livf
					}
				}
			}
			// The IVF gradient was accumulated apart so it can be weighted.
			g := grads[0]
			inv := 1 / float64(len(batch))
			for i := range g.gO {
				g.gO[i] = (g.gO[i] + t.ivfW*g.gOivf[i]) * inv
			}
			for i := range g.gC {
				g.gC[i] *= inv
			}
			lr := schedule(step, warm, totalSteps)
			optO.step(m.Centroids, g.gO, lr)
			t.fresh = false
			if m.M > 0 {
				optC.step(m.Codebooks, g.gC, lr)
			}
			step++
			sumPQ += lpq * inv
			sumIVF += livf * inv
		}
		st := EpochStats{Epoch: ep + 1, Epochs: cfg.Epochs, LossPQ: sumPQ / float64(stepsPerEpoch),
			LossIVF: sumIVF / float64(stepsPerEpoch), ValRecall: -1, Elapsed: time.Since(start)}
		st.Left = time.Duration(float64(st.Elapsed) / float64(ep+1) * float64(cfg.Epochs-ep-1))
		if len(val) > 0 {
			if !t.fresh {
				t.refreshCodes()
			}
			st.ValRecall = t.valRecall(queries, val, teacher, exclude)
			if st.ValRecall > best {
				best = st.ValRecall
				copy(bestCentroids, m.Centroids)
				copy(bestCodebooks, m.Codebooks)
			}
		} else {
			copy(bestCentroids, m.Centroids)
			copy(bestCodebooks, m.Codebooks)
		}
		curve = append(curve, st)
		if cfg.Progress != nil {
			cfg.Progress(st)
		}
	}
	m.Centroids, m.Codebooks = bestCentroids, bestCodebooks
	return m, curve, nil
}

// encodeQueries picks the queries whose second moment weights the
// encoding: the real training queries when there are any (they are the
// distribution searches come from), else the pseudo-queries; held-out
// queries never, so validation judges an encoder it did not shape.
func encodeQueries(queries faissio.Matrix, train []int, exclude []int32) faissio.Matrix {
	var rows []int
	for _, qi := range train {
		if exclude == nil || exclude[qi] < 0 {
			rows = append(rows, qi)
		}
	}
	if len(rows) == 0 {
		rows = train
	}
	out := faissio.Matrix{Rows: len(rows), Cols: queries.Cols, Data: make([]float32, len(rows)*queries.Cols)}
	for i, qi := range rows {
		copy(out.Row(i), queries.Row(qi))
	}
	return out
}

// newTrainer sets up the training state of model m over docs, each document
// in its list from lists.
func newTrainer(cfg DistillConfig, docs faissio.Matrix, m *Model, lists []int64) *trainer {
	t := &trainer{cfg: cfg, docs: docs, metric: m.Metric, d: m.D, M: m.M, nlist: m.Nlist, model: m,
		lists: make([]int32, docs.Rows), members: make([][]int32, m.Nlist)}
	if m.M > 0 {
		t.ksub, t.dsub = m.Ksub(), m.Dsub()
	}
	for i, l := range lists {
		t.lists[i] = int32(l)
		t.members[l] = append(t.members[l], int32(i))
	}
	return t
}

// schedule is the learning-rate factor: linear warm-up, then linear decay.
func schedule(step, warm, total int) float64 {
	if step < warm {
		return float64(step+1) / float64(warm)
	}
	return math.Max(0, float64(total-step)/float64(max(1, total-warm)))
}

func coordinateRMS(x faissio.Matrix) float64 {
	var s float64
	for _, v := range x.Data {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s / float64(max(1, len(x.Data))))
}

// refreshCodes re-encodes every document's residual with the current
// centroids and codebooks (hard assignment, forward pass of the STE).
func (t *trainer) refreshCodes() {
	if t.M == 0 {
		return
	}
	t.fresh = true
	if t.codes == nil {
		t.codes = make([]uint8, t.docs.Rows*t.M)
	}
	lists := make([]int64, len(t.lists))
	for i, l := range t.lists {
		lists[i] = int64(l)
	}
	t.model.encodeIndices(t.docs, lists, t.codes)
}

// candidate is one document scored for a query, with its teacher score.
type candidate struct {
	doc int32
	t   float32
}

// candidates builds each batch query's candidate set: its teacher Top-K,
// labelled positives, and negatives per cfg.Negatives.
func (t *trainer) candidates(batch []int, teacher *Teacher, queries faissio.Matrix, exclude []int32, rng *rand.Rand) [][]candidate {
	K := teacher.K
	out := make([][]candidate, len(batch))
	for i, qi := range batch {
		c := make([]candidate, 0, K+t.cfg.InBatch)
		seen := make(map[int32]struct{}, K+t.cfg.InBatch)
		ranks := rankRange(K)
		if n := t.cfg.TopKSample; n > 0 && n < K {
			ranks = rng.Perm(K)[:n]
		}
		for _, r := range ranks {
			id := teacher.IDs[qi*K+r]
			c = append(c, candidate{id, teacher.Scores[qi*K+r]})
			seen[id] = struct{}{}
		}
		q := queries.Row(qi)
		add := func(id int32) {
			if _, dup := seen[id]; dup || (exclude != nil && exclude[qi] == id) {
				return
			}
			seen[id] = struct{}{}
			c = append(c, candidate{id, Score(t.metric, q, t.docs.Row(int(id)))})
		}
		if qi < len(t.cfg.Qrels) {
			for _, id := range t.cfg.Qrels[qi] {
				add(id)
			}
		}
		switch t.cfg.Negatives {
		case "inbatch":
			if len(batch) > 1 {
				for n := 0; n < t.cfg.InBatch; n++ {
					other := batch[rng.IntN(len(batch))]
					if other == qi {
						continue
					}
					add(teacher.IDs[other*K+rng.IntN(K)])
				}
			}
		case "random":
			for n := 0; n < t.cfg.InBatch; n++ {
				add(int32(rng.IntN(t.docs.Rows)))
			}
		}
		out[i] = c
	}
	return out
}

// rankRange is 0..k-1.
func rankRange(k int) []int {
	r := make([]int, k)
	for i := range r {
		r[i] = i
	}
	return r
}

// workerGrad accumulates one goroutine's share of a batch's gradients.
type workerGrad struct {
	gO, gOivf, gC   []float64
	lossPQ, lossIVF float64
	tbuf, sbuf      []float32
	grad, pt, ps    []float64
	xhat, vbuf      []float32
	listMass        []float64
	z               []float32
}

func (g *workerGrad) reset() {
	clear(g.gO)
	clear(g.gC)
	if g.gOivf == nil {
		g.gOivf = make([]float64, len(g.gO))
	}
	clear(g.gOivf)
	g.lossPQ, g.lossIVF = 0, 0
}

func (g *workerGrad) add(o *workerGrad) {
	for i, v := range o.gO {
		g.gO[i] += v
	}
	for i, v := range o.gOivf {
		g.gOivf[i] += v
	}
	for i, v := range o.gC {
		g.gC[i] += v
	}
	g.lossPQ += o.lossPQ
	g.lossIVF += o.lossIVF
}

func growF32(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

func growF64(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n)
	}
	return s[:n]
}

// queryGrad adds one query's PQ and IVF losses and their gradients to g.
func (t *trainer) queryGrad(q []float32, cands []candidate, g *workerGrad) {
	n, d := len(cands), t.d
	O := t.model.Centroids
	g.tbuf, g.sbuf = growF32(g.tbuf, n), growF32(g.sbuf, n)
	g.grad = growF64(g.grad, n)
	for j, c := range cands {
		g.tbuf[j] = c.t
	}

	if t.M > 0 {
		// PQ student: score of the full reconstruction o_a + û.
		g.xhat = growF32(g.xhat, n*d)
		for j, c := range cands {
			xh := g.xhat[j*d : (j+1)*d]
			t.reconstruct(c.doc, xh)
			g.sbuf[j] = Score(t.metric, q, xh)
		}
		g.lossPQ += t.loss(g.tbuf, g.sbuf, t.temp, g.grad)
		g.vbuf = growF32(g.vbuf, d)
		for j, c := range cands {
			gj := g.grad[j]
			if gj == 0 {
				continue
			}
			v := t.scoreGradient(q, g.xhat[j*d:(j+1)*d], g.vbuf)
			a := int(t.lists[c.doc])
			go_ := g.gO[a*d : (a+1)*d]
			for k, x := range v {
				go_[k] += gj * float64(x)
			}
			code := t.codes[int(c.doc)*t.M : int(c.doc+1)*t.M]
			for s, cw := range code {
				off := (s*t.ksub + int(cw)) * t.dsub
				gc := g.gC[off : off+t.dsub]
				for k := range gc {
					gc[k] += gj * float64(v[s*t.dsub+k])
				}
			}
		}
	}

	// IVF student.
	g.z = growF32(g.z, t.nlist)
	for l := 0; l < t.nlist; l++ {
		g.z[l] = Score(t.metric, q, O[l*d:(l+1)*d])
	}
	g.listMass = growF64(g.listMass, t.nlist)
	dz := g.listMass // reused: becomes dL/dz
	switch t.cfg.IVFLoss {
	case "list":
		// Teacher mass of a list: the teacher softmax summed over the
		// query's candidates in it; student: softmax over all lists.
		g.pt = growF64(g.pt, n)
		softmax(g.tbuf, t.temp, g.pt)
		clear(dz)
		for j, c := range cands {
			dz[t.lists[c.doc]] += g.pt[j]
		}
		g.ps = growF64(g.ps, t.nlist)
		lse := softmax(g.z, t.temp, g.ps)
		for l := range dz {
			if dz[l] > 0 {
				g.lossIVF -= dz[l] * (float64(g.z[l])/t.temp - lse)
			}
			dz[l] = (g.ps[l] - dz[l]) / t.temp
		}
	case "doc":
		for j, c := range cands {
			g.sbuf[j] = g.z[t.lists[c.doc]]
		}
		g.lossIVF += t.loss(g.tbuf, g.sbuf, t.temp, g.grad)
		clear(dz)
		for j, c := range cands {
			dz[t.lists[c.doc]] += g.grad[j]
		}
	}
	g.vbuf = growF32(g.vbuf, d)
	for l, gl := range dz {
		if gl == 0 {
			continue
		}
		v := t.scoreGradient(q, O[l*d:(l+1)*d], g.vbuf)
		gi := g.gOivf[l*d : (l+1)*d]
		for k, x := range v {
			gi[k] += gl * float64(x)
		}
	}
}

// scoreGradient writes d Score(q, x) / dx into buf: q for inner product,
// 2(q - x) for L2.
func (t *trainer) scoreGradient(q, x, buf []float32) []float32 {
	if t.metric == faissio.L2 {
		for k := range buf {
			buf[k] = 2 * (q[k] - x[k])
		}
		return buf
	}
	return q
}

// reconstruct writes o_a(doc) + û_doc, the vector FAISS scores for doc.
func (t *trainer) reconstruct(doc int32, out []float32) {
	d := t.d
	a := int(t.lists[doc])
	copy(out, t.model.Centroids[a*d:(a+1)*d])
	if t.M == 0 {
		return
	}
	code := t.codes[int(doc)*t.M : int(doc+1)*t.M]
	for s, cw := range code {
		cb := t.model.Codebooks[(s*t.ksub+int(cw))*t.dsub:]
		o := out[s*t.dsub : (s+1)*t.dsub]
		for k := range o {
			o[k] += cb[k]
		}
	}
}

// valRecall is the 10-recall@10 of the held-out queries when searching the
// current model as FAISS would (probe ValNprobe lists, score the
// reconstructions), against the teacher's top 10.
//
// A pseudo-query's own document (exclude[qi]) is skipped, as it is absent
// from the teacher's results.
func (t *trainer) valRecall(queries faissio.Matrix, val []int, teacher *Teacher, exclude []int32) float64 {
	const k = 10
	K := teacher.K
	d := t.d
	var hits int
	z := make([]float32, t.nlist)
	xh := make([]float32, d)
	order := make([]int, t.nlist)
	for _, qi := range val {
		q := queries.Row(qi)
		for l := range z {
			z[l] = Score(t.metric, q, t.model.Centroids[l*d:(l+1)*d])
			order[l] = l
		}
		sort.Slice(order, func(a, b int) bool { return z[order[a]] > z[order[b]] })
		h := &topHeap{}
		ex := int32(-1)
		if exclude != nil {
			ex = exclude[qi]
		}
		for _, l := range order[:min(t.cfg.ValNprobe, t.nlist)] {
			for _, doc := range t.members[l] {
				if doc == ex {
					continue
				}
				var s float32
				if t.M == 0 {
					s = Score(t.metric, q, t.docs.Row(int(doc)))
				} else {
					t.reconstruct(doc, xh)
					s = Score(t.metric, q, xh)
				}
				if len(h.s) < k {
					heap.Push(h, entry{s, doc})
				} else if s > h.s[0].s {
					h.s[0] = entry{s, doc}
					heap.Fix(h, 0)
				}
			}
		}
		truth := teacher.IDs[qi*K : qi*K+min(k, K)]
		for _, e := range h.s {
			if slices.Contains(truth, e.id) {
				hits++
			}
		}
	}
	return float64(hits) / float64(len(val)*k)
}

// adam is the Adam optimiser (no weight decay: the parameters are
// centroids and codewords, whose scale is meaningful).
type adam struct {
	lr     float64
	m, v   []float64
	t      int
	b1, b2 float64
	eps    float64
}

func newAdam(n int, lr float64) *adam {
	return &adam{lr: lr, m: make([]float64, n), v: make([]float64, n), b1: 0.9, b2: 0.999, eps: 1e-8}
}

func (a *adam) step(p []float32, g []float64, scale float64) {
	a.t++
	c1 := 1 - math.Pow(a.b1, float64(a.t))
	c2 := 1 - math.Pow(a.b2, float64(a.t))
	lr := a.lr * scale
	for i, gi := range g {
		a.m[i] = a.b1*a.m[i] + (1-a.b1)*gi
		a.v[i] = a.b2*a.v[i] + (1-a.b2)*gi*gi
		p[i] -= float32(lr * (a.m[i] / c1) / (math.Sqrt(a.v[i]/c2) + a.eps))
	}
}
