package cli

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	ucli "github.com/urfave/cli/v3"

	"github.com/distillvq/distillvq/faissio"
)

func inspectCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:      "inspect",
		Usage:     "describe a FAISS index file without loading it into FAISS: structure, lists and their balance, codebooks",
		UsageText: "distillvq inspect [--json out.json] F.faiss",
		Arguments: []ucli.Argument{&ucli.StringArg{Name: "index"}},
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "json", Usage: "also write the description as JSON"},
		},
		Action: func(ctx context.Context, c *ucli.Command) error {
			path := c.StringArg("index")
			if path == "" {
				return fmt.Errorf("inspect needs an index file")
			}
			if js := c.String("json"); js != "" {
				if err := checkOutputDir(js); err != nil {
					return fail(err)
				}
			}
			ix, err := faissio.ReadIndexFile(path)
			if err != nil {
				return fail(err)
			}
			d := describe(ix)
			if fi, err := os.Stat(path); err == nil {
				d.File, d.Bytes = path, fi.Size()
			}
			printDescription(e.stdout, d)
			if js := c.String("json"); js != "" {
				return fail(writeJSON(js, d))
			}
			return nil
		},
	}
}

// Description is what inspect reports of an index file.
type Description struct {
	File   string         `json:"file"`
	Bytes  int64          `json:"bytes"`
	Chain  []string       `json:"chain"` // outermost first: transforms, index, quantizer
	D      int            `json:"d"`
	Metric faissio.Metric `json:"metric"`
	Ntotal int64          `json:"ntotal"`

	Nlist     int    `json:"nlist,omitempty"`
	Nprobe    int    `json:"nprobe,omitempty"` // as stored; FAISS searches with it by default
	DirectMap string `json:"direct_map,omitempty"`
	M         int    `json:"m,omitempty"`
	Nbits     int    `json:"nbits,omitempty"`
	// FastScanBlock is the vectors per packed block of a FastScan index.
	FastScanBlock int `json:"fastscan_block,omitempty"`
	// EfSearch is the stored search beam of an HNSW coarse quantizer.
	EfSearch   int  `json:"ef_search,omitempty"`
	ByResidual bool `json:"by_residual,omitempty"`
	CodeSize   int  `json:"code_bytes_per_vector,omitempty"`

	Lists     *ListStats      `json:"lists,omitempty"`
	Codebooks []CodebookStats `json:"codebooks,omitempty"`
	// RotationError is max |A Aᵀ - I| of a square transform: 0 for an
	// orthonormal (OPQ) rotation.
	RotationError *float64 `json:"rotation_error,omitempty"`
}

// ListStats summarises the inverted list sizes.
type ListStats struct {
	Min    int64   `json:"min"`
	Median int64   `json:"median"`
	Max    int64   `json:"max"`
	Empty  int64   `json:"empty"`
	Mean   float64 `json:"mean"`
	// Imbalance is FAISS's nlist*sum(size^2)/ntotal^2: 1 for equal lists,
	// and the expected search cost relative to that.
	Imbalance float64 `json:"imbalance"`
	// Histogram counts lists by size in 10 equal-width bins from Min to Max.
	Histogram []int64 `json:"histogram"`
}

// CodebookStats describes one PQ sub-quantizer.
type CodebookStats struct {
	// The norms of its codewords.
	MeanNorm float64 `json:"mean_norm"`
	MinNorm  float64 `json:"min_norm"`
	MaxNorm  float64 `json:"max_norm"`
	// Used is the share of its 2^nbits codewords that some stored vector
	// uses, and Perplexity exp(entropy) of their use: 2^nbits when every
	// codeword is used equally.
	Used       float64 `json:"used"`
	Perplexity float64 `json:"perplexity"`
}

