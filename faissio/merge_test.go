package faissio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// mergeShape is one random merge: the parts' contents, all trained alike.
type mergeShape struct {
	name  string
	parts []*IVFParams
}

// randomMerge draws merge i of a series: IVFFlat every third, else IVFPQ
// of nbits 1 + i%8; 1 + i%5 parts of unequal sizes, one empty when i%4 ==
// 0; each part using a random subset of the lists in use (so that parts
// are sparse where the merge is full); and ids in disjoint blocks (i%3 ==
// 0), one permutation spread over the parts, so that ranges overlap and
// the bitmap check runs (i%3 == 1), or far apart (i%3 == 2).
func randomMerge(r *rand.Rand, i int) mergeShape {
	m, nbits := 0, 0
	d := 1 + r.IntN(24)
	if i%3 != 0 {
		var divisors []int
		for k := 1; k <= d; k++ {
			if d%k == 0 {
				divisors = append(divisors, k)
			}
		}
		m, nbits = divisors[r.IntN(len(divisors))], 1+i%8
	}
	nlist := []int{1, 2, 3, 7, 40, 257}[r.IntN(6)]
	used := 1 + r.IntN(nlist)
	if i%2 == 0 {
		used = 1 + r.IntN(max(1, nlist/2))
	}
	n := []int{0, 1, 17, 120, 500, 3000, 40}[i%7]
	metric := Metric(r.IntN(2))
	rotation := r.IntN(2) == 0
	base := randomIVFParams(r, d, nlist, used, m, nbits, 0, metric, rotation)
	base.Lists, base.IDs, base.Codes = nil, nil, nil
	lists := r.Perm(nlist)[:used]

	nparts := 1 + i%5
	counts := make([]int, nparts)
	for range n {
		// Skewed, so that sizes are unequal.
		counts[min(r.IntN(nparts), r.IntN(nparts))]++
	}
	if i%4 == 0 && nparts > 1 {
		k := r.IntN(nparts)
		counts[(k+1)%nparts] += counts[k]
		counts[k] = 0
	}
	perm := r.Perm(n)
	var parts []*IVFParams
	at := 0
	for k, c := range counts {
		p := *base
		mine := r.Perm(used)[:1+r.IntN(used)]
		p.Lists = make([]int64, c)
		p.IDs = make([]int64, c)
		for j := range c {
			p.Lists[j] = int64(lists[mine[r.IntN(len(mine))]])
			switch i % 3 {
			case 0:
				p.IDs[j] = int64(at + j)
			case 1:
				p.IDs[j] = int64(perm[at+j])*3 + 7
			case 2:
				p.IDs[j] = int64(k)<<40 | int64(r.Uint32())<<8 | int64(j&0xff)
			}
		}
		if i%3 == 0 {
			r.Shuffle(c, func(a, b int) { p.IDs[a], p.IDs[b] = p.IDs[b], p.IDs[a] })
		}
		p.Codes = ixBytes(r, c*p.CodeSize())
		parts = append(parts, &p)
		at += c
	}
	name := fmt.Sprintf("d%d-nlist%d-used%d-M%d-nbits%d-n%d-%v-rot%v-parts%v", d, nlist, used, m, nbits, n, metric, rotation, counts)
	return mergeShape{name, parts}
}

// concatParts is the parts' contents, part after part.
func concatParts(parts []*IVFParams) *IVFParams {
	p := *parts[0]
	p.Lists, p.IDs, p.Codes = nil, nil, nil
	for _, q := range parts {
		p.Lists = append(p.Lists, q.Lists...)
		p.IDs = append(p.IDs, q.IDs...)
		p.Codes = append(p.Codes, q.Codes...)
	}
	return &p
}

