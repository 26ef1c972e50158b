package build

import (
	"fmt"
	"math"

	"github.com/distillvq/distillvq/distill"
	"github.com/distillvq/distillvq/faissio"
)

// Kind is the FAISS structure a build fills.
type Kind int

const (
	// IVFPQ is FAISS's IndexIVFPQ: residuals to the list centroid,
	// product-quantized (the default).
	IVFPQ Kind = iota
	// IVFFlat is FAISS's IndexIVFFlat: the vectors themselves in lists.
	IVFFlat
	// IVFPQFastScan is FAISS's IndexIVFPQFastScan (IVF{n},PQ{M}x4fsr):
	// 4-bit PQ codes of the residuals, packed for FAISS's SIMD scan on
	// 8-bit look-up tables.
	IVFPQFastScan
	// PQ is FAISS's IndexPQ: PQ codes of the vectors, no IVF, searched
	// exhaustively.
	PQ
	// PQFastScan is FAISS's IndexPQFastScan: 4-bit PQ codes of the
	// vectors, no IVF, SIMD-scanned.
	PQFastScan
)

// Quantizer is an IVF index's coarse quantizer.
type Quantizer int

const (
	// FlatQuantizer compares a query with every centroid (IndexFlat, the
	// default).
	FlatQuantizer Quantizer = iota
	// HNSWQuantizer searches the centroids through an HNSW graph
	// (IndexHNSWFlat) that FAISS builds over the learned centroids: what
	// FAISS's guidelines use from nlist 16k up.
	HNSWQuantizer
)

// hasPQ reports whether k stores PQ codes.
func (k Kind) hasPQ() bool { return k != IVFFlat }

// fastScan reports whether k is one of FAISS's 4-bit FastScan kinds.
func (k Kind) fastScan() bool { return k == IVFPQFastScan || k == PQFastScan }

// flat reports whether k has no IVF: one list, centroid zero.
func (k Kind) flat() bool { return k == PQ || k == PQFastScan }

// Trainer is what learns the centroids and codebooks.
type Trainer int

const (
	// Distill is Distill-VQ, started from KMeans (the default).
	Distill Trainer = iota
	// KMeans is our FAISS-style k-means.
	KMeans
	// FAISS is FAISS's own training and add, through cgo, for comparison.
	FAISS
)

// ExportLists is where a distilled build files each document.
type ExportLists int

const (
	// AutoLists (the default) keeps whichever of TrainLists and
	// NearestLists validates better: the one whose smallest gain in
	// held-out R10@10 over the k-means start, at nprobe 1, 2, 4, ... up to
	// 4 x nlist/16, is the larger; with pseudo-queries only (no training
	// queries) the nearest lists. Without held-out queries, or with a
	// learned rotation, it keeps the training-time lists.
	AutoLists ExportLists = iota
	// TrainLists keeps each document in the list it had during training
	// (the student learned with that assignment).
	TrainLists
	// NearestLists re-assigns every document to its nearest learned
	// centroid.
	NearestLists
)

// OPQRotation is what becomes of the OPQ rotation once FAISS has trained
// it (Options.OPQ).
type OPQRotation int

const (
	// FrozenRotation keeps FAISS's rotation as trained (build --opq,
	// --opq faiss; the default).
	FrozenRotation OPQRotation = iota
	// LearnedRotation starts from FAISS's rotation and distils it with the
	// centroids and codebooks (build --opq learn; distill.DistillConfig's
	// LearnRotation).
	LearnedRotation
)

var (
	kindNames      = []string{"ivfpq", "ivfflat", "ivfpqfs", "pq", "pqfs"}
	opqNames       = []string{"faiss", "learn"}
	quantizerNames = []string{"flat", "hnsw"}
	trainerNames   = []string{"distill", "kmeans", "faiss"}
	exportNames    = []string{"auto", "train", "nearest"}
)

// ParseKind reads ivfpq, ivfflat, ivfpqfs, pq or pqfs.
func ParseKind(s string) (Kind, error) { return distill.ParseEnum[Kind]("--index", s, kindNames) }

// ParseQuantizer reads flat or hnsw.
func ParseQuantizer(s string) (Quantizer, error) {
	return distill.ParseEnum[Quantizer]("--quantizer", s, quantizerNames)
}

func (q Quantizer) String() string { return name(int(q), quantizerNames) }

// MarshalText writes the CLI spelling.
func (q Quantizer) MarshalText() ([]byte, error) { return []byte(q.String()), nil }

// UnmarshalText reads the CLI spelling.
func (q *Quantizer) UnmarshalText(b []byte) (err error) { *q, err = ParseQuantizer(string(b)); return }