// describe summarises ix.
func describe(ix faissio.Index) *Description {
	h := ix.IndexHeader()
	d := &Description{D: h.D, Metric: h.Metric, Ntotal: h.Ntotal}
	for {
		pt, ok := ix.(*faissio.PreTransform)
		if !ok {
			break
		}
		for _, lt := range pt.Chain {
			d.Chain = append(d.Chain, fmt.Sprintf("LinearTransform %d→%d", lt.DIn, lt.DOut))
			if lt.DIn == lt.DOut {
				e := faissio.OrthonormalityError(lt.A, lt.DIn)
				d.RotationError = &e
			}
		}
		d.Chain[0] = "IndexPreTransform(" + d.Chain[0]
		d.Chain[len(d.Chain)-1] += ")"
		ix = pt.Index
	}
	d.Chain = append(d.Chain, faissio.ClassName(ix))
	var ivf *faissio.IVF
	switch x := ix.(type) {
	case *faissio.PQ:
		d.M, d.Nbits, d.CodeSize = x.PQ.M, x.PQ.Nbits, x.PQ.CodeSize()
		d.Codebooks = codebookStats(&x.PQ, [][]byte{x.Codes})
	case *faissio.PQFastScan:
		d.M, d.Nbits, d.CodeSize = x.PQ.M, x.PQ.Nbits, x.PQ.CodeSize()
		d.FastScanBlock = int(x.Bbs)
		plain := make([]byte, int(x.Ntotal)*x.PQ.CodeSize())
		faissio.UnpackFastScan(plain, x.Codes, int(x.Ntotal), x.PQ.M, int(x.Bbs))
		d.Codebooks = codebookStats(&x.PQ, [][]byte{plain})
	case *faissio.IVFPQFastScan:
		ivf, d.CodeSize = &x.IVF, x.PQ.CodeSize()
		d.M, d.Nbits, d.ByResidual, d.FastScanBlock = x.PQ.M, x.PQ.Nbits, x.ByResidual, int(x.Bbs)
		codes := make([][]byte, len(x.Lists))
		for i, l := range x.Lists {
			codes[i] = make([]byte, len(l.IDs)*d.CodeSize)
			faissio.UnpackFastScan(codes[i], l.Codes, len(l.IDs), x.PQ.M, int(x.Bbs))
		}
		d.Codebooks = codebookStats(&x.PQ, codes)
	case *faissio.IVFFlat:
		ivf, d.CodeSize = &x.IVF, x.CodeSize()
	case *faissio.IVFPQ:
		ivf, d.CodeSize = &x.IVF, x.CodeSize()
		d.M, d.Nbits, d.ByResidual = x.PQ.M, x.PQ.Nbits, x.ByResidual
		codes := make([][]byte, len(x.Lists))
		for i, l := range x.Lists {
			codes[i] = l.Codes
		}
		d.Codebooks = codebookStats(&x.PQ, codes)
	}
	if ivf != nil {
		q := "quantizer"
		switch f := ivf.Quantizer.(type) {
		case *faissio.Flat:
			q += " " + faissio.ClassName(f)
		case *faissio.HNSWFlat:
			q += fmt.Sprintf(" IndexHNSWFlat(%s", faissio.ClassName(f.Storage))
			if n := len(f.HNSW.CumNNeighborPerLevel); n > 1 {
				q += fmt.Sprintf(", M %d", (f.HNSW.CumNNeighborPerLevel[1]-f.HNSW.CumNNeighborPerLevel[0])/2)
			}
			q += fmt.Sprintf(", %d levels, efSearch %d, efConstruction %d)", f.HNSW.MaxLevel+1, f.HNSW.EfSearch, f.HNSW.EfConstruction)
			d.EfSearch = int(f.HNSW.EfSearch)
		}
		d.Chain = append(d.Chain, q)
		d.Nlist, d.Nprobe = ivf.Nlist, ivf.Nprobe
		d.DirectMap = [...]string{"none", "array", "hashtable"}[min(max(int(ivf.DirectMap.Type), 0), 2)]
		sizes := make([]int64, len(ivf.Lists))
		for i, l := range ivf.Lists {
			sizes[i] = int64(len(l.IDs))
		}
		s := listStats(sizes)
		d.Lists = &s
	}
	return d
}

// listStats summarises list sizes.
func listStats(sizes []int64) ListStats {
	var s ListStats
	if len(sizes) == 0 {
		return s
	}
	sorted := slices.Clone(sizes)
	slices.Sort(sorted)
	s.Min, s.Max, s.Median = sorted[0], sorted[len(sorted)-1], sorted[len(sorted)/2]
	var tot, sq float64
	s.Histogram = make([]int64, 10)
	width := float64(s.Max-s.Min+1) / 10
	for _, v := range sizes {
		if v == 0 {
			s.Empty++
		}
		tot += float64(v)
		sq += float64(v) * float64(v)
		s.Histogram[min(9, int(float64(v-s.Min)/width))]++
	}
	s.Mean = tot / float64(len(sizes))
	if tot > 0 {
		s.Imbalance = float64(len(sizes)) * sq / (tot * tot)
	}
	return s
}