// writeParts writes the parts with WriteIVFFile as dir/part-K.faiss and
// returns their paths.
func writeParts(t *testing.T, dir string, parts []*IVFParams) []string {
	t.Helper()
	var paths []string
	for k, p := range parts {
		path := filepath.Join(dir, fmt.Sprintf("part-%d.faiss", k))
		if err := WriteIVFFile(context.Background(), path, p, nil); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

// openParts opens the files at paths, closing them when the test ends.
func openParts(t *testing.T, paths []string) []*IVFFile {
	t.Helper()
	var files []*IVFFile
	for _, path := range paths {
		x, err := OpenIVFFile(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { x.Close() })
		files = append(files, x)
	}
	return files
}

// encodingOf is the list encoding FAISS writes for these sizes.
func encodingOf(sizes []int64) string {
	nonEmpty := 0
	for _, s := range sizes {
		if s > 0 {
			nonEmpty++
		}
	}
	return listEncoding(nonEmpty, len(sizes))
}

// segments writes the merge as WriteHeader, then WriteRange of each range
// the boundaries b give, each to a buffer of its own, and concatenates them,
// checking each piece's length against HeaderBytes and RangeBytes.
func segments(t *testing.T, m *Merge, b []int) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := m.WriteHeader(&out); err != nil {
		t.Fatal(err)
	}
	if int64(out.Len()) != m.HeaderBytes() {
		t.Fatalf("header of %d bytes, HeaderBytes %d", out.Len(), m.HeaderBytes())
	}
	for k := range len(b) - 1 {
		var seg bytes.Buffer
		if err := m.WriteRange(context.Background(), &seg, b[k], b[k+1]); err != nil {
			t.Fatal(err)
		}
		if int64(seg.Len()) != m.RangeBytes(b[k], b[k+1]) {
			t.Fatalf("range [%d, %d) of %d bytes, RangeBytes %d", b[k], b[k+1], seg.Len(), m.RangeBytes(b[k], b[k+1]))
		}
		out.Write(seg.Bytes())
	}
	return out.Bytes()
}

// TestMergeMatchesWriteIndex merges 40 random sets of parts written by
// WriteIVFFile and compares the result, written by WriteFile with 1 and 4
// workers and as header and range segments split several ways, with
// WriteIndex of NewIVFIndex of the parts' concatenated contents. It also
// checks the parts' accessors against their contents.
func TestMergeMatchesWriteIndex(t *testing.T) {
	ctx := context.Background()
	r := ixRand(31)
	encodings := map[string]int{} // "part full", "merged sprs", ...
	for i := range 40 {
		s := randomMerge(r, i)
		t.Run(s.name, func(t *testing.T) {
			dir := t.TempDir()
			files := openParts(t, writeParts(t, dir, s.parts))
			all := concatParts(s.parts)
			want := indexBytes(t, all)
			for k, x := range files {
				checkIVFFile(t, x, s.parts[k])
				encodings["part "+encodingOf(x.ListSizes())]++
			}
			m, err := NewMerge(ctx, files)
			if err != nil {
				t.Fatal(err)
			}
			encodings["merged "+encodingOf(m.ListSizes())]++
			nlist := all.Nlist
			if m.Ntotal() != int64(len(all.IDs)) || m.Nlist() != nlist || m.Size() != int64(len(want)) || m.CodeSize() != all.CodeSize() {
				t.Errorf("Ntotal %d Nlist %d Size %d CodeSize %d, want %d %d %d %d", m.Ntotal(), m.Nlist(), m.Size(), m.CodeSize(), len(all.IDs), nlist, len(want), all.CodeSize())
			}
			for _, workers := range []int{1, 4} {
				out := filepath.Join(dir, fmt.Sprintf("merged-%d.faiss", workers))
				var log progressLog
				if err := m.WriteFile(ctx, out, workers, log.record); err != nil {
					t.Fatal(err)
				}
				log.check(t, nlist)
				got, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%d workers: merged file of %d bytes, WriteIndex %d, differing at byte %d", workers, len(got), len(want), firstDiff(got, want))
				}
			}
			splits := [][]int{m.Split(1), m.Split(2), m.Split(3), m.Split(7), m.Split(nlist + 3)}
			cuts := []int{0, nlist}
			for range 4 {
				cuts = append(cuts, r.IntN(nlist+1))
			}
			slices.Sort(cuts)
			splits = append(splits, cuts)
			for _, b := range splits {
				if b[0] != 0 || b[len(b)-1] != nlist || !slices.IsSorted(b) {
					t.Fatalf("boundaries %v", b)
				}
				if got := segments(t, m, b); !bytes.Equal(got, want) {
					t.Fatalf("segments %v: %d bytes, WriteIndex %d, differing at byte %d", b, len(got), len(want), firstDiff(got, want))
				}
			}
			if got := m.Trained(); !trainedEqual(&got, s.parts[0]) {
				t.Errorf("Merge.Trained differs from the parts' training")
			}
		})
	}
	for _, k := range []string{"part full", "part sprs", "merged full", "merged sprs"} {
		if encodings[k] < 5 {
			t.Errorf("list encodings tested: %v", encodings)
			break
		}
	}
}

