package distill

import (
	"fmt"
	"strconv"
	"strings"
)

// The distillation's choices are small enums whose zero value is the
// default, so a zero DistillConfig trains as the CLI does. Each parses its
// CLI spelling (Parse*) and marshals as it, so reports and checkpoint keys
// read as the command line does.

// LossKind names the similarity function between the teacher's and the
// student's scores of a query's candidates (the Distill-VQ paper, Table 3).
type LossKind int

const (
	ListNet   LossKind = iota // cross-entropy of the two softmaxes (default)
	KL                        // KL(student ‖ teacher)
	MSE                       // squared error of the scores
	MarginMSE                 // squared error of score margins
	RankNet                   // teacher-weighted pairwise logistic loss
)

// IVFLossKind names the loss that trains the coarse centroids.
type IVFLossKind int

const (
	// ListLevel compares the teacher's mass in each list with a softmax
	// over all lists (default; on GloVe 20k it beat DocLevel at every
	// nprobe).
	ListLevel IVFLossKind = iota
	// DocLevel is the paper's: the loss over candidates scored by their
	// list's centroid alone.
	DocLevel
)

// NegativesKind names the candidates that join a query's teacher Top-K.
type NegativesKind int

const (
	InBatch         NegativesKind = iota // documents from the other queries' Top-K in the batch (default)
	NoNegatives                          // the Top-K only
	RandomNegatives                      // documents drawn at random
)

// EncodingKind names how documents get their PQ codes.
type EncodingKind int

const (
	// Weighted (default, inner product only) minimises the expected error
	// of the query score, (u-û)ᵀE[qqᵀ](u-û), over the training queries.
	Weighted EncodingKind = iota
	// NearestCodeword is FAISS's encoding: the nearest codeword by L2.
	NearestCodeword
)

var (
	lossNames      = []string{"listnet", "kl", "mse", "margin-mse", "ranknet"}
	ivfLossNames   = []string{"list", "doc"}
	negativesNames = []string{"inbatch", "none", "random"}
	encodingNames  = []string{"weighted", "l2"}
)

// ParseLoss reads a loss's CLI spelling: listnet, kl, mse, margin-mse or
// ranknet.
func ParseLoss(s string) (LossKind, error) { return parseEnum[LossKind]("--loss", s, lossNames) }

// ParseIVFLoss reads list or doc.
func ParseIVFLoss(s string) (IVFLossKind, error) {
	return parseEnum[IVFLossKind]("--ivf-loss", s, ivfLossNames)
}

// ParseNegatives reads inbatch, none or random.
func ParseNegatives(s string) (NegativesKind, error) {
	return parseEnum[NegativesKind]("--negatives", s, negativesNames)
}

// ParseEncoding reads weighted or l2.
func ParseEncoding(s string) (EncodingKind, error) {
	return parseEnum[EncodingKind]("--encode", s, encodingNames)
}

func (k LossKind) String() string      { return enumName(int(k), lossNames) }
func (k IVFLossKind) String() string   { return enumName(int(k), ivfLossNames) }
func (k NegativesKind) String() string { return enumName(int(k), negativesNames) }
func (k EncodingKind) String() string  { return enumName(int(k), encodingNames) }

// MarshalText writes the CLI spelling.
func (k LossKind) MarshalText() ([]byte, error) { return marshalEnum("--loss", int(k), lossNames) }

// MarshalText writes the CLI spelling.
func (k IVFLossKind) MarshalText() ([]byte, error) {
	return marshalEnum("--ivf-loss", int(k), ivfLossNames)
}

// MarshalText writes the CLI spelling.
func (k NegativesKind) MarshalText() ([]byte, error) {
	return marshalEnum("--negatives", int(k), negativesNames)
}

// MarshalText writes the CLI spelling.
func (k EncodingKind) MarshalText() ([]byte, error) {
	return marshalEnum("--encode", int(k), encodingNames)
}

// UnmarshalText reads the CLI spelling.
func (k *LossKind) UnmarshalText(b []byte) (err error) { *k, err = ParseLoss(string(b)); return }

// UnmarshalText reads the CLI spelling.
func (k *IVFLossKind) UnmarshalText(b []byte) (err error) { *k, err = ParseIVFLoss(string(b)); return }

// UnmarshalText reads the CLI spelling.
func (k *NegativesKind) UnmarshalText(b []byte) (err error) {
	*k, err = ParseNegatives(string(b))
	return
}

// UnmarshalText reads the CLI spelling.
func (k *EncodingKind) UnmarshalText(b []byte) (err error) {
	*k, err = ParseEncoding(string(b))
	return
}

// ParseEnum reads the CLI spelling s of an option among names (numbered
// from 0). Its error is the CLI's one line: `--loss "x": want listnet, kl,
// mse, margin-mse or ranknet`. Packages that define option enums of their
// own use it so that every choice reads and fails the same way.
func ParseEnum[T ~int](flag, s string, names []string) (T, error) {
	return parseEnum[T](flag, s, names)
}

// CheckEnum is the error for a value outside names, or nil.
func CheckEnum[T ~int](flag string, v T, names []string) error {
	if int(v) < 0 || int(v) >= len(names) {
		return fmt.Errorf("%s %d: want %s", flag, int(v), choices(names))
	}
	return nil
}

func parseEnum[T ~int](flag, s string, names []string) (T, error) {
	for i, n := range names {
		if s == n {
			return T(i), nil
		}
	}
	return 0, fmt.Errorf("%s %q: want %s", flag, s, choices(names))
}

func enumName(v int, names []string) string {
	if v < 0 || v >= len(names) {
		return strconv.Itoa(v)
	}
	return names[v]
}

func marshalEnum(flag string, v int, names []string) ([]byte, error) {
	if err := CheckEnum(flag, v, names); err != nil {
		return nil, err
	}
	return []byte(names[v]), nil
}

// choices lists names as "a, b or c".
func choices(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
