package distill

import (
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
	Queries       faissio.Matrix `json:"-"`
	PseudoQueries int            `json:"pseudo_queries"`
	// Qrels optionally lists labelled positive documents (rows) per training
	// query; they join the query's candidates.
	Qrels [][]int32 `json:"-"`
	// Val is the number of training queries held out to measure recall
	// during training; default min(500, queries/10); -1 for none.
	Val       int `json:"val"`
	ValNprobe int `json:"val_nprobe"` // default max(1, nlist/16)

	TopK int `json:"top_k"` // teacher's top documents per query, default 200
	// TopKSample, when positive, draws this many of the Top-K afresh for
	// each step instead of using all K (the paper's Top-K^n sampling).
	TopKSample int `json:"top_k_sample"`
	// Negatives picks the candidates besides the teacher's Top-K: InBatch
	// (default: InBatch documents drawn from the other queries' Top-K in
	// the batch), NoNegatives (Top-K only), RandomNegatives (InBatch random
	// documents).
	Negatives NegativesKind `json:"negatives"`
	InBatch   int           `json:"in_batch"` // default 200

	Loss    LossKind    `json:"loss"`     // default ListNet
	IVFLoss IVFLossKind `json:"ivf_loss"` // default ListLevel: softmax over all lists
	// Temperature in units of the median spread of the teacher's Top-K
	// scores (best minus K-th); default 0.2 (on GloVe 100k, R10@10 at
	// nprobe 16 was .493 at 0.05, .534 at 0.2, .540 at 0.4).
	Temperature float64 `json:"temperature"`
	// IVFWeight multiplies the IVF loss; 0 scales it to the PQ loss on the
	// first batch, as the reference code does.
	IVFWeight float64 `json:"ivf_weight"`
	// FixedCentroids keeps the coarse centroids as they are (a PQ without
	// IVF, whose one centroid is zero): only the codebooks learn.
	FixedCentroids bool `json:"fixed_centroids,omitempty"`
	// QuantizeLUT makes the inner-product student score candidates with
	// look-up tables rounded to 8 bits as FAISS's FastScan search rounds
	// them (the L2 student decodes and is unaffected).
	QuantizeLUT bool `json:"quantize_lut,omitempty"`

	// Encode is how documents get their PQ codes, in training and at
	// export: Weighted (default, inner product) minimises the expected
	// error of the query score, (u-û)ᵀE[qqᵀ](u-û), over the training
	// queries; NearestCodeword is FAISS's encoding. L2 search always uses
	// NearestCodeword.
	Encode EncodingKind `json:"encode"`

	// RefreshEvery is the number of steps between re-encodings of every
	// document with the current parameters; 0 means once per epoch.
	RefreshEvery int `json:"refresh_every"`

	Epochs int `json:"epochs"` // default 8
	// Patience stops the training once held-out recall has not beaten its
	// best for this many epochs (the best model is returned either way);
	// default 2, negative never stops early. Without held-out queries every
	// epoch runs.
	Patience int `json:"patience"`
	Batch    int `json:"batch"` // queries per step, default 256
	// LRIVF and LRPQ are Adam learning rates in units of the RMS of the
	// document coordinates; default 0.01 for inner product (0.005 and 0.03
	// measured worse on GloVe), 0.003 for L2 (0.01 lost recall on
	// siftsmall at nprobe 16).
	LRIVF float64 `json:"lr_ivf"`
	LRPQ  float64 `json:"lr_pq"`
	// LearnRotation makes the rotation in front of the index (OPQ's) a
	// parameter of the distillation, trained with the same loss and kept
	// orthonormal (rotation.go). The documents, the queries and the
	// teacher stay in their own space; init's centroids and codebooks
	// quantize x' = R x, R starting at Rotation (D×D row-major, as FAISS's
	// OPQ training gives it; nil is the identity), and the lists are the
	// documents' lists there. The model returned carries the learned R
	// (Model.Rotation). It needs PQ (M > 0).
	LearnRotation bool      `json:"learn_rotation,omitempty"`
	Rotation      []float32 `json:"-"`
	// LRRotation is the rotation's step size, per unit of Adam direction
	// (dimensionless, as a rotation is); default DefaultLRRotation.
	LRRotation float64 `json:"lr_rotation,omitempty"`
	Seed       uint64  `json:"seed"`
	// ChooseLists, when set, makes Distill measure held-out recall of the
	// starting model and of the trained one with the training-time lists
	// and with every document in its nearest centroid's list (under a
	// learned rotation, in its space), and hand the comparison to it (see
	// ListChoice); without held-out queries it is not called.
	ChooseLists func(*ListChoice) `json:"-"`
	// Progress is called after every epoch.
	Progress func(EpochStats) `json:"-"`
	// Checkpoint, when set, receives the training state after every epoch
	// (after Progress); an error from it stops the training with that error.
	Checkpoint func(*DistillState) error `json:"-"`
	// Resume, when set, continues from a state Checkpoint received, with the
	// same documents, initial model, lists and configuration; the result is
	// the model the uninterrupted run returns.
	Resume *DistillState `json:"-"`
}