// trainedEqual reports whether t is p's training with no vectors.
func trainedEqual(t *IVFParams, p *IVFParams) bool {
	return t.D == p.D && t.Metric == p.Metric && t.Nlist == p.Nlist && t.M == p.M && t.Nbits == p.Nbits &&
		t.FastScan == p.FastScan && t.NoResidual == p.NoResidual && reflect.DeepEqual(t.HNSW, p.HNSW) &&
		sameBits(t.Rotation, p.Rotation) && (t.Rotation == nil) == (p.Rotation == nil) &&
		sameBits(t.Centroids, p.Centroids) && sameBits(t.Codebooks, p.Codebooks) &&
		t.Lists == nil && t.IDs == nil && t.Codes == nil
}

// checkIVFFile checks x's accessors against p, the contents it was
// written from.
func checkIVFFile(t *testing.T, x *IVFFile, p *IVFParams) {
	t.Helper()
	tr, err := x.Trained()
	if err != nil {
		t.Fatal(err)
	}
	if !trainedEqual(&tr, p) {
		t.Errorf("%s: Trained differs from the contents written", x.Name())
	}
	ix, err := NewIVFIndex(*p)
	if err != nil {
		t.Fatal(err)
	}
	if pt, ok := ix.(*PreTransform); ok {
		ix = pt.Index
	}
	var lists []InvertedList
	switch v := ix.(type) {
	case *IVFFlat:
		lists = v.Lists
	case *IVFPQ:
		lists = v.Lists
	case *IVFPQFastScan:
		// ReadList unpacks the codes.
		for _, il := range v.Lists {
			plain := make([]byte, len(il.IDs)*p.CodeSize())
			UnpackFastScan(plain, il.Codes, len(il.IDs), p.M, FastScanBlock)
			lists = append(lists, InvertedList{IDs: il.IDs, Codes: plain})
		}
	}
	if x.Ntotal() != int64(len(p.IDs)) || x.Nlist() != p.Nlist || x.CodeSize() != p.CodeSize() {
		t.Errorf("%s: Ntotal %d Nlist %d CodeSize %d, want %d %d %d", x.Name(), x.Ntotal(), x.Nlist(), x.CodeSize(), len(p.IDs), p.Nlist, p.CodeSize())
	}
	sizes := x.ListSizes()
	for l, il := range lists {
		ids, codes, err := x.ReadList(l)
		if err != nil {
			t.Fatal(err)
		}
		if sizes[l] != int64(len(il.IDs)) || !slices.Equal(ids, il.IDs) || !bytes.Equal(codes, il.Codes) {
			t.Fatalf("%s: list %d: size %d, %d ids, %d code bytes, want %d, %v, %d", x.Name(), l, sizes[l], len(ids), len(codes), len(il.IDs), il.IDs, len(il.Codes))
		}
	}
	if _, _, err := x.ReadList(p.Nlist); err == nil {
		t.Errorf("ReadList(nlist) succeeded")
	}
}

// mergeBase is a small IVFPQ with a rotation, and two parts of it, with
// ids 0..n0-1 and n0..n0+n1-1.
func mergeBase(r *rand.Rand, n0, n1 int) (*IVFParams, *IVFParams) {
	a := randomIVFParams(r, 8, 12, 9, 4, 5, n0, L2, true)
	for i := range a.IDs {
		a.IDs[i] = int64(i)
	}
	b := randomIVFParams(r, 8, 12, 9, 4, 5, n1, L2, true)
	b.Rotation, b.Centroids, b.Codebooks = a.Rotation, a.Centroids, a.Codebooks
	for i := range b.IDs {
		b.IDs[i] = int64(n0 + i)
	}
	return a, b
}