// ParseTrainer reads distill, kmeans or faiss.
func ParseTrainer(s string) (Trainer, error) {
	return distill.ParseEnum[Trainer]("--train", s, trainerNames)
}

// ParseExportLists reads auto, train or nearest.
func ParseExportLists(s string) (ExportLists, error) {
	return distill.ParseEnum[ExportLists]("--export-lists", s, exportNames)
}

// ParseOPQRotation reads faiss or learn, the value of --opq.
func ParseOPQRotation(s string) (OPQRotation, error) {
	return distill.ParseEnum[OPQRotation]("--opq", s, opqNames)
}

func (r OPQRotation) String() string { return name(int(r), opqNames) }

// MarshalText writes the CLI spelling.
func (r OPQRotation) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads the CLI spelling.
func (r *OPQRotation) UnmarshalText(b []byte) (err error) {
	*r, err = ParseOPQRotation(string(b))
	return
}

func (k Kind) String() string        { return name(int(k), kindNames) }
func (t Trainer) String() string     { return name(int(t), trainerNames) }
func (e ExportLists) String() string { return name(int(e), exportNames) }

// MarshalText writes the CLI spelling.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// MarshalText writes the CLI spelling.
func (t Trainer) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// MarshalText writes the CLI spelling.
func (e ExportLists) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// UnmarshalText reads the CLI spelling.
func (k *Kind) UnmarshalText(b []byte) (err error) { *k, err = ParseKind(string(b)); return }

// UnmarshalText reads the CLI spelling.
func (t *Trainer) UnmarshalText(b []byte) (err error) { *t, err = ParseTrainer(string(b)); return }

// UnmarshalText reads the CLI spelling.
func (e *ExportLists) UnmarshalText(b []byte) (err error) {
	*e, err = ParseExportLists(string(b))
	return
}

func name(v int, names []string) string {
	if v < 0 || v >= len(names) {
		return fmt.Sprint(v)
	}
	return names[v]
}

// Options are the parameters of one build. The zero value builds what the
// distillvq command builds without flags: a distilled inner-product IVFPQ
// with autofaiss's nlist, 8-bit codes and the default M. Fields left zero
// take the defaults documented on them; Validate says what is wrong with
// the others, in the command line's words.
type Options struct {
	Index  Kind
	Metric faissio.Metric
	// Nlist is the number of inverted lists; 0 means DefaultNlist(n).
	Nlist int
	// M is the number of PQ sub-quantizers; 0 means DefaultM(d) (for the
	// 4-bit FastScan kinds, twice that when it divides d, so that codes
	// keep the bytes of the 8-bit default).
	M int
	// Nbits is the bits per PQ code, 1..8; 0 means 8 (4 for FastScan, its
	// only size).
	Nbits int
	// Quantizer is the IVF kinds' coarse quantizer; with HNSWQuantizer,
	// HNSWM is the graph's neighbours per centroid (0 means 32),
	// EfConstruction its build beam (0 means 40) and EfSearch the search
	// beam stored in the file (0 means DefaultEfSearch).
	Quantizer                       Quantizer
	HNSWM, EfConstruction, EfSearch int
	Train                           Trainer
	// TrainSize is the random training sample; 0 means FAISS's 256 points
	// per centroid and per codeword (DefaultTrainSize).
	TrainSize int
	// Niter is the k-means iterations, IVF and PQ; 0 means 25.
	Niter int
	// Seed makes the build reproducible: the same inputs, options and seed
	// give the same file, byte for byte. 0 means 1234.
	Seed uint64
	// OPQ puts FAISS's OPQ rotation (trained first) in front of an IVFPQ
	// index; training happens in the rotated space. OPQRotation says
	// whether the rotation then stays as FAISS trained it or, with the
	// distill trainer, is learned with the centroids and codebooks.
	OPQ         bool
	OPQRotation OPQRotation
	// OPQNiter is the iterations of FAISS's OPQ training; 0 means
	// FAISS's 50. Fewer make the build faster and the rotation worse,
	// learned or not (see DefaultOPQNiter).
	OPQNiter int

	// IDs are the documents' FAISS ids; nil means 0..n-1. They must be
	// unique and non-negative.
	IDs []int64
	// Column is the vector column of Parquet documents, for the builds
	// that open the documents by their path themselves (the distributed
	// build and its workers); "" means the only list column of floats.
	// Run and Train take a Source already open and do not look at it.
	Column string

	// Queries are the training queries of the distillation (unlabelled);
	// empty means pseudo-queries drawn from the documents only.
	Queries faissio.Matrix
	// Qrels optionally lists labelled relevant documents, by id, for each
	// training query; they join the query's candidates.
	Qrels [][]int64
	// Distill holds the distillation's settings; its Queries, Qrels, Seed,
	// Progress, Checkpoint and Resume are set by the build.
	Distill distill.DistillConfig
	// ExportLists says where a distilled build files the documents.
	ExportLists ExportLists

	// MaxMemory bounds the build's planned peak memory in bytes: 0 means
	// the memory the machine has available, -1 no bound. The plan is made
	// before any work: a build that cannot fit fails at once, saying what
	// would.
	MaxMemory int64

	// Checkpoint, when set, is a folder where each finished training stage
	// is saved; Resume continues from what it holds, ending with the same
	// index as an uninterrupted build.
	Checkpoint string
	Resume     bool

	// Progress, when set, hears of each phase's advance: "read", "IVF
	// k-means", "PQ k-means", "OPQ rotation", "distill: ..." (its live
	// figures after the colon), "encode".
	Progress func(phase string, done, total int)
}

