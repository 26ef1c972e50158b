// Package distributed runs the build of a collection too large for one
// machine on Apache Beam: the index is trained where the build is launched
// (build.Train, on the sample that fits), every shard of the documents is
// assigned and encoded by the workers (Trained.Add), and the parts are
// merged by ranges of lists on the workers, then concatenated once
// (faissio.Merge). The file is the one build.Run writes for the whole
// collection, byte for byte.
//
// The pipeline's elements are shard descriptors (the collection's path and
// a range of its rows, the ids), part and segment descriptors: never
// vectors. Shards start at multiples of build.ShardAlign rows, so that
// every document is encoded in the very blocks build.Run encodes it in. Each
// worker loads the trained index from its path once (Setup). Parts,
// segments and the trained index live in a work folder every worker can
// read and write (local for Prism; a shared filesystem, NFS, Filestore or a
// FUSE-mounted bucket, on a cluster). Every file is written atomically
// under a name fixed by its descriptor, so a retried bundle, or a rerun of
// the whole pipeline, rewrites or reuses it harmlessly; a rerun keeps the
// parts already made from the same trained index.
package distributed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/distillvq/distillvq/distill/build"
	"github.com/distillvq/distillvq/faissio"
)

// Shard is one unit of work: rows [Start, End) of the collection at Docs
// (a file, or a folder or glob of them: rows count across files), whose
// ids are the row numbers. Start is a multiple of build.ShardAlign, so
// that every document is encoded in the blocks Run would encode it in,
// and the file is Run's byte for byte.
//
// Column is the vector column of a Parquet collection (build.Options'
// Column). Its shards are not cut at row groups, whose sizes are the
// writer's and differ from file to file: cutting there would encode
// documents in other blocks than Run's and lose the byte-identical file.
// A shard that starts inside a row group is read from the page holding
// Start where the file has a page index, and otherwise after reading past
// the group's earlier rows (at most one row group, decoded once and never
// converted); it then reads on across row groups and files page by page.
type Shard struct {
	Index      int
	Docs       string
	Column     string
	Start, End int
}

// Part is a shard's encoded index: its file and number of vectors.
type Part struct {
	Shard int
	Path  string
	Rows  int
}

// Segment is the merged bytes of lists [Lo, Hi), in a file.
type Segment struct {
	Index  int
	Lo, Hi int
	Path   string
}

// Options say how to run a distributed build.
type Options struct {
	// Build is what to train, as for build.Run; its IDs must be nil: the
	// documents are numbered by their row in the collection.
	Build build.Options
	// Work is the folder of the trained index, parts and segments;
	// default: OUTPUT.work beside the output.
	Work string
	// ShardRows is the rows of one shard (default 1,048,576, rounded to
	// the nearest multiple of build.ShardAlign, at least one; the last
	// shard takes what is left): the unit a worker encodes at once, and so
	// its memory (ShardMemory).
	ShardRows int
	// Workers is the number of independent branches the shards are dealt
	// to (default 1): runners with one bundle per stage, as Prism, run that
	// many at once; cluster runners spread each branch's shards further.
	Workers int
	// Ranges is the number of list ranges merged by the workers (default
	// 4), before the one sequential concatenation.
	Ranges int
	// Attempts is how many times the pipeline is run before the build
	// fails (default 3); a rerun keeps the parts already made.
	Attempts int
	// Execute runs a pipeline on the chosen runner (beamx.Run for the
	// --runner flag, or prism.Execute).
	Execute func(context.Context, *beam.Pipeline) error
	// Progress hears of the launcher's phases.
	Progress func(phase string, done, total int)
}

// Report says what a distributed build did.
type Report struct {
	Train    *build.Report `json:"train"`
	Shards   int           `json:"shards"`
	Rows     int           `json:"rows"`
	Attempts int           `json:"attempts"`
	// ShardMemory is the planned peak of a worker encoding one shard, the
	// figure to size workers by.
	ShardMemory int64         `json:"shard_memory_bytes"`
	TrainTime   time.Duration `json:"train_ns"`
	Pipeline    time.Duration `json:"pipeline_ns"`
	Bytes       int64         `json:"bytes"`
}