// memFile opens p's file, as WriteIndex writes it, from memory as name.
func memFile(t *testing.T, name string, b []byte) *IVFFile {
	t.Helper()
	x, err := NewIVFFile(bytes.NewReader(b), int64(len(b)), name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return x
}

// mergeErr merges the parts, each given as file bytes, and returns the
// error, failing unless there is one, on one line.
func mergeErr(t *testing.T, parts ...[]byte) error {
	t.Helper()
	var files []*IVFFile
	for k, b := range parts {
		files = append(files, memFile(t, fmt.Sprintf("part-%d.faiss", k), b))
	}
	_, err := NewMerge(context.Background(), files)
	if err == nil {
		t.Fatal("merge succeeded")
	}
	if strings.ContainsAny(err.Error(), "\r\n") {
		t.Errorf("error %q is not one line", err)
	}
	return err
}

// TestMergeTrainedDifferently: a part trained otherwise than part 0 is an
// error saying what differs.
func TestMergeTrainedDifferently(t *testing.T) {
	r := ixRand(32)
	a, b := mergeBase(r, 50, 40)
	pa := indexBytes(t, a)
	for _, c := range []struct {
		what   string
		change func(p *IVFParams)
	}{
		{"its coarse centroids differ", func(p *IVFParams) { p.Centroids[len(p.Centroids)-1] += 1e-6 }},
		{"its PQ codebooks differ", func(p *IVFParams) { p.Codebooks[3] = -p.Codebooks[3] }},
		{"its rotation differs", func(p *IVFParams) { p.Rotation[10] *= 2 }},
		{"its metric is ip, part-0.faiss's l2", func(p *IVFParams) { p.Metric = InnerProduct }},
		{"it has no rotation, part-0.faiss has one", func(p *IVFParams) { p.Rotation = nil }},
		{"it has 13 lists, part-0.faiss 12", func(p *IVFParams) { p.Nlist = 13; p.Centroids = ixFloats(r, 13*8) }},
		{"its PQ has M 2, part-0.faiss's 4", func(p *IVFParams) { p.M = 2; p.Codes = ixBytes(r, len(p.IDs)*2) }},
		{"its PQ has nbits 6, part-0.faiss's 5", func(p *IVFParams) { p.Nbits = 6; p.Codebooks = ixFloats(r, 8<<6); p.Codes = ixBytes(r, len(p.IDs)*3) }},
		{"it is an IndexIVFFlat, part-0.faiss an IndexIVFPQ", func(p *IVFParams) {
			p.M, p.Nbits, p.Codebooks, p.Codes = 0, 0, nil, ixBytes(r, len(p.IDs)*32)
		}},
		{"its dimension is 4, part-0.faiss's 8", func(p *IVFParams) {
			p.D, p.Rotation, p.Centroids, p.Codebooks = 4, ixFloats(r, 16), ixFloats(r, 12*4), ixFloats(r, 4<<5)
			p.Codes = ixBytes(r, len(p.IDs)*((4*5+7)/8))
		}},
	} {
		t.Run(c.what, func(t *testing.T) {
			q := *b
			q.Rotation, q.Centroids, q.Codebooks = slices.Clone(b.Rotation), slices.Clone(b.Centroids), slices.Clone(b.Codebooks)
			c.change(&q)
			// The different part second, and third after a good one.
			err := mergeErr(t, pa, indexBytes(t, &q))
			if want := "part-1.faiss was trained differently from part-0.faiss: " + c.what; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			err = mergeErr(t, pa, indexBytes(t, b), indexBytes(t, &q))
			if !strings.HasPrefix(err.Error(), "part-2.faiss was trained differently from part-0.faiss: ") {
				t.Errorf("error %q", err)
			}
		})
	}
}

// TestMergeTruncatedPart: a part cut anywhere, or padded, fails when
// opened, with its name and what is missing.
func TestMergeTruncatedPart(t *testing.T) {
	r := ixRand(33)
	a, _ := mergeBase(r, 50, 0)
	full := indexBytes(t, a)
	x := memFile(t, "part-0.faiss", full)
	sizes := x.ListSizes()
	cs := int64(x.CodeSize())
	first, last := -1, -1
	for l, s := range sizes {
		if s > 0 {
			last = l
			if first < 0 {
				first = l
			}
		}
	}
	head := x.headEnd
	firstIDs := head + sizes[first]*cs
	for _, c := range []struct {
		name string
		cut  int64
		want string
	}{
		{"in the header", 10, "part-0.faiss: byte 8: file ends inside ntotal (2 of 8 bytes)"},
		{"before the lists", head - int64(8*len(sizes)) - 30, "part-0.faiss: byte "},
		{"in the sizes", head - 3, "part-0.faiss: byte "},
		{"at the lists", head, fmt.Sprintf("it ends inside the codes of list %d)", first)},
		{"in the first codes", head + 1, fmt.Sprintf("it ends inside the codes of list %d)", first)},
		{"in the first ids", firstIDs + 3, fmt.Sprintf("it ends inside the ids of list %d)", first)},
		{"a byte short", int64(len(full)) - 1, fmt.Sprintf("it ends inside the ids of list %d)", last)},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := full[:c.cut]
			_, err := NewIVFFile(bytes.NewReader(b), int64(len(b)), "part-0.faiss")
			if err == nil {
				t.Fatal("opened")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "part-0.faiss: ") || !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q, want one line with %q", msg, c.want)
			}
			if c.cut >= head && !strings.Contains(msg, fmt.Sprintf("truncated: the file has %d bytes, its 50 vectors need %d", c.cut, len(full))) {
				t.Errorf("error %q does not give the sizes", msg)
			}
		})
	}
	for cut := range len(full) {
		b := full[:cut]
		if _, err := NewIVFFile(bytes.NewReader(b), int64(cut), "part-0.faiss"); err == nil || !strings.HasPrefix(err.Error(), "part-0.faiss: ") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("cut at %d: error %v", cut, err)
		}
	}
	padded := append(slices.Clone(full), 0, 0)
	_, err := NewIVFFile(bytes.NewReader(padded), int64(len(padded)), "part-0.faiss")
	if want := fmt.Sprintf("part-0.faiss: 2 bytes after the end of the index at byte %d", len(full)); err == nil || err.Error() != want {
		t.Errorf("padded: error %v, want %q", err, want)
	}

	// Through OpenIVFFile, the message names the path.
	path := filepath.Join(t.TempDir(), "part-3.faiss")
	if err := os.WriteFile(path, full[:firstIDs+3], 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenIVFFile(path); err == nil || !strings.HasPrefix(err.Error(), path+": truncated: ") {
		t.Errorf("OpenIVFFile: %v", err)
	}
	if _, err := OpenIVFFile(filepath.Join(t.TempDir(), "none.faiss")); err == nil || !strings.HasSuffix(err.Error(), "none.faiss: no such file or directory") {
		t.Errorf("OpenIVFFile of a missing file: %v", err)
	}
}

