package cli

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	faiss "github.com/distillvq/distillvq/cgo"
	"github.com/distillvq/distillvq/faissio"
)

// TestInspectAgreesWithFAISS reads index files of every kind we write, and
// kinds Python FAISS writes, with faissio alone and checks the description
// against what FAISS reports after loading the same file.
func TestInspectAgreesWithFAISS(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]string{
		"ivfpq.faiss":   {"--index", "ivfpq", "--m", "20", "--nbits", "6", "--metric", "l2"},
		"ivfflat.faiss": {"--index", "ivfflat", "--metric", "ip"},
	}
	for name, args := range files {
		// Structure is described, not quality: 10 k-means iterations.
		mustRun(t, append([]string{"build", "--docs", gloveDocs, "--train", "kmeans", "--nlist", "32", "--niter", "10", "-o", filepath.Join(dir, name)}, args...)...)
	}
	paths := []string{filepath.Join(dir, "ivfpq.faiss"), filepath.Join(dir, "ivfflat.faiss")}
	// An OPQ index Python FAISS built (skipping or failing, by testutil's
	// rule, where there is no Python FAISS).
	p := filepath.Join(dir, "python-opq.faiss")
	buildPythonOPQ(t, "OPQ10,IVF32,PQ10x4", "ip", gloveDocs, p)
	paths = append(paths, p)
	for _, path := range paths {
		out := mustRun(t, "inspect", path)
		ix, err := faissio.ReadIndexFile(path)
		if err != nil {
			t.Fatal(err)
		}
		d := describe(ix)
		fx, err := faiss.ReadIndex(path)
		if err != nil {
			t.Fatal(err)
		}
		info, err := fx.Info()
		fx.Close()
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(path)
		if d.D != info.D || d.Ntotal != info.Ntotal || d.Metric != info.Metric || d.Nlist != info.Nlist ||
			d.M != info.M || d.Nbits != info.Nbits || d.CodeSize != info.CodeSize || d.ByResidual != info.ByResidual {
			t.Errorf("%s: faissio sees %+v, FAISS %+v", name, d, info)
		}
		sizes := make([]int64, 0, len(info.ListSizes))
		sizes = append(sizes, info.ListSizes...)
		want := listStats(sizes)
		if d.Lists == nil || d.Lists.Imbalance != want.Imbalance || d.Lists.Max != want.Max {
			t.Errorf("%s: list stats %+v, from FAISS's sizes %+v", name, d.Lists, want)
		}
		if !strings.Contains(out, "imbalance") || !strings.Contains(out, d.Chain[len(d.Chain)-2]) {
			t.Errorf("%s: inspect printed\n%s", name, out)
		}
		if strings.HasPrefix(name, "python-opq") {
			if info.Type != "IndexPreTransform" || d.RotationError == nil || *d.RotationError > 1e-4 {
				t.Errorf("%s: OPQ rotation not seen as orthonormal: %s, %v", name, info.Type, d.RotationError)
			}
		}
		for m, c := range d.Codebooks {
			if c.Used <= 0 || c.Used > 1 || c.Perplexity < 1 || c.Perplexity > math.Exp2(float64(d.Nbits))+1e-9 || c.MinNorm > c.MaxNorm {
				t.Errorf("%s: sub-quantizer %d: implausible %+v", name, m, c)
			}
		}
		t.Logf("%s: %s", name, strings.Join(d.Chain, " > "))
	}
}

// TestCodeAt checks the bit unpacking against codes packed by hand.
func TestCodeAt(t *testing.T) {
	// Three 5-bit codes 0b10110, 0b00111, 0b11001 packed LSB first:
	// bits 0-4 = 10110, 5-9 = 00111, 10-14 = 11001.
	v := uint32(0b10110) | uint32(0b00111)<<5 | uint32(0b11001)<<10
	code := []byte{byte(v), byte(v >> 8)}
	for m, want := range []int{0b10110, 0b00111, 0b11001} {
		if got := codeAt(code, m, 5); got != want {
			t.Errorf("code %d = %b, want %b", m, got, want)
		}
	}
}

// TestInspectRotationLine checks the rotation line inspect prints for the
// committed OPQ fixture (a fixture that does not load is a failure).
func TestInspectRotationLine(t *testing.T) {
	ix, err := faissio.ReadIndexFile("../faissio/testdata/opq_ivfpq.index")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	printDescription(&out, describe(ix))
	if want := "\nrotation    max |AAᵀ-I| = 7.8e-07\n"; !strings.Contains(out.String(), want) {
		t.Errorf("inspect printed\n%s\nwant a line %q", out.String(), strings.TrimSpace(want))
	}
}