func init() {
	register.DoFn3x1[context.Context, Shard, func(Part), error](&encodeFn{})
	register.DoFn4x1[context.Context, int, func(*Part) bool, func(Segment), error](&mergeRangeFn{})
	register.DoFn3x1[context.Context, int, func(*Segment) bool, error](&concatFn{})
	register.Emitter1[Part]()
	register.Emitter1[Segment]()
	register.Iter1[Part]()
	register.Iter1[Segment]()
	beam.RegisterType(reflect.TypeOf((*Shard)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*Part)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*Segment)(nil)).Elem())
}

// Build trains on docs where it runs, then encodes and merges on the
// runner, and writes out (atomically: a failed or killed pipeline leaves
// none).
func Build(ctx context.Context, docs, out string, o Options) (*Report, error) {
	if o.Build.IDs != nil {
		return nil, errors.New("the distributed build numbers documents by their row; --ids is for build and add")
	}
	if o.Execute == nil {
		return nil, errors.New("no runner to execute the pipeline")
	}
	o = o.withDefaults(out)
	if o.ShardRows < 1 || o.Workers < 1 || o.Ranges < 1 || o.Attempts < 1 {
		return nil, fmt.Errorf("shard rows %d, workers %d, ranges %d and attempts %d must be at least 1", o.ShardRows, o.Workers, o.Ranges, o.Attempts)
	}
	progress := o.Progress
	if progress == nil {
		progress = func(string, int, int) {}
	}
	src, err := faissio.OpenSourceWith(docs, faissio.SourceOptions{Column: o.Build.Column})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(o.Work, "parts"), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(o.Work, "merge"), 0o755); err != nil {
		return nil, err
	}
	rep := &Report{Rows: src.Rows}
	t0 := time.Now()
	bo := o.Build
	bo.Progress = progress
	tr, trep, err := build.Train(ctx, src, bo)
	if err != nil {
		return nil, err
	}
	rep.Train, rep.TrainTime = trep, time.Since(t0)
	// The nearest multiple of the alignment, so that 10^6 rows make shards
	// of 1,003,520 rather than 999,424 and a small remainder.
	shardRows := max(build.ShardAlign, (o.ShardRows+build.ShardAlign/2)/build.ShardAlign*build.ShardAlign)
	shards := shardsOf(docs, o.Build.Column, src.Rows, shardRows)
	rep.Shards = len(shards)
	rep.ShardMemory = build.AddMemory(tr, min(shardRows, src.Rows))
	trained := filepath.Join(o.Work, "trained.faiss")
	if err := tr.WriteFile(ctx, trained); err != nil {
		return nil, err
	}
	t0 = time.Now()
	for rep.Attempts = 1; ; rep.Attempts++ {
		progress("pipeline", rep.Attempts-1, o.Attempts)
		p := pipeline(shards, trained, out, o, tr.Model.Nlist)
		err = o.Execute(ctx, p)
		if err == nil || rep.Attempts == o.Attempts || ctx.Err() != nil {
			break
		}
	}
	rep.Pipeline = time.Since(t0)
	if err != nil {
		return nil, fmt.Errorf("the pipeline failed %d time(s), last: %w", rep.Attempts, err)
	}
	st, err := os.Stat(out)
	if err != nil {
		return nil, fmt.Errorf("the pipeline ended without writing %s: %w", out, err)
	}
	rep.Bytes = st.Size()
	progress("pipeline", o.Attempts, o.Attempts)
	return rep, nil
}

func (o Options) withDefaults(out string) Options {
	if o.Work == "" {
		o.Work = out + ".work"
	}
	if o.ShardRows == 0 {
		o.ShardRows = 1 << 20
	}
	if o.Workers == 0 {
		o.Workers = 1
	}
	if o.Ranges == 0 {
		o.Ranges = 4
	}
	if o.Attempts == 0 {
		o.Attempts = 3
	}
	return o
}

// shardsOf cuts the n rows of the collection at docs (its vectors in
// column, if Parquet) into shards of rows rows (the last may be shorter).
func shardsOf(docs, column string, n, rows int) []Shard {
	var shards []Shard
	for start := 0; start < n; start += rows {
		shards = append(shards, Shard{Index: len(shards), Docs: docs, Column: column, Start: start, End: min(start+rows, n)})
	}
	return shards
}