// TestMergeNotNewIVFIndexForm: parts NewIVFIndex could not have given are
// refused when opened.
func TestMergeNotNewIVFIndexForm(t *testing.T) {
	r := ixRand(34)
	a, _ := mergeBase(r, 30, 0)
	for _, c := range []struct {
		name   string
		change func(ix *IVFPQ, pt *PreTransform)
		want   string
	}{
		{"nprobe", func(ix *IVFPQ, _ *PreTransform) { ix.Nprobe = 4 }, "part-0.faiss: the index has nprobe 4"},
		{"direct map", func(ix *IVFPQ, _ *PreTransform) { withArrayMap(&ix.IVF) }, "the index has a direct map (type 1), which FAISS cannot merge"},
		{"untrained", func(_ *IVFPQ, pt *PreTransform) { pt.IsTrained = false }, "differs from what WriteIndex writes for NewIVFIndex"},
		{"not by residual", func(ix *IVFPQ, _ *PreTransform) { ix.ByResidual = false }, "not a mergeable IVF index: IVFPQ index does not encode residuals"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ix, err := NewIVFIndex(*a)
			if err != nil {
				t.Fatal(err)
			}
			pt := ix.(*PreTransform)
			c.change(pt.Index.(*IVFPQ), pt)
			b := writeBytes(t, ix)
			_, err = NewIVFFile(bytes.NewReader(b), int64(len(b)), "part-0.faiss")
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "part-0.faiss: ") {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
	flat := writeBytes(t, ixFlat(r, L2, 4, 3))
	if _, err := NewIVFFile(bytes.NewReader(flat), int64(len(flat)), "flat.faiss"); err == nil || err.Error() != "flat.faiss: byte 0: IndexFlatL2 has no inverted lists" {
		t.Errorf("flat index: %v", err)
	}
}

// TestMergeDuplicateIDs: an id in two parts, or twice in one where ranges
// overlap, is an error naming the id and the parts.
func TestMergeDuplicateIDs(t *testing.T) {
	r := ixRand(35)
	withIDs := func(p *IVFParams, ids ...int64) []byte {
		q := *p
		q.IDs = ids
		q.Lists = make([]int64, len(ids))
		for i := range q.Lists {
			q.Lists[i] = int64(r.IntN(q.Nlist))
		}
		q.Codes = ixBytes(r, len(ids)*q.CodeSize())
		return indexBytes(t, &q)
	}
	seq := func(lo, hi, step int64, extra ...int64) []int64 {
		var s []int64
		for v := lo; v < hi; v += step {
			s = append(s, v)
		}
		s = append(s, extra...)
		r.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
		return s
	}
	a, _ := mergeBase(r, 0, 0)
	for _, c := range []struct {
		name  string
		parts [][]byte
		want  string
	}{
		{"across parts", [][]byte{withIDs(a, seq(0, 100, 1)...), withIDs(a, seq(200, 300, 1)...), withIDs(a, seq(100, 200, 1, 17)...)},
			"merge: id 17 is in both part-0.faiss and part-2.faiss"},
		{"across parts, after an empty one", [][]byte{withIDs(a), withIDs(a, seq(1000, 1100, 1)...), withIDs(a, seq(5000, 6000, 7, 1099)...)},
			"merge: id 1099 is in both part-1.faiss and part-2.faiss"},
		{"within the first part", [][]byte{withIDs(a, seq(0, 200, 2, 50)...), withIDs(a, seq(1, 200, 2)...)},
			"merge: id 50 is in part-0.faiss twice"},
		{"within the second part", [][]byte{withIDs(a, seq(0, 200, 2)...), withIDs(a, seq(1, 200, 2, 51)...)},
			"merge: id 51 is in part-1.faiss twice"},
		{"within a lone part, more ids than its range", [][]byte{withIDs(a, seq(0, 10, 1, 5)...)},
			"merge: id 5 is in part-0.faiss twice"},
		{"negative ids across parts", [][]byte{withIDs(a, seq(-50, 0, 1)...), withIDs(a, seq(-60, -55, 1, -1)...)},
			"merge: id -1 is in both part-0.faiss and part-1.faiss"},
		{"overlap too wide", [][]byte{withIDs(a, 0, 1<<40), withIDs(a, 1, 1<<41)},
			"merge: the ids of part-0.faiss, in [0, 1099511627776], and of part-1.faiss, in [1, 2199023255552], overlap: checking [1, 1099511627776] for duplicates needs a bitmap of more than 1 GiB"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := mergeErr(t, c.parts...); err.Error() != c.want {
				t.Errorf("error %q, want %q", err, c.want)
			}
		})
	}
	// Overlapping ranges without a duplicate merge.
	files := []*IVFFile{
		memFile(t, "a", withIDs(a, seq(0, 1000, 2)...)),
		memFile(t, "b", withIDs(a, seq(1, 1000, 2)...)),
		memFile(t, "c", withIDs(a, -5, 1<<50)),
	}
	if _, err := NewMerge(context.Background(), files); err != nil {
		t.Errorf("interleaved ids: %v", err)
	}
}

// TestMergeCancelled: a cancelled merge leaves no file, and an existing
// one untouched; NewMerge and WriteRange stop too.
func TestMergeCancelled(t *testing.T) {
	r := ixRand(36)
	a, b := mergeBase(r, 20000, 15000) // about 3 MiB of lists
	dir := t.TempDir()
	files := openParts(t, writeParts(t, dir, []*IVFParams{a, b}))
	m, err := NewMerge(context.Background(), files)
	if err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewMerge(cancelled, files); err != context.Canceled {
		t.Errorf("NewMerge: %v", err)
	}
	if err := m.WriteRange(cancelled, &bytes.Buffer{}, 0, m.Nlist()); err != context.Canceled {
		t.Errorf("WriteRange: %v", err)
	}
	out := filepath.Join(dir, "merged.faiss")
	check := func(err error, wantFile []byte) {
		t.Helper()
		if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), out+": ") {
			t.Errorf("error %v", err)
		}
		entries, _ := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		want := []string{"part-0.faiss", "part-1.faiss"}
		if wantFile != nil {
			want = []string{"merged.faiss", "part-0.faiss", "part-1.faiss"}
		}
		if !slices.Equal(names, want) {
			t.Errorf("files left: %v, want %v", names, want)
		}
		if wantFile != nil {
			if got, _ := os.ReadFile(out); !bytes.Equal(got, wantFile) {
				t.Errorf("the existing file changed")
			}
		}
	}
	check(m.WriteFile(cancelled, out, 2, nil), nil)
	for _, workers := range []int{1, 3} {
		ctx, cancel := context.WithCancel(context.Background())
		err := m.WriteFile(ctx, out, workers, func(done, total int) { cancel() })
		check(err, nil)
	}
	old := []byte("the old file")
	if err := os.WriteFile(out, old, 0o666); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	check(m.WriteFile(ctx, out, 4, func(done, total int) { cancel() }), old)
}

