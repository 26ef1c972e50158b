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
)

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
	// TrainLists keeps each document in the list it had during training
	// (the default; the student learned with that assignment).
	TrainLists ExportLists = iota
	// NearestLists re-assigns every document to its nearest learned
	// centroid.
	NearestLists
)

var (
	kindNames    = []string{"ivfpq", "ivfflat"}
	trainerNames = []string{"distill", "kmeans", "faiss"}
	exportNames  = []string{"train", "nearest"}
)

// ParseKind reads ivfpq or ivfflat.
func ParseKind(s string) (Kind, error) { return distill.ParseEnum[Kind]("--index", s, kindNames) }

// ParseTrainer reads distill, kmeans or faiss.
func ParseTrainer(s string) (Trainer, error) {
	return distill.ParseEnum[Trainer]("--train", s, trainerNames)
}

// ParseExportLists reads train or nearest.
func ParseExportLists(s string) (ExportLists, error) {
	return distill.ParseEnum[ExportLists]("--export-lists", s, exportNames)
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
	// M is the number of PQ sub-quantizers (IVFPQ); 0 means DefaultM(d).
	M int
	// Nbits is the bits per PQ code, 1..8; 0 means 8.
	Nbits int
	Train Trainer
	// TrainSize is the random training sample; 0 means FAISS's 256 points
	// per centroid and per codeword (DefaultTrainSize).
	TrainSize int
	// Niter is the k-means iterations, IVF and PQ; 0 means 25.
	Niter int
	// Seed makes the build reproducible: the same inputs, options and seed
	// give the same file, byte for byte. 0 means 1234.
	Seed uint64
	// OPQ puts FAISS's OPQ rotation (trained first, then frozen) in front
	// of an IVFPQ index; training happens in the rotated space.
	OPQ bool

	// IDs are the documents' FAISS ids; nil means 0..n-1. They must be
	// unique and non-negative.
	IDs []int64

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
	DefaultSeed  = 1234
)

// Validate reports option values that are wrong whatever the documents,
// with the command line's one-line message, so a program gets the errors
// the distillvq command gives. Run calls it first.
func (o *Options) Validate() error {
	for _, err := range []error{
		distill.CheckEnum("--index", o.Index, kindNames),
		distill.CheckEnum("--train", o.Train, trainerNames),
		distill.CheckEnum("--export-lists", o.ExportLists, exportNames),
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
	case o.Index == IVFPQ && (o.Nbits < 0 || o.Nbits > 8):
		return fmt.Errorf("--nbits %d outside 1..8", o.Nbits)
	case o.OPQ && o.Index != IVFPQ:
		return fmt.Errorf("--opq needs --index ivfpq")
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
	if o.Nbits == 0 && o.Index == IVFPQ {
		o.Nbits = DefaultNbits
	}
	if o.Index == IVFFlat {
		o.M, o.Nbits = 0, 0
	}
	if o.Niter == 0 {
		o.Niter = DefaultNiter
	}
	if o.Seed == 0 {
		o.Seed = DefaultSeed
	}
	return o
}