// pipeline is encode (the shards dealt to o.Workers branches), merge by
// list ranges, concatenate.
func pipeline(shards []Shard, trained, out string, o Options, nlist int) *beam.Pipeline {
	p, s := beam.NewPipelineWithRoot()
	var parts []beam.PCollection
	for w := range min(o.Workers, len(shards)) {
		var mine []any
		for i := w; i < len(shards); i += o.Workers {
			mine = append(mine, shards[i])
		}
		sw := s.Scope("encode-" + strconv.Itoa(w))
		col := beam.Reshuffle(sw, beam.Create(sw, mine...))
		parts = append(parts, beam.ParDo(sw, &encodeFn{Trained: trained, Work: o.Work}, col))
	}
	all := beam.GroupByKey(s, beam.AddFixedKey(s, beam.Flatten(s, parts...)))
	var segs []beam.PCollection
	ranges := splitLists(nlist, o.Ranges)
	for r := range len(ranges) - 1 {
		sr := s.Scope("merge-" + strconv.Itoa(r))
		segs = append(segs, beam.ParDo(sr, &mergeRangeFn{Index: r, Lo: ranges[r], Hi: ranges[r+1], Work: o.Work, Shards: len(shards)}, all))
	}
	final := beam.GroupByKey(s, beam.AddFixedKey(s, beam.Flatten(s, segs...)))
	beam.ParDo0(s, &concatFn{Out: out, Ranges: len(ranges) - 1, Work: o.Work, Shards: len(shards)}, final)
	return p
}

// splitLists cuts nlist lists into at most n ranges of about equal counts.
func splitLists(nlist, n int) []int {
	n = max(1, min(n, nlist))
	cuts := make([]int, n+1)
	for i := range cuts {
		cuts[i] = i * nlist / n
	}
	return cuts
}

// partPath is where shard i's part is written.
func partPath(work string, i int) string {
	return filepath.Join(work, "parts", fmt.Sprintf("part-%06d.faiss", i))
}

// encodeFn encodes one shard with the trained index into its part file.
type encodeFn struct {
	Trained, Work string
	tr            *build.Trained
}

// Setup loads the trained index once per worker.
func (f *encodeFn) Setup() error {
	tr, _, err := build.ReadIndexFile(f.Trained)
	f.tr = tr
	return err
}

// ProcessElement encodes shard s, or reuses its part from an earlier
// attempt when that part is complete and of this training.
func (f *encodeFn) ProcessElement(ctx context.Context, s Shard, emit func(Part)) error {
	path := partPath(f.Work, s.Index)
	if reusable(path, f.tr, s.End-s.Start) {
		emit(Part{Shard: s.Index, Path: path, Rows: s.End - s.Start})
		return nil
	}
	if err := injectedFailure(f.Work, s.Index); err != nil {
		return err
	}
	if d, err := time.ParseDuration(os.Getenv("DISTILLVQ_TEST_SHARD_DELAY")); err == nil {
		// For the tests that stop a pipeline while it runs.
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	src, err := faissio.OpenSourceWith(s.Docs, faissio.SourceOptions{Column: s.Column})
	if err != nil {
		return err
	}
	if src, err = src.Slice(s.Start, s.End); err != nil {
		return err
	}
	ids := make([]int64, src.Rows)
	for i := range ids {
		ids[i] = int64(s.Start + i)
	}
	part, err := f.tr.Add(ctx, src, ids, nil)
	if err != nil {
		return fmt.Errorf("shard %d (rows %d-%d): %w", s.Index, s.Start, s.End, err)
	}
	if err := faissio.WriteIVFFile(ctx, path, part, nil); err != nil {
		return err
	}
	emit(Part{Shard: s.Index, Path: path, Rows: src.Rows})
	return nil
}

// reusable reports whether path is a complete part of rows vectors from
// the trained index tr, written by an earlier attempt.
func reusable(path string, tr *build.Trained, rows int) bool {
	x, err := faissio.OpenIVFFile(path)
	if err != nil {
		return false
	}
	defer x.Close()
	got, err := x.Trained()
	want := tr.Params()
	return err == nil && x.Ntotal() == int64(rows) && got.D == want.D && got.Metric == want.Metric &&
		got.M == want.M && got.Nbits == want.Nbits && slices.Equal(got.Centroids, want.Centroids) &&
		slices.Equal(got.Codebooks, want.Codebooks) && slices.Equal(got.Rotation, want.Rotation)
}

// injectedFailure fails shard i's first attempt when
// DISTILLVQ_TEST_FAIL_SHARD names it, for the tests of retries: the worker
// has died before writing its part.
func injectedFailure(work string, i int) error {
	if os.Getenv("DISTILLVQ_TEST_FAIL_SHARD") != strconv.Itoa(i) {
		return nil
	}
	marker := filepath.Join(work, fmt.Sprintf(".failed-%d", i))
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		return err
	}
	return fmt.Errorf("shard %d: injected failure (DISTILLVQ_TEST_FAIL_SHARD)", i)
}