// TestMergeMemory: planning and writing a merge allocate a few buffers,
// not memory in proportion to the vectors (here 7 MB of lists).
func TestMergeMemory(t *testing.T) {
	r := ixRand(38)
	a := randomIVFParams(r, 8, 64, 64, 0, 0, 100000, L2, false)
	b := *a
	b.IDs = slices.Clone(a.IDs)
	b.Lists = a.Lists[:80000]
	b.IDs = b.IDs[:80000]
	b.Codes = a.Codes[:80000*32]
	for i := range a.IDs {
		a.IDs[i] = int64(2 * i) // interleaved with b's, for the bitmap check
	}
	for i := range b.IDs {
		b.IDs[i] = int64(2*i + 1)
	}
	dir := t.TempDir()
	files := openParts(t, writeParts(t, dir, []*IVFParams{a, &b}))
	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	var m *Merge
	n := allocated(func() {
		var err error
		if m, err = NewMerge(context.Background(), files); err != nil {
			t.Fatal(err)
		}
	})
	// A buffer per part read at once, the bitmap, part 0's training.
	if limit := uint64(min(2, runtime.GOMAXPROCS(0))+2) << 20; n > limit {
		t.Errorf("NewMerge allocated %d bytes, more than %d", n, limit)
	}
	out := filepath.Join(dir, "merged.faiss")
	n = allocated(func() {
		if err := m.WriteFile(context.Background(), out, 2, nil); err != nil {
			t.Fatal(err)
		}
	})
	if m.Size() < 7e6 || n > 3<<20 {
		t.Errorf("WriteFile of %d bytes allocated %d", m.Size(), n)
	}
}

