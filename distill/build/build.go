package build

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"time"

	faiss "github.com/distillvq/distillvq/cgo"
	"github.com/distillvq/distillvq/distill"
	"github.com/distillvq/distillvq/faissio"
)

// Report says what a build made and how long each phase took.
type Report struct {
	N     int  `json:"n"`
	D     int  `json:"d"`
	Index Kind `json:"index"`
	// Quantizer is the IVF kinds' coarse quantizer.
	Quantizer Quantizer      `json:"quantizer"`
	Metric    faissio.Metric `json:"metric"`
	Nlist     int            `json:"nlist"`
	M         int            `json:"m"`
	Nbits     int            `json:"nbits"`
	Train     Trainer        `json:"train"`
	OPQ       bool           `json:"opq"`
	// OPQRotation says whether the OPQ rotation was learned.
	OPQRotation OPQRotation `json:"opq_rotation,omitempty"`
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
	// HNSW is FAISS's build of the HNSW quantizer's graph.
	HNSW time.Duration `json:"hnsw_ns,omitempty"`
	// Epochs is the distillation's training curve: loss, held-out recall
	// and elapsed time after each epoch (epoch 0 is the k-means start).
	Epochs []distill.EpochStats `json:"epochs,omitempty"`
	// Lists is the held-out comparison of training-time and nearest lists
	// that --export-lists auto decided by.
	Lists *distill.ListChoice `json:"lists,omitempty"`
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
// search. docs may be files (faissio.OpenSource) or vectors in memory
// (faissio.RowsSource, faissio.MatrixSource).
//
// Every option is checked first (Validate, then against the documents'
// shape, then against MaxMemory) so a build that cannot succeed fails
// before any work. Run stops with ctx's error within a block of work once
// ctx is cancelled (FAISS's own training, FAISS trainer and OPQ, cannot be
// stopped part-way).
//
// Run is Train followed by Trained.Add of the same documents, but for the
// FAISS trainer, whose documents FAISS adds itself.
func Run(ctx context.Context, docs *faissio.Source, o Options) (*faissio.IVFParams, *Report, error) {
	j, err := newJob(ctx, docs, o)
	if err != nil {
		return nil, nil, err
	}
	defer j.release()
	if j.o.Train == FAISS {
		p, err := j.buildFAISS(j.docs)
		return p, j.rep, err
	}
	tr, err := j.fit(ctx)
	if err != nil {
		return nil, nil, err
	}
	t0 := time.Now()
	p, err := j.encode(ctx, tr)
	if err != nil {
		return nil, nil, err
	}
	j.rep.Add = time.Since(t0)
	return p, j.rep, nil
}

// Train trains an index on the documents, as Run does, without filling it:
// the result adds documents (Trained.Add), shard by shard on as many
// machines as wanted, with exactly the lists and codes Run gives them, and
// writes itself as the trained, empty FAISS index (Trained.WriteFile).
func Train(ctx context.Context, docs *faissio.Source, o Options) (*Trained, *Report, error) {
	if o.Index.flat() {
		return nil, nil, fmt.Errorf("--index %v has no inverted lists to fill shard by shard: build it whole (distillvq build)", o.Index)
	}
	j, err := newJob(ctx, docs, o)
	if err != nil {
		return nil, nil, err
	}
	defer j.release()
	if j.o.Train == FAISS {
		// FAISS trains and adds in one call; with no documents to add it
		// only trains.
		p, err := j.buildFAISS(faissio.Matrix{Cols: docs.Cols})
		if err != nil {
			return nil, nil, err
		}
		return trainedFrom(p), j.rep, nil
	}
	tr, err := j.fit(ctx)
	return tr, j.rep, err
}

// newJob checks the options against the documents, plans the memory,
// opens the checkpoint and reads what the trainer needs.
func newJob(ctx context.Context, docs *faissio.Source, o Options) (*job, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := docs.Err(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	if o.Progress == nil {
		o.Progress = func(string, int, int) {}
	}
	t0 := time.Now()
	n, d := docs.Rows, docs.Cols
	if n < 1 {
		return nil, fmt.Errorf("no documents")
	}
	ids, err := idsFor(o.IDs, n)
	if err != nil {
		return nil, err
	}
	if q := o.Queries; q.Rows > 0 {
		if q.Cols != d {
			return nil, fmt.Errorf("training queries have d=%d but the documents have d=%d", q.Cols, d)
		}
		if err := faissio.CheckFinite(q, "training queries"); err != nil {
			return nil, err
		}
	}
	var qrels [][]int32
	if o.Qrels != nil {
		if qrels, err = qrelRows(o.Qrels, ids); err != nil {
			return nil, fmt.Errorf("qrels: %w", err)
		}
	}
	rep := &Report{N: n, D: d, Index: o.Index, Quantizer: o.Quantizer, Metric: o.Metric, Train: o.Train, OPQ: o.OPQ, OPQRotation: o.OPQRotation, Nlist: o.Nlist}
	if rep.Nlist == 0 {
		rep.Nlist = DefaultNlist(n)
	}
	if o.Index.hasPQ() {
		rep.M, rep.Nbits = o.M, o.Nbits
		if rep.M == 0 {
			rep.M = DefaultM(d)
			if o.Index.fastScan() && d%(2*rep.M) == 0 {
				rep.M *= 2
			}
		}
	}
	cfg := distill.Config{
		Metric: o.Metric, Nlist: rep.Nlist, M: rep.M, Nbits: rep.Nbits, NoCoarse: o.Index.flat(),
		TrainSize: o.TrainSize, Niter: o.Niter, Seed: o.Seed, Progress: o.Progress,
	}
	if err := cfg.Check(n, d); err != nil {
		return nil, err
	}
	plan, err := planMemory(o, cfg, n, d)
	if err != nil {
		return nil, err
	}
	rep.TrainRows, rep.MemoryPlan = plan.trainRows, plan.bytes
	j := &job{o: o, src: docs, ids: ids, qrels: qrels, cfg: cfg, rep: rep, progress: o.Progress, release: func() {}}
	if goLimit := goMemoryLimit(plan.limit); goLimit > 0 {
		// The plan counts live data; the Go collector, left to itself, lets
		// the heap grow to twice the live data before it runs. Its soft
		// limit makes it collect the k-means sample and other dropped
		// buffers before the process outgrows the bound.
		old := debug.SetMemoryLimit(goLimit)
		j.release = func() { debug.SetMemoryLimit(old) }
	}
	if plan.distillSample {
		rep.DistillDocs = plan.trainRows
	}
	if o.Checkpoint != "" {
		key, err := checkpointKey(docs, o, cfg, qrels, plan.trainRows)
		if err != nil {
			j.release()
			return nil, err
		}
		if j.ck, err = openCheckpoint(o.Checkpoint, key, o.Resume); err != nil {
			j.release()
			return nil, err
		}
		rep.Resumed = j.ck.stage()
	}
	if err := j.read(ctx, plan); err != nil {
		j.release()
		return nil, err
	}
	rep.Read = time.Since(t0)
	if o.OPQ && o.Train != FAISS {
		if err := j.trainRotation(); err != nil {
			j.release()
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		j.release()
		return nil, err
	}
	return j, nil
}

// idsFor checks a build's ids, or numbers n documents 0..n-1.
func idsFor(ids []int64, n int) ([]int64, error) {
	if ids != nil {
		return ids, faissio.CheckIDs(ids, n)
	}
	ids = make([]int64, n)
	for i := range ids {
		ids[i] = int64(i)
	}
	return ids, nil
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
	// lists are the training-time lists of docs, kept for their export
	// when the distillation learned from all of them.
	lists   []int64
	release func() // restores the Go collector's memory limit
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
// rotation is frozen and written in front of the IVF index. A rotation to
// learn starts there: the k-means trains on the rotated copy (j.train)
// while the documents stay as they are for the distillation, which rotates
// them itself.
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
		if j.rotation, err = faiss.TrainOPQ(sample, j.cfg.M, int(j.cfg.Seed%(1<<31)), j.o.OPQNiter); err != nil {
			return err
		}
	}
	j.train = faiss.ApplyRotation(j.rotation, j.train)
	if j.o.Train != KMeans && j.o.OPQRotation != LearnedRotation {
		j.docs = j.train // train was docs itself
	}
	j.progress("OPQ rotation", 1, 1)
	j.rep.Fit += time.Since(t0)
	return nil
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

// fit trains the model: our k-means, then for Distill the distillation
// from the dense teacher.
func (j *job) fit(ctx context.Context) (*Trained, error) {
	t0 := time.Now()
	if j.o.Train == KMeans {
		model, err := j.trainKMeans(ctx, j.train)
		if err != nil {
			return nil, err
		}
		j.train = faissio.Matrix{} // the sample is no longer needed
		tr, err := j.trained(model)
		j.rep.Fit += time.Since(t0)
		return tr, err
	}
	o, docs := j.o, j.docs
	dc := o.Distill
	dc.Queries, dc.Qrels = o.Queries, j.qrels
	learn := j.rotation != nil && o.OPQRotation == LearnedRotation
	if j.rotation != nil && dc.Queries.Rows > 0 && !learn {
		dc.Queries = faiss.ApplyRotation(j.rotation, dc.Queries)
	}
	// The k-means and the training-time lists are those of the documents
	// rotated by FAISS's OPQ; a rotation to learn starts from that one.
	rotated := docs
	if learn {
		rotated = j.train
		dc.LearnRotation, dc.Rotation = true, j.rotation
	}
	init, err := j.trainKMeans(ctx, rotated)
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	lists, err := init.Assign(ctx, rotated)
	if err != nil {
		return nil, err
	}
	if learn {
		j.train = faissio.Matrix{} // the distillation rotates docs itself
	}
	dc.Seed = o.Seed
	dc.FixedCentroids = o.Index.flat()
	if o.ExportLists == AutoLists && !j.sampled {
		dc.ChooseLists = func(c *distill.ListChoice) { j.rep.Lists = c }
	}
	if dc.Temperature == 0 && o.Index.flat() {
		dc.Temperature = FlatTemperature
	}
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
	if learn {
		// The learned rotation goes in front of the index, and the
		// documents held are exported in its space, rotated as
		// Trained.Add rotates them.
		j.rotation = model.Rotation
		m := *model
		m.Rotation = nil
		model = &m
		if !j.sampled {
			j.docs = faiss.ApplyRotation(j.rotation, j.docs)
		}
	}
	j.rep.Distill = time.Since(t1)
	j.rep.Epochs = curve
	tr, err := j.trained(model)
	j.rep.Fit += time.Since(t0)
	if err != nil {
		return nil, err
	}
	if !j.sampled && (o.ExportLists == TrainLists || o.ExportLists == AutoLists && !j.rep.Lists.NearestWins()) {
		// Every document keeps the list it was distilled in: the trained
		// index carries them, by id, for whoever adds the documents.
		j.lists = lists
		tr.held = make(map[int64]int32, len(lists))
		for i, l := range lists {
			tr.held[j.ids[i]] = int32(l)
		}
	}
	return tr, nil
}

// trained is the trained index of a model of this job: for the HNSW
// quantizer, with the graph FAISS builds over its centroids.
func (j *job) trained(model *distill.Model) (*Trained, error) {
	j.rep.CodeBytesPerVec = model.CodeSize()
	t := &Trained{Model: model, Rotation: j.rotation, Layout: j.o.layout()}
	if j.o.Quantizer == HNSWQuantizer {
		t0 := time.Now()
		j.progress("HNSW quantizer", 0, 1)
		g, err := faiss.BuildHNSW(model.Metric, faissio.Matrix{Rows: model.Nlist, Cols: model.D, Data: model.Centroids},
			faiss.HNSWParams{M: j.o.HNSWM, EfConstruction: j.o.EfConstruction, EfSearch: j.o.EfSearch})
		if err != nil {
			return nil, err
		}
		t.HNSW = g
		j.progress("HNSW quantizer", 1, 1)
		j.rep.HNSW = time.Since(t0)
	}
	return t, nil
}

// encode fills the trained index with every document, as the trainer's
// export rule says: a distillation that held every document keeps their
// training-time lists (or, NearestLists, re-assigns them) from the
// documents in memory; otherwise every document is read again, a block at
// a time, and goes to its nearest list.
func (j *job) encode(ctx context.Context, tr *Trained) (*faissio.IVFParams, error) {
	model, docs := tr.Model, j.docs
	var lists []int64
	var codes []byte
	var err error
	switch c := j.rep.Lists; {
	case c != nil && c.Codes != nil:
		// The export choice encoded every document in the lists it chose.
		lists, codes = j.lists, c.Codes
		if c.NearestWins() {
			lists = c.Lists
		}
		j.progress("encode", docs.Rows, docs.Rows)
	case j.lists != nil:
		j.progress("encode", 0, docs.Rows)
		lists = j.lists
		if codes, err = model.Encode(ctx, docs, lists); err != nil {
			return nil, err
		}
		j.progress("encode", docs.Rows, docs.Rows)
	case j.o.Train == Distill && !j.sampled:
		if lists, codes, err = encodeAll(ctx, model, docs, j.progress); err != nil {
			return nil, err
		}
	default:
		// Only a sample was in memory, or none: every document, streamed.
		j.docs, j.train = faissio.Matrix{}, faissio.Matrix{}
		if lists, codes, err = tr.encodeSource(ctx, j.src, nil, j.progress); err != nil {
			return nil, err
		}
	}
	p := tr.Params()
	p.Lists, p.IDs, p.Codes = lists, j.ids, codes
	return &p, nil
}

// buildFAISS lets FAISS train and add (docs, which may have no rows), for a
// like-for-like comparison, and takes the index's contents back from FAISS.
func (j *job) buildFAISS(docs faissio.Matrix) (*faissio.IVFParams, error) {
	t0 := time.Now()
	train := j.docs
	if j.cfg.TrainSize > 0 && j.cfg.TrainSize < train.Rows {
		train = distill.Sample(train, j.cfg.TrainSize, j.cfg.Seed)
	}
	j.progress("FAISS train and add", 0, 1)
	ids := j.ids[:docs.Rows]
	if j.o.Index.flat() {
		ids = nil // an IndexPQ numbers its vectors itself, 0..n-1
	}
	index, err := faiss.TrainFAISS(faiss.FAISSParams{
		D: j.docs.Cols, Metric: j.cfg.Metric, Nlist: j.cfg.Nlist, M: j.cfg.M, Nbits: j.cfg.Nbits,
		Seed: int(j.cfg.Seed % (1 << 31)), Niter: j.cfg.Niter, OPQ: j.o.OPQ,
		Factory: j.o.faissKey(j.cfg.Nlist, j.cfg.M, j.cfg.Nbits),
	}, train, docs, ids)
	j.rep.Fit = time.Since(t0)
	if err != nil {
		return nil, err
	}
	defer index.Close()
	j.progress("FAISS train and add", 1, 1)
	p, err := faissParams(index, j.o.Index.flat())
	if err != nil {
		return nil, err
	}
	if p.HNSW != nil {
		// The search beam every HNSW quantizer of this build stores.
		p.HNSW.EfSearch = int32(j.o.EfSearch)
	}
	j.rep.CodeBytesPerVec = p.CodeSize()
	return p, nil
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

// encodeAll assigns every document to its nearest list and encodes it, a
// block at a time so progress can be shown.
func encodeAll(ctx context.Context, model *distill.Model, docs faissio.Matrix, progress func(string, int, int)) ([]int64, []byte, error) {
	block := encodeBlock(docs.Cols)
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
// fewer when the block and its rotated copy would pass 64 MiB, but always a
// multiple of ShardAlign. The list assignment scores a block by pieces of
// at most 2^21 scores per goroutine, so nlist does not bound it; many
// 4096-row pieces per block keep every core encoding.
func encodeBlock(d int) int {
	return max(ShardAlign, min(1<<16, (64<<20)/(8*d))/ShardAlign*ShardAlign)
}

// blockBytes is what encoding n documents of d dimensions into nlist lists
// holds besides its results: a block, its rotated copy and, per goroutine,
// one piece of list scores (at most 4096 rows and 2^21 scores, as the
// list assignment cuts them).
func blockBytes(n int64, d, nlist int) int64 {
	piece := min(n, int64(max(32, min(4096, (1<<21)/max(nlist, 1))))) * int64(nlist) * 4
	return min(n, int64(encodeBlock(d)))*int64(d)*8 + int64(runtime.GOMAXPROCS(0))*piece
}

// ShardAlign is the alignment of a shard whose documents are encoded
// exactly as Run encodes them: every product the encoding makes covers
// rows in blocks that start at multiples of ShardAlign in the collection
// (the encoding blocks, the encoder's 4096-row blocks, the list
// assignment's power-of-two blocks, the OPQ rotation's blocks), and a
// product's last bits depend on the rows it is computed with. A shard
// that starts elsewhere gives the same index but for rare documents at a
// tie between two lists or codewords (one in 10^7 was seen to move).
const ShardAlign = 4096