// mergeRangeFn writes the merged lists [Lo, Hi) of all parts to a segment.
type mergeRangeFn struct {
	Index, Lo, Hi int
	Work          string
	Shards        int
}

// ProcessElement takes every part (one key) and writes its range.
func (f *mergeRangeFn) ProcessElement(ctx context.Context, _ int, parts func(*Part) bool, emit func(Segment)) error {
	paths := make([]string, f.Shards)
	var p Part
	n := 0
	for parts(&p) {
		if p.Shard < 0 || p.Shard >= f.Shards || paths[p.Shard] != "" {
			return fmt.Errorf("merge: shard %d's part twice or out of range", p.Shard)
		}
		paths[p.Shard] = p.Path
		n++
	}
	if n != f.Shards {
		return fmt.Errorf("merge: %d of %d parts", n, f.Shards)
	}
	m, closeAll, err := openMerge(ctx, paths)
	if err != nil {
		return err
	}
	defer closeAll()
	seg := filepath.Join(f.Work, "merge", fmt.Sprintf("segment-%04d.bin", f.Index))
	err = faissio.WriteFileAtomic(seg, func(out *os.File) error { return m.WriteRange(ctx, out, f.Lo, f.Hi) })
	if err != nil {
		return err
	}
	emit(Segment{Index: f.Index, Lo: f.Lo, Hi: f.Hi, Path: seg})
	return nil
}

// openMerge opens the parts, in shard order, for a merge.
func openMerge(ctx context.Context, paths []string) (*faissio.Merge, func(), error) {
	var files []*faissio.IVFFile
	closeAll := func() {
		for _, x := range files {
			x.Close()
		}
	}
	for _, path := range paths {
		x, err := faissio.OpenIVFFile(path)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		files = append(files, x)
	}
	m, err := faissio.NewMerge(ctx, files)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return m, closeAll, nil
}

// concatFn writes the merged file: the header, then the segments in order.
type concatFn struct {
	Out            string
	Ranges, Shards int
	Work           string
}

// ProcessElement takes every segment (one key).
func (f *concatFn) ProcessElement(ctx context.Context, _ int, segs func(*Segment) bool) error {
	paths := make([]string, f.Ranges)
	var s Segment
	for segs(&s) {
		if s.Index < 0 || s.Index >= f.Ranges {
			return fmt.Errorf("merge: segment %d out of range", s.Index)
		}
		paths[s.Index] = s.Path
	}
	parts := make([]string, f.Shards)
	for i := range parts {
		parts[i] = partPath(f.Work, i)
	}
	m, closeAll, err := openMerge(ctx, parts)
	if err != nil {
		return err
	}
	defer closeAll()
	return faissio.WriteFileAtomic(f.Out, func(out *os.File) error {
		if err := m.WriteHeader(out); err != nil {
			return err
		}
		for i, p := range paths {
			if p == "" {
				return fmt.Errorf("merge: segment %d missing", i)
			}
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, in)
			in.Close()
			if err != nil {
				return err
			}
		}
		return ctx.Err()
	})
}