// TestMergeIVFFiles merges files by path, and merges a merged file again.
func TestMergeIVFFiles(t *testing.T) {
	r := ixRand(37)
	a, b := mergeBase(r, 300, 200)
	c, _ := mergeBase(r, 0, 0)
	*c = *b
	c.IDs = make([]int64, len(b.IDs))
	for i := range c.IDs {
		c.IDs[i] = int64(1000 + i)
	}
	dir := t.TempDir()
	paths := writeParts(t, dir, []*IVFParams{a, b, c})
	ab := filepath.Join(dir, "ab.faiss")
	if err := MergeIVFFiles(context.Background(), ab, paths[:2], 0, nil); err != nil {
		t.Fatal(err)
	}
	abc := filepath.Join(dir, "abc.faiss")
	if err := MergeIVFFiles(context.Background(), abc, []string{ab, paths[2]}, 2, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(abc)
	if err != nil {
		t.Fatal(err)
	}
	if want := indexBytes(t, concatParts([]*IVFParams{a, b, c})); !bytes.Equal(got, want) {
		t.Errorf("merged file of %d bytes, WriteIndex %d, differing at byte %d", len(got), len(want), firstDiff(got, want))
	}
	if err := MergeIVFFiles(context.Background(), abc, []string{ab, paths[0]}, 2, nil); err == nil || !strings.Contains(err.Error(), "is in both") {
		t.Errorf("merging a part twice: %v", err)
	}
	if err := MergeIVFFiles(context.Background(), abc, nil, 2, nil); err == nil || err.Error() != "merge: no parts" {
		t.Errorf("no parts: %v", err)
	}
}
