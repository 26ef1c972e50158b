package build

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"time"

	faiss "github.com/distillvq/distillvq/cgo"
	"github.com/distillvq/distillvq/distill"
	"github.com/distillvq/distillvq/faissio"
)

// Report says what a build made and how long each phase took.
type Report struct {
	N      int            `json:"n"`
	D      int            `json:"d"`
	Index  Kind           `json:"index"`
	Metric faissio.Metric `json:"metric"`
	Nlist  int            `json:"nlist"`
	M      int            `json:"m"`
	Nbits  int            `json:"nbits"`
	Train  Trainer        `json:"train"`
	OPQ    bool           `json:"opq"`
	// CodeBytesPerVec is the bytes of code stored per vector.
	CodeBytesPerVec int `json:"code_bytes_per_vector"`
	// Phase times: reading inputs, training, assigning and encoding (for
	// the FAISS trainer, FAISS's train and add together are Fit).
	Read time.Duration `json:"read_ns"`
	Fit  time.Duration `json:"train_ns"`
	Add  time.Duration `json:"add_ns"`
	// Within Fit, for our trainers: the IVF k-means, the PQ training (the
	// sample's assignment and the sub-space k-means) and the distillation
	// (teacher search and every epoch; its curve has each epoch's time).
	IVFKMeans time.Duration `json:"ivf_kmeans_ns,omitempty"`
	PQTrain   time.Duration `json:"pq_train_ns,omitempty"`
	Distill   time.Duration `json:"distill_ns,omitempty"`
	// Epochs is the distillation's training curve: loss, held-out recall
	// and elapsed time after each epoch (epoch 0 is the k-means start).
	Epochs []distill.EpochStats `json:"epochs,omitempty"`
	// TrainRows is the size of the training sample read, and MemoryPlan
	// the peak memory the build was planned for (bytes).
	TrainRows  int   `json:"train_rows"`
	MemoryPlan int64 `json:"memory_plan_bytes"`
	// DistillDocs is the number of documents distillation learned from
	// when MaxMemory did not allow all of them; 0 means all.
	DistillDocs int `json:"distill_docs,omitempty"`
	// Resumed names the training stages a resumed build took from its
	// checkpoint instead of computing them.
	Resumed string `json:"resumed,omitempty"`
}