// DefaultEpochs is the number of passes over the training queries when
// DistillConfig.Epochs is 0.
const DefaultEpochs = 8

// DefaultPatience is DistillConfig.Patience when 0.
const DefaultPatience = 2

// stalled reports whether the last patience points of curve did not beat
// the best before them; patience < 0 never stalls. It reads only the curve,
// so that a resumed run stops where the uninterrupted one does.
func stalled(curve []EpochStats, patience int) bool {
	if patience < 0 || len(curve) == 0 {
		return false
	}
	best := 0
	for i, st := range curve {
		if st.ValRecall > curve[best].ValRecall {
			best = i
		}
	}
	return len(curve)-1-best >= patience
}

// EpochStats is one point of the training curve.
type EpochStats struct {
	Epoch   int     `json:"epoch"`
	Epochs  int     `json:"epochs"`
	LossPQ  float64 `json:"loss_pq"`
	LossIVF float64 `json:"loss_ivf"`
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
	set(&c.Epochs, DefaultEpochs)
	set(&c.Patience, DefaultPatience)
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
	if c.LRRotation == 0 {
		c.LRRotation = DefaultLRRotation
	}
	for _, err := range []error{
		CheckEnum("--negatives", c.Negatives, negativesNames),
		CheckEnum("--encode", c.Encode, encodingNames),
		CheckEnum("--ivf-loss", c.IVFLoss, ivfLossNames),
		CheckEnum("--loss", c.Loss, lossNames),
	} {
		if err != nil {
			return err
		}
	}
	switch {
	case c.TopK < 1 || c.Epochs < 1 || c.Batch < 1:
		return fmt.Errorf("top-k, epochs and batch must be at least 1")
	case c.InBatch < 0 || c.TopKSample < 0 || c.RefreshEvery < 0:
		return fmt.Errorf("in-batch, top-k sample and refresh interval must not be negative")
	case c.TopK > 1<<16 || c.InBatch > 1<<16:
		return fmt.Errorf("top-k and in-batch are at most 65536 candidates each")
	case c.Temperature < 0 || c.LRIVF < 0 || c.LRPQ < 0 || c.LRRotation < 0 || c.IVFWeight < 0:
		return fmt.Errorf("temperature, learning rates and IVF weight must not be negative")
	}
	return nil
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
	loss    lossFunc
	temp    float64
	ivfW    float64
	members [][]int32 // documents of each list
	fresh   bool      // codes match the current parameters
	// passes are the query-weighted sweeps of each refresh: 0 in
	// training, the export's number when the list choice measures the
	// weighted encoding.
	passes int
	// rot is the rotation being learned, nil when there is none: docs and
	// queries are then in their own space and the parameters in R's.
	rot *rotationLearner
	// seen marks the documents already among the query's candidates in
	// candidates: seen[doc] == stamp.
	seen  []uint32
	stamp uint32
}