// DefaultNlist is autofaiss's choice, 4*sqrt(n), kept at or below n/39 so
// that every list gets the 39 training points FAISS asks for.
func DefaultNlist(n int) int {
	nl := int(4 * math.Sqrt(float64(n)))
	return max(1, min(nl, n/39))
}

// DefaultM is the largest divisor of d that leaves sub-spaces of at least 4
// dimensions and is at most 64: about 4 dimensions per byte of code for
// small d, 64-byte codes for large d.
func DefaultM(d int) int {
	for m := min(64, d/4); m > 1; m-- {
		if d%m == 0 {
			return m
		}
	}
	return 1
}

// DefaultTrainSize is FAISS's sample: 256 points per coarse centroid and,
// for PQ, per codeword of 2^nbits.
func DefaultTrainSize(nlist, nbits int) int {
	n := 256 * nlist
	if nbits > 0 {
		n = max(n, 256<<nbits)
	}
	return n
}

// Defaults for the options whose zero value stands for something else.
const (
	DefaultNbits = 8
	DefaultNiter = 25
	// DefaultOPQNiter is FAISS's OPQMatrix.niter, Options.OPQNiter's
	// default for frozen and learned rotations alike. Starting the
	// learned rotation from 10 iterations made the build 2.4x faster on
	// GloVe 100k and 2.8x on a 30k x 512 set, but R10@10 at nlist/16
	// fell .005 and .019 below the frozen rotation of 50 (.5620 against
	// .5669, .5125 against .5313): distillation does not make up for a
	// worse start.
	DefaultOPQNiter = 50
	DefaultSeed     = 1234

	// FlatTemperature is the distillation's default temperature for the
	// kinds without IVF, where only the codebooks learn: R10@10 of PQ M20
	// at 0.2 (the IVF kinds' default), 0.4, 0.8, 1.6 and 3.2 was .5123,
	// .5260, .5424, .5589 and .5576 on GloVe 100k (FAISS's PQ: .4671) and
	// .6741, .6781, .6835, .6811 and .6841 on GloVe 20k (FAISS: .6564).
	FlatTemperature = 1.6

	DefaultHNSWM          = 32
	DefaultEfConstruction = 40
	// DefaultEfSearch is the HNSW quantizer's stored search beam: FAISS's
	// own default is 16, which at nprobe 16 and beyond loses lists the
	// flat quantizer finds; FAISS widens the beam to nprobe when nprobe
	// is larger.
	DefaultEfSearch = 128
)