// Run trains an index on the documents and fills it with every one of
// them: the result is the whole FAISS index (centroids, codebooks, and each
// document's list, id and code, in the documents' order), which
// faissio.WriteIVFFile writes as the file FAISS's write_index would, list by
// list and without a second copy, and faiss.NewIVF loads into FAISS to
// search. docs may be files (faissio.OpenSource) or a matrix in memory
// (faissio.MatrixSource).
//
// Every option is checked first (Validate, then against the documents'
// shape, then against MaxMemory) so a build that cannot succeed fails
// before any work. Run stops with ctx's error within a block of work once
// ctx is cancelled (FAISS's own training, FAISS trainer and OPQ, cannot be
// stopped part-way).
func Run(ctx context.Context, docs *faissio.Source, o Options) (*faissio.IVFParams, *Report, error) {
	if err := o.Validate(); err != nil {
		return nil, nil, err
	}
	if err := docs.Err(); err != nil {
		return nil, nil, err
	}
	o = o.withDefaults()
	if o.Progress == nil {
		o.Progress = func(string, int, int) {}
	}
	t0 := time.Now()
	n, d := docs.Rows, docs.Cols
	if n < 1 {
		return nil, nil, fmt.Errorf("no documents")
	}
	ids := o.IDs
	if ids != nil {
		if err := faissio.CheckIDs(ids, n); err != nil {
			return nil, nil, err
		}
	} else {
		ids = make([]int64, n)
		for i := range ids {
			ids[i] = int64(i)
		}
	}
	if q := o.Queries; q.Rows > 0 {
		if q.Cols != d {
			return nil, nil, fmt.Errorf("training queries have d=%d but the documents have d=%d", q.Cols, d)
		}
		if err := faissio.CheckFinite(q, "training queries"); err != nil {
			return nil, nil, err
		}
	}
	var qrels [][]int32
	if o.Qrels != nil {
		var err error
		if qrels, err = qrelRows(o.Qrels, ids); err != nil {
			return nil, nil, fmt.Errorf("qrels: %w", err)
		}
	}
	rep := &Report{N: n, D: d, Index: o.Index, Metric: o.Metric, Train: o.Train, OPQ: o.OPQ, Nlist: o.Nlist}
	if rep.Nlist == 0 {
		rep.Nlist = DefaultNlist(n)
	}
	if o.Index == IVFPQ {
		rep.M, rep.Nbits = o.M, o.Nbits
		if rep.M == 0 {
			rep.M = DefaultM(d)
		}
	}
	cfg := distill.Config{
		Metric: o.Metric, Nlist: rep.Nlist, M: rep.M, Nbits: rep.Nbits,
		TrainSize: o.TrainSize, Niter: o.Niter, Seed: o.Seed, Progress: o.Progress,
	}
	if err := cfg.Check(n, d); err != nil {
		return nil, nil, err
	}
	plan, err := planMemory(o, cfg, n, d)
	if err != nil {
		return nil, nil, err
	}
	rep.TrainRows, rep.MemoryPlan = plan.trainRows, plan.bytes
	if goLimit := goMemoryLimit(plan.limit); goLimit > 0 {
		// The plan counts live data; the Go collector, left to itself, lets
		// the heap grow to twice the live data before it runs. Its soft
		// limit makes it collect the k-means sample and other dropped
		// buffers before the process outgrows the bound.
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(goLimit))
	}
	if plan.distillSample {
		rep.DistillDocs = plan.trainRows
	}

	j := &job{o: o, src: docs, ids: ids, qrels: qrels, cfg: cfg, rep: rep, progress: o.Progress}
	if o.Checkpoint != "" {
		key, err := checkpointKey(docs, o, cfg, qrels, plan.trainRows)
		if err != nil {
			return nil, nil, err
		}
		if j.ck, err = openCheckpoint(o.Checkpoint, key, o.Resume); err != nil {
			return nil, nil, err
		}
		rep.Resumed = j.ck.stage()
	}
	if err := j.read(ctx, plan); err != nil {
		return nil, nil, err
	}
	rep.Read = time.Since(t0)
	if o.OPQ && o.Train != FAISS {
		if err := j.trainRotation(); err != nil {
			return nil, nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var p *faissio.IVFParams
	switch o.Train {
	case FAISS:
		p, err = j.buildFAISS()
	case Distill:
		p, err = j.buildDistill(ctx)
	default:
		p, err = j.buildKMeans(ctx)
	}
	if err != nil {
		return nil, nil, err
	}
	return p, rep, nil
}

// job is one build in progress.
type job struct {
	o   Options
	src *faissio.Source // every document
	// docs holds every document (distill and faiss trainers only) and
	// train the training sample (the k-means trainer) or docs itself;
	// both are rotated when an OPQ rotation was trained.
	docs, train faissio.Matrix
	// sampled says docs is a random sample of the documents (a distillation
	// that would not fit in MaxMemory with all of them).
	sampled  bool
	ids      []int64
	qrels    [][]int32
	cfg      distill.Config
	rep      *Report
	rotation []float32 // D×D OPQ rotation, or nil
	progress func(string, int, int)
	ck       *checkpoint // nil without a checkpoint folder
}

// read takes into memory what the trainer needs: a training sample for the
// k-means trainer, which streams the rest later; every document (or the
// sample the memory plan allows) for the others.
func (j *job) read(ctx context.Context, plan memoryPlan) error {
	src, o := j.src, j.o
	n := src.Rows
	j.progress("read", 0, 1)
	defer j.progress("read", 1, 1)
	var err error
	switch {
	case plan.distillSample:
		if j.docs, err = readSample(src, plan.trainRows, o.Seed); err != nil {
			return err
		}
		j.train, j.sampled = j.docs, true
	case o.Train != KMeans:
		if m, ok := src.Matrix(); ok {
			// Held in memory already: used as it is, checked as a read
			// from disk would check it.
			if err := faissio.CheckFinite(m, "documents"); err != nil {
				return err
			}
			j.docs = m
		} else {
			j.docs = faissio.Matrix{Rows: n, Cols: src.Cols, Data: make([]float32, n*src.Cols)}
			if err := readBlocks(ctx, src, j.docs); err != nil {
				return err
			}
		}
		j.train = j.docs
	default:
		if plan.trainRows < n {
			// The sample does not see every row: check them all now, not
			// when encoding after the training.
			if err := src.CheckFinite(); err != nil {
				return err
			}
		}
		if j.train, err = readSample(src, plan.trainRows, o.Seed); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// readBlocks reads every row of src into m, a block at a time, so that an
// interrupt is honoured within a block.
func readBlocks(ctx context.Context, src *faissio.Source, m faissio.Matrix) error {
	block := max(1, (64<<20)/(4*src.Cols))
	for i := 0; i < src.Rows; i += block {
		if err := ctx.Err(); err != nil {
			return err
		}
		j := min(i+block, src.Rows)
		if err := src.Read(i, j, m.Data[i*src.Cols:j*src.Cols]); err != nil {
			return err
		}
	}
	return nil
}

// trainRotation trains FAISS's OPQ rotation on a sample of the documents and
// moves the documents into the rotated space, where training happens; the
// rotation is frozen and written in front of the IVF index.
func (j *job) trainRotation() error {
	t0 := time.Now()
	// FAISS's OPQ training on one BLAS thread: its threaded products would
	// make the rotation, and so the index, depend on the number of cores.
	defer faiss.SerialBLAS()()
	j.progress("OPQ rotation", 0, 1)
	if j.ck != nil && j.ck.kmeans != nil {
		// The checkpoint's model was trained in its rotated space.
		if d := j.train.Cols; len(j.ck.kmeans.Rotation) != d*d {
			return fmt.Errorf("checkpoint %s: no %dx%d OPQ rotation", j.ck.dir, d, d)
		}
		j.rotation = j.ck.kmeans.Rotation
	} else {
		// FAISS's sample (it trains OPQ on at most 256 points per
		// codeword), or a smaller TrainSize.
		n := max(256*j.cfg.Nlist, 256<<j.cfg.Nbits)
		if j.cfg.TrainSize > 0 {
			n = min(n, j.cfg.TrainSize)
		}
		sample := j.train
		if sample.Rows > n {
			sample = distill.Sample(sample, n, j.cfg.Seed)
		}
		var err error
		if j.rotation, err = faiss.TrainOPQ(sample, j.cfg.M, int(j.cfg.Seed%(1<<31))); err != nil {
			return err
		}
	}
	j.train = faiss.ApplyRotation(j.rotation, j.train)
	if j.o.Train != KMeans {
		j.docs = j.train // train was docs itself
	}
	j.progress("OPQ rotation", 1, 1)
	j.rep.Fit += time.Since(t0)
	return nil
}

// buildKMeans trains with our k-means and encodes every document, streamed.
func (j *job) buildKMeans(ctx context.Context) (*faissio.IVFParams, error) {
	t0 := time.Now()
	model, err := j.trainKMeans(ctx, j.train)
	if err != nil {
		return nil, err
	}
	j.train = faissio.Matrix{} // the sample is no longer needed
	j.rep.Fit += time.Since(t0)
	t0 = time.Now()
	lists, codes, err := encodeSource(ctx, model, j.src, j.rotation, j.progress)
	if err != nil {
		return nil, err
	}
	return j.fill(model, lists, codes, t0), nil
}

// trainKMeans runs our FAISS-style training on x and records its phase
// times, or takes the model from the checkpoint being resumed.
func (j *job) trainKMeans(ctx context.Context, x faissio.Matrix) (*distill.Model, error) {
	if j.ck != nil && j.ck.kmeans != nil {
		m := j.ck.kmeans.Model
		if m.D != x.Cols || m.Nlist != j.cfg.Nlist || m.M != j.cfg.M || m.Nbits != j.cfg.Nbits || m.Metric != j.cfg.Metric {
			return nil, fmt.Errorf("checkpoint %s: its model does not match this build's parameters", j.ck.dir)
		}
		return m, nil
	}
	var times distill.PhaseTimes
	cfg := j.cfg
	cfg.Times = &times
	model, err := distill.TrainKMeans(ctx, x, cfg)
	if err != nil {
		return nil, err
	}
	j.rep.IVFKMeans, j.rep.PQTrain = times.IVF, times.PQ
	if j.ck != nil {
		if err := j.ck.saveKMeans(kmeansState{Model: model, Rotation: j.rotation}); err != nil {
			return nil, err
		}
	}
	return model, nil
}

// fill puts a trained model and the encoded documents together as the
// index's contents.
func (j *job) fill(model *distill.Model, lists []int64, codes []byte, t0 time.Time) *faissio.IVFParams {
	p := model.IVFParams()
	p.Rotation, p.Lists, p.IDs, p.Codes = j.rotation, lists, j.ids, codes
	j.rep.Add = time.Since(t0)
	j.rep.CodeBytesPerVec = model.CodeSize()
	return &p
}

// buildDistill starts from our k-means model and distils it from the dense
// teacher, then encodes every document with the learned parameters.
func (j *job) buildDistill(ctx context.Context) (*faissio.IVFParams, error) {
	o, docs := j.o, j.docs
	dc := o.Distill
	dc.Queries, dc.Qrels = o.Queries, j.qrels
	if j.rotation != nil && dc.Queries.Rows > 0 {
		dc.Queries = faiss.ApplyRotation(j.rotation, dc.Queries)
	}
	t0 := time.Now()
	init, err := j.trainKMeans(ctx, docs)
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	lists, err := init.Assign(ctx, docs)
	if err != nil {
		return nil, err
	}
	dc.Seed = o.Seed
	if j.ck != nil {
		dc.Checkpoint, dc.Resume = j.ck.saveDistill, j.ck.distill
	}
	epochs := dc.Epochs
	if epochs == 0 {
		epochs = distill.DefaultEpochs
	}
	j.progress("distill: teacher", 0, epochs)
	dc.Progress = func(st distill.EpochStats) {
		j.progress(fmt.Sprintf("distill: loss %.3g, held-out R10@10 %.3f", st.LossPQ+st.LossIVF, st.ValRecall), st.Epoch, st.Epochs)
	}
	model, curve, err := distill.Distill(ctx, docs, init, lists, dc)
	if err != nil {
		return nil, err
	}
	j.rep.Distill = time.Since(t1)
	j.rep.Fit += time.Since(t0)
	j.rep.Epochs = curve
	t0 = time.Now()
	var codes []byte
	switch {
	case j.sampled:
		// Only a sample was in memory: every document, streamed, goes to
		// its nearest learned list.
		j.docs, j.train = faissio.Matrix{}, faissio.Matrix{}
		if lists, codes, err = encodeSource(ctx, model, j.src, j.rotation, j.progress); err != nil {
			return nil, err
		}
	case o.ExportLists == NearestLists:
		if lists, codes, err = encodeAll(ctx, model, docs, j.progress); err != nil {
			return nil, err
		}
	default:
		j.progress("encode", 0, docs.Rows)
		if codes, err = model.Encode(ctx, docs, lists); err != nil {
			return nil, err
		}
		j.progress("encode", docs.Rows, docs.Rows)
	}
	return j.fill(model, lists, codes, t0), nil
}

// buildFAISS lets FAISS train and add, for a like-for-like comparison, and
// takes the index's contents back from FAISS.
func (j *job) buildFAISS() (*faissio.IVFParams, error) {
	t0 := time.Now()
	train := j.docs
	if j.cfg.TrainSize > 0 && j.cfg.TrainSize < train.Rows {
		train = distill.Sample(train, j.cfg.TrainSize, j.cfg.Seed)
	}
	j.progress("FAISS train and add", 0, 1)
	index, err := faiss.TrainFAISS(faiss.FAISSParams{
		D: j.docs.Cols, Metric: j.cfg.Metric, Nlist: j.cfg.Nlist, M: j.cfg.M, Nbits: j.cfg.Nbits,
		Seed: int(j.cfg.Seed % (1 << 31)), Niter: j.cfg.Niter, OPQ: j.o.OPQ,
	}, train, j.docs, j.ids)
	j.rep.Fit = time.Since(t0)
	if err != nil {
		return nil, err
	}
	defer index.Close()
	j.progress("FAISS train and add", 1, 1)
	p, err := index.IVFParams()
	if err != nil {
		return nil, err
	}
	j.rep.CodeBytesPerVec = p.CodeSize()
	return &p, nil
}

// qrelRows maps labelled document ids to document rows.
func qrelRows(qrels [][]int64, ids []int64) ([][]int32, error) {
	row := make(map[int64]int32, len(ids))
	for i, id := range ids {
		row[id] = int32(i)
	}
	out := make([][]int32, len(qrels))
	for q, labelled := range qrels {
		for _, id := range labelled {
			r, ok := row[id]
			if !ok {
				return nil, fmt.Errorf("query %d: document id %d is not among the documents", q, id)
			}
			out[q] = append(out[q], r)
		}
	}
	return out, nil
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

// encodeSource reads, rotates (if rotation is not nil), assigns and encodes
// every document, a block at a time, so that only a block of the documents
// is ever in memory.
func encodeSource(ctx context.Context, model *distill.Model, src *faissio.Source, rotation []float32, progress func(string, int, int)) ([]int64, []byte, error) {
	block := encodeBlock(model.Nlist, src.Cols)
	lists := make([]int64, 0, src.Rows)
	codes := make([]byte, 0, src.Rows*model.CodeSize())
	buf := make([]float32, min(block, src.Rows)*src.Cols)
	for i := 0; i < src.Rows; i += block {
		x := faissio.Matrix{Rows: min(block, src.Rows-i), Cols: src.Cols}
		x.Data = buf[:x.Rows*x.Cols]
		if err := src.Read(i, i+x.Rows, x.Data); err != nil {
			return nil, nil, err
		}
		if rotation != nil {
			x = faiss.ApplyRotation(rotation, x)
		}
		l, c, err := assignEncode(ctx, model, x)
		if err != nil {
			return nil, nil, err
		}
		lists, codes = append(lists, l...), append(codes, c...)
		progress("encode", i+x.Rows, src.Rows)
	}
	return lists, codes, nil
}

// encodeAll assigns every document to its nearest list and encodes it, a
// block at a time so progress can be shown.
func encodeAll(ctx context.Context, model *distill.Model, docs faissio.Matrix, progress func(string, int, int)) ([]int64, []byte, error) {
	block := encodeBlock(model.Nlist, docs.Cols)
	lists := make([]int64, 0, docs.Rows)
	codes := make([]byte, 0, docs.Rows*model.CodeSize())
	for i := 0; i < docs.Rows; i += block {
		l, c, err := assignEncode(ctx, model, docs.Slice(i, min(i+block, docs.Rows)))
		if err != nil {
			return nil, nil, err
		}
		lists, codes = append(lists, l...), append(codes, c...)
		progress("encode", i+len(l), docs.Rows)
	}
	return lists, codes, nil
}

// assignEncode gives rows of x their nearest lists and their codes there.
func assignEncode(ctx context.Context, model *distill.Model, x faissio.Matrix) ([]int64, []byte, error) {
	l, err := model.Assign(ctx, x)
	if err != nil {
		return nil, nil, err
	}
	c, err := model.Encode(ctx, x, l)
	return l, c, err
}

// encodeBlock is the number of rows encoded at once: at most 65536, and
// fewer when the block and its distances to the centroids would pass
// 64 MiB.
func encodeBlock(nlist, d int) int {
	return max(256, min(1<<16, (16<<20)/(nlist+d)))
}