// Distill trains init's centroids and codebooks so that search over the
// quantized documents ranks like exact search over docs (Distill-VQ). Each
// document stays in its list from lists (the assignment of the initial
// index) during training. It returns a new model and the training curve.
//
// Training stops with ctx's error when ctx is cancelled, at the next step.
func Distill(ctx context.Context, docs faissio.Matrix, init *Model, lists []int64, cfg DistillConfig) (*Model, []EpochStats, error) {
	defer serialBLAS()()
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
	if docs.Rows > math.MaxInt32 {
		// Documents are numbered with int32 here; a sample of them is
		// what the build passes beyond that.
		return nil, nil, fmt.Errorf("distillation learns from at most %d documents, got %d", math.MaxInt32, docs.Rows)
	}
	if docs.Cols != init.D || len(lists) != docs.Rows {
		return nil, nil, fmt.Errorf("%d lists for %d documents of d=%d, model d=%d", len(lists), docs.Rows, docs.Cols, init.D)
	}
	for i, l := range lists {
		if l < 0 || l >= int64(init.Nlist) {
			return nil, nil, fmt.Errorf("document %d is in list %d, outside 0..%d", i, l, init.Nlist-1)
		}
	}
	if cfg.LearnRotation {
		switch d := init.D; {
		case init.M == 0:
			return nil, nil, fmt.Errorf("learning a rotation needs PQ codes (M > 0)")
		case cfg.Rotation != nil && len(cfg.Rotation) != d*d:
			return nil, nil, fmt.Errorf("initial rotation of %d values for d=%d", len(cfg.Rotation), d)
		}
	}
	pcg := rand.NewPCG(cfg.Seed, 0x64697374696c6c)
	rng := rand.New(pcg)
	m := &Model{D: init.D, Metric: init.Metric, Nlist: init.Nlist, M: init.M, Nbits: init.Nbits,
		Centroids: slices.Clone(init.Centroids), Codebooks: slices.Clone(init.Codebooks)}
	t := newTrainer(cfg, docs, m, lists)
	t.loss = lossFuncs[cfg.Loss]
	if cfg.LearnRotation {
		t.rot = newRotationLearner(cfg.Rotation, m.D, cfg.LRRotation)
	}

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
	resume := cfg.Resume
	var teacher *Teacher
	if resume == nil || resume.Epoch < cfg.Epochs {
		var err error
		phase(ctx, "teacher", func() { teacher, err = ExactTopK(ctx, docs, queries, cfg.TopK, t.metric, exclude) })
		if err != nil {
			return nil, nil, err
		}
		K := teacher.K
		// Temperature in units of the median spread of the teacher's Top-K.
		spreads := make([]float64, queries.Rows)
		for i := range spreads {
			spreads[i] = float64(teacher.Scores[i*K] - teacher.Scores[i*K+K-1])
		}
		sort.Float64s(spreads)
		t.temp = cfg.Temperature * math.Max(spreads[len(spreads)/2], 1e-12)
	}

	order := rng.Perm(queries.Rows)
	nval := cfg.Val
	if nval == 0 {
		nval = min(500, queries.Rows/10)
	}
	nval = max(0, min(nval, queries.Rows-1))
	val, train := order[:nval], order[nval:]
	// The encoding weight is the queries' second moment in the space the
	// codes live in: with a rotation learned, that space is known at the
	// end, so the queries it comes from are kept until then.
	var encQ faissio.Matrix
	if cfg.Encode == Weighted && t.metric == faissio.InnerProduct && m.M > 0 {
		encQ = encodeQueries(queries, train, exclude)
		if t.rot == nil {
			var err error
			phase(ctx, "second-moment", func() { m.EncodeWeight, err = SecondMoment(ctx, encQ) })
			if err != nil {
				return nil, nil, err
			}
			encQ = faissio.Matrix{}
		}
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
		grads[s] = newWorkerGrad(m, t.rot != nil)
	}

	// The model returned is the best by held-out recall, the starting point
	// included, so distillation never hands back a model that validates worse
	// than k-means.
	var curve []EpochStats
	best := -1.0
	bestCentroids, bestCodebooks := slices.Clone(m.Centroids), slices.Clone(m.Codebooks)
	var bestRot []float32
	if t.rot != nil {
		bestRot = slices.Clone(t.rot.R)
	}
	var startCodes, bestCodes []uint8 // for the export choice, when known
	start := time.Now()
	step, ep0 := 0, 0
	if resume != nil {
		// Everything drawn from rng so far was drawn again above; the
		// state takes over from the end of its epoch.
		if err := resume.check(m, train, cfg.Epochs, t.rot != nil); err != nil {
			return nil, nil, err
		}
		if err := resume.restoreRNG(pcg); err != nil {
			return nil, nil, err
		}
		if err := optO.restore(resume.AdamO); err != nil {
			return nil, nil, fmt.Errorf("resume: centroids: %w", err)
		}
		if err := optC.restore(resume.AdamC); err != nil {
			return nil, nil, fmt.Errorf("resume: codebooks: %w", err)
		}
		copy(m.Centroids, resume.Centroids)
		copy(m.Codebooks, resume.Codebooks)
		copy(bestCentroids, resume.BestCentroids)
		copy(bestCodebooks, resume.BestCodebooks)
		if t.rot != nil {
			if err := t.rot.opt.restore(resume.AdamR); err != nil {
				return nil, nil, fmt.Errorf("resume: rotation: %w", err)
			}
			copy(t.rot.R, resume.Rotation)
			copy(bestRot, resume.BestRotation)
		}
		for i, q := range resume.Train {
			train[i] = int(q)
		}
		step, ep0, best, t.ivfW = resume.Step, resume.Epoch, resume.Best, resume.IVFWeight
		curve = slices.Clone(resume.Curve)
		if len(curve) > 0 {
			start = start.Add(-curve[len(curve)-1].Elapsed)
		}
	} else if len(val) > 0 {
		if err := t.refreshCodes(ctx); err != nil {
			return nil, nil, err
		}
		r, err := t.valRecall(ctx, queries, val, teacher, exclude)
		if err != nil {
			return nil, nil, err
		}
		curve = append(curve, EpochStats{Epochs: cfg.Epochs, ValRecall: r})
		best = r
		if cfg.ChooseLists != nil && m.M > 0 {
			// The export choice measures the start and the best model
			// again: their codes are kept rather than encoded anew.
			startCodes, bestCodes = slices.Clone(t.codes), slices.Clone(t.codes)
		}
	}
	for ep := ep0; ep < cfg.Epochs; ep++ {
		if len(val) > 0 && stalled(curve, cfg.Patience) {
			break
		}
		if !t.fresh {
			if err := t.refreshCodes(ctx); err != nil {
				return nil, nil, err
			}
		}
		rng.Shuffle(len(train), func(i, j int) { train[i], train[j] = train[j], train[i] })
		var sumPQ, sumIVF float64
		for b0 := 0; b0 < len(train); b0 += cfg.Batch {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			batch := train[b0:min(b0+cfg.Batch, len(train))]
			if cfg.RefreshEvery > 0 && step > 0 && step%cfg.RefreshEvery == 0 && !t.fresh {
				if err := t.refreshCodes(ctx); err != nil {
					return nil, nil, err
				}
			}
			var cands [][]candidate
			phase(ctx, "candidates", func() { cands = t.candidates(batch, teacher, queries, exclude, rng) })
			phase(ctx, "student", func() {
				var wg sync.WaitGroup
				for w := range workers {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						for s := w; s < shards; s += workers {
							g := grads[s]
							g.reset()
							t.shardGrad(queries, batch, cands, s, shards, g)
						}
					}(w)
				}
				wg.Wait()
			})
			var lpq, livf float64
			for _, g := range grads {
				lpq += g.lossPQ
				livf += g.lossIVF
			}
			if t.ivfW == 0 {
				t.ivfW = cfg.IVFWeight
				if t.ivfW == 0 {
					t.ivfW = 1
					if m.M > 0 && livf > 0 {
						t.ivfW = lpq / livf
					}
				}
			}
			inv := 1 / float64(len(batch))
			lr := schedule(step, warm, totalSteps)
			phase(ctx, "adam", func() {
				t.applyStep(grads, optO, optC, inv, lr)
				if t.rot != nil {
					g := grads[0]
					for _, o := range grads[1:] {
						for i, v := range o.gR {
							g.gR[i] += v
						}
						for i, v := range o.gRivf {
							g.gRivf[i] += v
						}
					}
					for i := range g.gR {
						g.gR[i] = (g.gR[i] + t.ivfW*g.gRivf[i]) * inv
					}
					t.rot.step(g.gR, lr)
				}
			})
			t.fresh = false
			step++
			sumPQ += lpq * inv
			sumIVF += livf * inv
		}
		st := EpochStats{Epoch: ep + 1, Epochs: cfg.Epochs, LossPQ: sumPQ / float64(stepsPerEpoch),
			LossIVF: sumIVF / float64(stepsPerEpoch), ValRecall: -1, Elapsed: time.Since(start)}
		st.Left = time.Duration(float64(st.Elapsed) / float64(ep+1) * float64(cfg.Epochs-ep-1))
		if len(val) > 0 {
			if !t.fresh {
				if err := t.refreshCodes(ctx); err != nil {
					return nil, nil, err
				}
			}
			var err error
			if st.ValRecall, err = t.valRecall(ctx, queries, val, teacher, exclude); err != nil {
				return nil, nil, err
			}
			if st.ValRecall > best {
				best = st.ValRecall
				copy(bestCentroids, m.Centroids)
				copy(bestCodebooks, m.Codebooks)
				if bestCodes != nil {
					copy(bestCodes, t.codes)
				}
				if t.rot != nil {
					copy(bestRot, t.rot.R)
				}
			}
		} else {
			copy(bestCentroids, m.Centroids)
			copy(bestCodebooks, m.Codebooks)
			if t.rot != nil {
				copy(bestRot, t.rot.R)
			}
		}
		curve = append(curve, st)
		if cfg.Progress != nil {
			cfg.Progress(st)
		}
		if cfg.Checkpoint != nil {
			state, err := t.state(ep+1, step, pcg, optO, optC, train, best, bestCentroids, bestCodebooks, bestRot, curve)
			if err != nil {
				return nil, nil, err
			}
			if err := cfg.Checkpoint(state); err != nil {
				return nil, nil, err
			}
		}
	}
	m.Centroids, m.Codebooks = bestCentroids, bestCodebooks
	if t.rot != nil {
		m.Rotation = bestRot
		if encQ.Rows > 0 {
			rq := faissio.Matrix{Rows: encQ.Rows, Cols: encQ.Cols, Data: make([]float32, len(encQ.Data))}
			rotateRows(bestRot, encQ.Data, encQ.Rows, encQ.Cols, rq.Data)
			var err error
			phase(ctx, "second-moment", func() { m.EncodeWeight, err = SecondMoment(ctx, rq) })
			if err != nil {
				return nil, nil, err
			}
		}
	}
	if cfg.ChooseLists != nil && len(val) > 0 && m.Nlist > 1 {
		if teacher == nil { // resumed after the last epoch
			var err error
			if teacher, err = ExactTopK(ctx, docs, queries, cfg.TopK, t.metric, exclude); err != nil {
				return nil, nil, err
			}
		}
		var c *ListChoice
		var err error
		phase(ctx, "list-choice", func() { c, err = t.chooseLists(ctx, init, m, startCodes, bestCodes, queries, val, teacher, exclude) })
		if err != nil {
			return nil, nil, err
		}
		if c.Encoding == "codeword" {
			m.EncodeWeight = nil
		}
		cfg.ChooseLists(c)
	}
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
// centroids and codebooks (hard assignment, forward pass of the STE), by
// the nearest codeword: the query-weighted refinement is for the exported
// codes only. Training on weighted codes cost more and learned less (GloVe
// 100k, R10@10 at nprobe 16 / 64: .5577 / .5816 with two weighted sweeps
// per refresh, .5637 / .5882 with one, .5721 / .5967 with none, at 218,
// 181 and 159 CPU-seconds; GloVe 20k within .0026).
//
// It stops between blocks with ctx's error once ctx is cancelled; the codes
// are then not fresh.
func (t *trainer) refreshCodes(ctx context.Context) error {
	if t.M == 0 {
		return ctx.Err()
	}
	if t.codes == nil {
		t.codes = make([]uint8, t.docs.Rows*t.M)
	}
	lists := make([]int64, len(t.lists))
	for i, l := range t.lists {
		lists[i] = int64(l)
	}
	var rot []float32
	if t.rot != nil {
		rot = t.rot.R
	}
	var err error
	phase(ctx, "re-encode", func() { err = t.model.encodeRotated(ctx, t.docs, rot, lists, t.codes, t.passes) })
	if err != nil {
		t.fresh = false
		return err
	}
	t.fresh = true
	return nil
}