// codebookStats describes each sub-quantizer of pq, with codeword use
// counted over the codes (code size bytes per vector, in any number of
// slices).
func codebookStats(pq *faissio.ProductQuantizer, codes [][]byte) []CodebookStats {
	ksub, dsub := 1<<pq.Nbits, pq.D/pq.M
	if len(pq.Centroids) != pq.M*ksub*dsub {
		return nil
	}
	use := make([]int64, pq.M*ksub)
	cs := pq.CodeSize()
	for _, c := range codes {
		for v := 0; v+cs <= len(c); v += cs {
			code := c[v : v+cs]
			for m := range pq.M {
				use[m*ksub+codeAt(code, m, pq.Nbits)]++
			}
		}
	}
	out := make([]CodebookStats, pq.M)
	for m := range pq.M {
		st := &out[m]
		st.MinNorm = math.Inf(1)
		var total float64
		for k := range ksub {
			var n2 float64
			for _, x := range pq.Centroids[(m*ksub+k)*dsub : (m*ksub+k+1)*dsub] {
				n2 += float64(x) * float64(x)
			}
			n := math.Sqrt(n2)
			st.MeanNorm += n / float64(ksub)
			st.MinNorm, st.MaxNorm = math.Min(st.MinNorm, n), math.Max(st.MaxNorm, n)
			total += float64(use[m*ksub+k])
		}
		var used int
		var entropy float64
		for _, u := range use[m*ksub : (m+1)*ksub] {
			if u > 0 {
				used++
				p := float64(u) / total
				entropy -= p * math.Log(p)
			}
		}
		st.Used = float64(used) / float64(ksub)
		st.Perplexity = math.Exp(entropy)
	}
	return out
}

// codeAt unpacks the m-th nbits-bit code of a PQ code, packed least
// significant bit first as FAISS's PQ encoder packs it.
func codeAt(code []byte, m, nbits int) int {
	bit := m * nbits
	var v int
	for i := 0; i < nbits; i++ {
		b := bit + i
		v |= int(code[b>>3]>>(b&7)&1) << i
	}
	return v
}

func printDescription(w io.Writer, d *Description) {
	fmt.Fprintf(w, "file        %s (%d bytes)\n", d.File, d.Bytes)
	fmt.Fprintf(w, "type        %s\n", strings.Join(d.Chain, " > "))
	fmt.Fprintf(w, "d           %d\n", d.D)
	fmt.Fprintf(w, "metric      %s\n", d.Metric)
	fmt.Fprintf(w, "ntotal      %d\n", d.Ntotal)
	if d.Ntotal > 0 && d.Bytes > 0 {
		fmt.Fprintf(w, "bytes/vec   %.1f in the file, %d in the codes\n", float64(d.Bytes)/float64(d.Ntotal), d.CodeSize)
	}
	if d.RotationError != nil {
		fmt.Fprintf(w, "rotation    max |AAᵀ-I| = %.2g\n", *d.RotationError)
	}
	if d.Nlist > 0 {
		fmt.Fprintf(w, "nlist       %d (stored nprobe %d, direct map %s)\n", d.Nlist, d.Nprobe, d.DirectMap)
	}
	if d.M > 0 {
		fmt.Fprintf(w, "PQ          M %d x nbits %d, %d bytes/vector", d.M, d.Nbits, d.CodeSize)
		if d.Nlist > 0 {
			fmt.Fprintf(w, ", by_residual %v", d.ByResidual)
		}
		if d.FastScanBlock > 0 {
			fmt.Fprintf(w, ", FastScan blocks of %d", d.FastScanBlock)
		}
		fmt.Fprintln(w)
	}
	if s := d.Lists; s != nil {
		fmt.Fprintf(w, "lists       min %d, median %d, mean %.1f, max %d, empty %d, imbalance %.3f\n",
			s.Min, s.Median, s.Mean, s.Max, s.Empty, s.Imbalance)
		width := float64(s.Max-s.Min+1) / 10
		top := slices.Max(s.Histogram)
		for i, c := range s.Histogram {
			lo := float64(s.Min) + float64(i)*width
			bar := strings.Repeat("#", int(math.Ceil(40*float64(c)/float64(max(top, 1)))))
			fmt.Fprintf(w, "  size %7.0f-%-7.0f %6d %s\n", lo, lo+width, c, bar)
		}
	}
	if len(d.Codebooks) > 0 {
		var used, perp, norm float64
		minUsed := 1.0
		for _, c := range d.Codebooks {
			used += c.Used / float64(len(d.Codebooks))
			perp += c.Perplexity / float64(len(d.Codebooks))
			norm += c.MeanNorm / float64(len(d.Codebooks))
			minUsed = math.Min(minUsed, c.Used)
		}
		fmt.Fprintf(w, "codebooks   codewords used %.1f%% (lowest sub-quantizer %.1f%%), perplexity %.1f of %d, mean norm %.4g\n",
			100*used, 100*minUsed, perp, 1<<d.Nbits, norm)
	}
}