// Validate reports option values that are wrong whatever the documents,
// with the command line's one-line message, so a program gets the errors
// the distillvq command gives. Run calls it first.
func (o *Options) Validate() error {
	for _, err := range []error{
		distill.CheckEnum("--index", o.Index, kindNames),
		distill.CheckEnum("--train", o.Train, trainerNames),
		distill.CheckEnum("--export-lists", o.ExportLists, exportNames),
		distill.CheckEnum("--quantizer", o.Quantizer, quantizerNames),
		distill.CheckEnum("--opq", o.OPQRotation, opqNames),
	} {
		if err != nil {
			return err
		}
	}
	switch {
	case o.Metric != faissio.InnerProduct && o.Metric != faissio.L2:
		return fmt.Errorf("--metric %v: want ip or l2", o.Metric)
	case o.Nlist < 0:
		return fmt.Errorf("--nlist %d must be at least 1", o.Nlist)
	case o.M < 0:
		return fmt.Errorf("--m %d must be at least 1", o.M)
	case o.Index.hasPQ() && (o.Nbits < 0 || o.Nbits > 8):
		return fmt.Errorf("--nbits %d outside 1..8", o.Nbits)
	case o.Index.fastScan() && o.Nbits != 0 && o.Nbits != 4:
		return fmt.Errorf("--nbits %d: --index %v codes are 4 bits", o.Nbits, o.Index)
	case o.OPQ && !o.Index.hasPQ():
		return fmt.Errorf("--opq needs a PQ index (--index ivfpq, ivfpqfs, pq or pqfs)")
	case o.OPQNiter < 0:
		return fmt.Errorf("--opq-niter %d must be at least 1", o.OPQNiter)
	case o.OPQNiter > 0 && !o.OPQ:
		return fmt.Errorf("--opq-niter is for the OPQ rotation: it needs --opq")
	case o.OPQRotation == LearnedRotation && !o.OPQ:
		return fmt.Errorf("a learned rotation is an OPQ rotation: it needs OPQ (--opq learn)")
	case o.OPQRotation == LearnedRotation && o.Train != Distill:
		return fmt.Errorf("--opq learn learns the rotation by distillation: it needs --train distill, not %v", o.Train)
	case o.Quantizer == HNSWQuantizer && o.Index.flat():
		return fmt.Errorf("--quantizer hnsw needs an IVF index: --index %v has no coarse quantizer", o.Index)
	case o.HNSWM < 0 || o.HNSWM == 1 || o.HNSWM > 1<<16:
		return fmt.Errorf("--hnsw-m %d: want 2 to 65536", o.HNSWM)
	case o.EfSearch < 0 || o.EfConstruction < 0:
		return fmt.Errorf("--ef-search %d, --ef-construction %d must be at least 1", o.EfSearch, o.EfConstruction)
	case o.Index.flat() && o.Nlist > 1:
		return fmt.Errorf("--nlist %d: --index %v has no inverted lists", o.Nlist, o.Index)
	case o.Index.flat() && o.IDs != nil:
		return fmt.Errorf("--ids: --index %v numbers its vectors 0..n-1 (FAISS's IndexPQ stores no ids); use an IVF index", o.Index)
	case o.Niter < 0:
		return fmt.Errorf("--niter %d must be at least 1", o.Niter)
	case o.TrainSize < 0:
		return fmt.Errorf("--train-size %d must not be negative", o.TrainSize)
	case o.Resume && o.Checkpoint == "":
		return fmt.Errorf("--resume needs --checkpoint DIR")
	case o.Checkpoint != "" && o.Train == FAISS:
		return fmt.Errorf("--checkpoint works with --train distill or kmeans: FAISS's own training cannot be saved part-way")
	case o.Qrels != nil && o.Queries.Rows == 0:
		return fmt.Errorf("--qrels needs --queries: labels refer to training queries")
	case o.Qrels != nil && len(o.Qrels) != o.Queries.Rows:
		return fmt.Errorf("labels for %d queries, but there are %d training queries", len(o.Qrels), o.Queries.Rows)
	case o.Queries.Rows > 0 && len(o.Queries.Data) != o.Queries.Rows*o.Queries.Cols:
		return fmt.Errorf("training queries: %d values for %d x %d", len(o.Queries.Data), o.Queries.Rows, o.Queries.Cols)
	}
	if o.Train == Distill {
		return o.Distill.Check()
	}
	return nil
}

// withDefaults fills the zero fields that do not depend on the documents.
func (o Options) withDefaults() Options {
	if o.Nbits == 0 && o.Index.hasPQ() {
		o.Nbits = DefaultNbits
		if o.Index.fastScan() {
			o.Nbits = 4
		}
	}
	if o.Index.flat() {
		o.Nlist = 1
	}
	if o.Quantizer == HNSWQuantizer {
		if o.HNSWM == 0 {
			o.HNSWM = DefaultHNSWM
		}
		if o.EfConstruction == 0 {
			o.EfConstruction = DefaultEfConstruction
		}
		if o.EfSearch == 0 {
			o.EfSearch = DefaultEfSearch
		}
	}
	if o.Index == IVFFlat {
		o.M, o.Nbits = 0, 0
	}
	if o.Niter == 0 {
		o.Niter = DefaultNiter
	}
	if o.OPQNiter == 0 && o.OPQ {
		o.OPQNiter = DefaultOPQNiter
	}
	if o.Seed == 0 {
		o.Seed = DefaultSeed
	}
	return o
}

// layout is how the trained parameters are stored: FastScan packing, or no
// IVF at all.
func (o *Options) layout() Layout {
	return Layout{FastScan: o.Index.fastScan(), Flat: o.Index.flat()}
}