// candidate is one document scored for a query, with its teacher score.
type candidate struct {
	doc int32
	t   float32
}

// candidates builds each batch query's candidate set: its teacher Top-K,
// labelled positives, and negatives per cfg.Negatives. The teacher scores
// of the candidates from outside the Top-K are left NaN for the shards to
// compute in parallel (scoreCandidates).
func (t *trainer) candidates(batch []int, teacher *Teacher, queries faissio.Matrix, exclude []int32, rng *rand.Rand) [][]candidate {
	K := teacher.K
	if t.seen == nil {
		t.seen = make([]uint32, t.docs.Rows)
	}
	unscored := float32(math.NaN())
	out := make([][]candidate, len(batch))
	for i, qi := range batch {
		if t.stamp++; t.stamp == 0 {
			clear(t.seen)
			t.stamp = 1
		}
		stamp := t.stamp
		c := make([]candidate, 0, K+t.cfg.InBatch)
		ranks := rankRange(K)
		if n := t.cfg.TopKSample; n > 0 && n < K {
			ranks = rng.Perm(K)[:n]
		}
		for _, r := range ranks {
			id := teacher.Rows[qi*K+r]
			c = append(c, candidate{id, teacher.Scores[qi*K+r]})
			t.seen[id] = stamp
		}
		add := func(id int32) {
			if t.seen[id] == stamp || (exclude != nil && exclude[qi] == id) {
				return
			}
			t.seen[id] = stamp
			c = append(c, candidate{id, unscored})
		}
		if qi < len(t.cfg.Qrels) {
			for _, id := range t.cfg.Qrels[qi] {
				add(id)
			}
		}
		switch t.cfg.Negatives {
		case InBatch:
			if len(batch) > 1 {
				for n := 0; n < t.cfg.InBatch; n++ {
					other := batch[rng.IntN(len(batch))]
					if other == qi {
						continue
					}
					add(teacher.Rows[other*K+rng.IntN(K)])
				}
			}
		case RandomNegatives:
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

// adam is the Adam optimiser (no weight decay: the parameters are
// centroids and codewords, whose scale is meaningful).
type adam struct {
	lr     float64
	m, v   []float64
	t      int
	b1, b2 float64
	eps    float64
	// c1 and c2 are step t's bias corrections.
	c1, c2 float64
}

func newAdam(n int, lr float64) *adam { return newAdamMoments(n, n, lr) }

// newAdamMoments is an Adam for n parameters with nv second moments: n
// (one each, update's) or 1 (one for them all, matrixDirection's).
func newAdamMoments(n, nv int, lr float64) *adam {
	return &adam{lr: lr, m: make([]float64, n), v: make([]float64, nv), b1: 0.9, b2: 0.999, eps: 1e-8}
}

// begin counts a step and its bias corrections; update then moves each
// parameter of it.
func (a *adam) begin() {
	a.t++
	a.c1 = 1 - math.Pow(a.b1, float64(a.t))
	a.c2 = 1 - math.Pow(a.b2, float64(a.t))
}

// update moves parameter p[i] by its gradient gi at learning-rate factor
// scale, in the step begin counted.
func (a *adam) update(p []float32, i int, gi, scale float64) {
	a.m[i] = a.b1*a.m[i] + (1-a.b1)*gi
	a.v[i] = a.b2*a.v[i] + (1-a.b2)*gi*gi
	p[i] -= float32(a.lr * scale * (a.m[i] / a.c1) / (math.Sqrt(a.v[i]/a.c2) + a.eps))
}

// applyStep sums the shards' gradients in shard order, weights the IVF
// student's by ivfW, scales by inv and takes the Adam steps of the
// centroids (unless fixed) and codebooks, in fixed blocks of parameters on
// up to GOMAXPROCS goroutines: each parameter's sum and step are the same
// whatever their number. At 1M x 768 this pass over 3M parameters and four
// shards was a serial tenth of a step.
func (t *trainer) applyStep(grads []*workerGrad, optO, optC *adam, inv, lr float64) {
	const block = 1 << 14
	m := t.model
	if !t.cfg.FixedCentroids {
		optO.begin()
	}
	optC.begin()
	nO := (len(m.Centroids) + block - 1) / block
	nC := (len(m.Codebooks) + block - 1) / block
	_ = eachJob(context.Background(), nO+nC, runtime.GOMAXPROCS(0), func(int) func(int) {
		return func(j int) {
			if j >= nO {
				i0 := (j - nO) * block
				for i := i0; i < min(i0+block, len(m.Codebooks)); i++ {
					var v float64
					for _, g := range grads {
						v += float64(g.gC[i])
					}
					optC.update(m.Codebooks, i, v*inv, lr)
				}
				return
			}
			if t.cfg.FixedCentroids {
				return
			}
			i0 := j * block
			for i := i0; i < min(i0+block, len(m.Centroids)); i++ {
				v, vi := t.centroidGrad(grads, i)
				optO.update(m.Centroids, i, (v+t.ivfW*vi)*inv, lr)
			}
		}
	})
}
