package faissio

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// randomFastScanMerge draws FastScan merge i of a series: 1 + i%4 parts of
// one training (M odd or even, residuals or not, HNSW quantizer when i%3
// != 0, rotation when i%4 == 1), each list of each part of a size that
// leaves the parts' blocks unaligned in the merged list (0 to 70 vectors,
// multiples of 32 among them), some parts empty; ids disjoint across
// parts, drawn so that the ranges overlap.
func randomFastScanMerge(r *rand.Rand, i int) mergeShape {
	dm := []struct{ d, m int }{{8, 4}, {10, 5}, {12, 3}, {4, 1}, {16, 8}}[i%5]
	nlist := []int{1, 2, 5, 13}[i%4]
	s := fastScanShape{d: dm.d, m: dm.m, nlist: nlist, metric: Metric(i % 2),
		noResidual: i%2 == 1, hnsw: i%3 != 0, rotation: i%4 == 1}
	s.sizes = make([]int, nlist)
	base := s.params(r)
	nparts := 1 + i%4
	var parts []*IVFParams
	id := 0
	counts := make([][]int, nparts)
	for k := range nparts {
		p := *base
		p.Lists, p.IDs, p.Codes = nil, nil, nil
		counts[k] = make([]int, nlist)
		empty := i%5 == 0 && k == 1
		for l := range nlist {
			n := []int{0, 1, 31, 32, 33, 64, 5, 70, 17}[r.IntN(9)]
			if empty {
				n = 0
			}
			counts[k][l] = n
			for range n {
				p.Lists = append(p.Lists, int64(l))
			}
		}
		r.Shuffle(len(p.Lists), func(a, b int) { p.Lists[a], p.Lists[b] = p.Lists[b], p.Lists[a] })
		for range p.Lists {
			// Interleaved across parts: part k holds ids k, k+nparts, ...
			p.IDs = append(p.IDs, int64(id*nparts+k))
			id++
		}
		p.Codes = ixBytes(r, len(p.Lists)*p.CodeSize())
		parts = append(parts, &p)
	}
	return mergeShape{fmt.Sprintf("%v-parts%v", s, counts), parts}
}

// TestMergeFastScan merges random sets of FastScan parts written by
// WriteIVF (some by WriteIVFFile) and compares the result, written by
// WriteFile with 1 or 3 workers and as header and range segments, with
// WriteIVF of the parts' concatenated contents; and checks the parts'
// accessors.
func TestMergeFastScan(t *testing.T) {
	ctx := context.Background()
	r := ixRand(61)
	for i := range 24 {
		s := randomFastScanMerge(r, i)
		t.Run(s.name, func(t *testing.T) {
			dir := t.TempDir()
			var files []*IVFFile
			if i%4 == 0 {
				files = openParts(t, writeParts(t, dir, s.parts))
			} else {
				// From memory: the files' syncs would make the test slow.
				for k, p := range s.parts {
					var b bytes.Buffer
					if err := WriteIVF(ctx, &b, p, nil); err != nil {
						t.Fatal(err)
					}
					files = append(files, memFile(t, fmt.Sprintf("part-%d.faiss", k), b.Bytes()))
				}
			}
			all := concatParts(s.parts)
			var want bytes.Buffer
			if err := WriteIVF(ctx, &want, all, nil); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(want.Bytes(), indexBytes(t, all)) {
				t.Fatal("WriteIVF and WriteIndex differ")
			}
			for k, x := range files {
				checkIVFFile(t, x, s.parts[k])
			}
			m, err := NewMerge(ctx, files)
			if err != nil {
				t.Fatal(err)
			}
			if m.Ntotal() != int64(len(all.IDs)) || m.Size() != int64(want.Len()) || m.CodeSize() != all.CodeSize() {
				t.Errorf("Ntotal %d Size %d CodeSize %d, want %d %d %d", m.Ntotal(), m.Size(), m.CodeSize(), len(all.IDs), want.Len(), all.CodeSize())
			}
			for _, workers := range []int{1 + i%2*2} {
				out := filepath.Join(dir, fmt.Sprintf("merged-%d.faiss", workers))
				var log progressLog
				if err := m.WriteFile(ctx, out, workers, log.record); err != nil {
					t.Fatal(err)
				}
				log.check(t, all.Nlist)
				got, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want.Bytes()) {
					t.Fatalf("%d workers: merged file of %d bytes, WriteIVF %d, differing at byte %d", workers, len(got), want.Len(), firstDiff(got, want.Bytes()))
				}
			}
			for _, b := range [][]int{m.Split(1), m.Split(3), m.Split(all.Nlist + 2)} {
				if got := segments(t, m, b); !bytes.Equal(got, want.Bytes()) {
					t.Fatalf("segments %v: %d bytes, WriteIVF %d, differing at byte %d", b, len(got), want.Len(), firstDiff(got, want.Bytes()))
				}
			}
			if got := m.Trained(); !trainedEqual(&got, s.parts[0]) {
				t.Errorf("Merge.Trained differs from the parts' training")
			}
		})
	}
}

// fastScanMergeBase is a FastScan IVF of 12 lists, with residuals, an HNSW
// quantizer and a rotation, and two parts of it, with ids 0..n0-1 and
// n0..n0+n1-1.
func fastScanMergeBase(r *rand.Rand, n0, n1 int) (*IVFParams, *IVFParams) {
	s := fastScanShape{d: 8, m: 4, nlist: 12, metric: L2, hnsw: true, rotation: true}
	s.sizes = make([]int, 12)
	a := s.params(r)
	b := *a
	for k, p := range []*IVFParams{a, &b} {
		n := []int{n0, n1}[k]
		p.Lists, p.IDs = make([]int64, n), make([]int64, n)
		for i := range n {
			p.Lists[i] = int64(r.IntN(9))
			p.IDs[i] = int64(k*n0 + i)
		}
		p.Codes = ixBytes(r, n*p.CodeSize())
	}
	return a, &b
}

// TestMergeFastScanTrainedDifferently: a FastScan part trained otherwise
// than part 0, in its FastScan settings or its HNSW quantizer, is an error
// saying what differs.
func TestMergeFastScanTrainedDifferently(t *testing.T) {
	r := ixRand(62)
	a, b := fastScanMergeBase(r, 50, 40)
	pa := indexBytes(t, a)
	for _, c := range []struct {
		what   string
		change func(p *IVFParams)
	}{
		{"it does not encode residuals, part-0.faiss encodes residuals", func(p *IVFParams) { p.NoResidual = true }},
		{"it is an IndexIVFPQ, part-0.faiss an IndexIVFPQFastScan", func(p *IVFParams) { p.FastScan = false }},
		{"its coarse quantizer is a flat index, part-0.faiss's an IndexHNSWFlat", func(p *IVFParams) { p.HNSW = nil }},
		{"its HNSW graph differs (neighbours)", func(p *IVFParams) { p.HNSW.Neighbors[3] = (p.HNSW.Neighbors[3] + 2) % 12 }},
		{"its HNSW graph differs (search settings (efConstruction, efSearch, upper_beam))", func(p *IVFParams) { p.HNSW.EfSearch = 64 }},
		{"its HNSW graph differs (level probabilities)", func(p *IVFParams) { p.HNSW.AssignProbas[0] *= 1.5 }},
		{"its coarse centroids differ", func(p *IVFParams) { p.Centroids[5] += 1e-6 }},
		{"its PQ codebooks differ", func(p *IVFParams) { p.Codebooks[7] = -p.Codebooks[7] }},
		{"its rotation differs", func(p *IVFParams) { p.Rotation[1] *= 2 }},
		{"its PQ has M 2, part-0.faiss's 4", func(p *IVFParams) { p.M = 2; p.Codes = ixBytes(r, len(p.IDs)) }},
	} {
		t.Run(c.what, func(t *testing.T) {
			q := *b
			q.Rotation, q.Centroids, q.Codebooks = slices.Clone(b.Rotation), slices.Clone(b.Centroids), slices.Clone(b.Codebooks)
			q.HNSW = cloneHNSW(b.HNSW)
			c.change(&q)
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
	// A flat-quantizer FastScan part and an HNSW IVFPQ part are refused
	// against each other too.
	flat := *a
	flat.HNSW = nil
	plain := *b
	plain.FastScan = false
	err := mergeErr(t, indexBytes(t, &flat), indexBytes(t, &plain))
	if want := "part-1.faiss was trained differently from part-0.faiss: it is an IndexIVFPQ, part-0.faiss an IndexIVFPQFastScan"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

// TestMergeFastScanTruncatedPart: a FastScan part cut anywhere, padded,
// or with a list whose sizes or padding FAISS would not write, fails when
// opened, with its name and what is wrong.
func TestMergeFastScanTruncatedPart(t *testing.T) {
	r := ixRand(63)
	a, _ := fastScanMergeBase(r, 70, 0)
	full := indexBytes(t, a)
	x := memFile(t, "part-0.faiss", full)
	sizes := x.ListSizes()
	first, last := -1, -1
	for l, s := range sizes {
		if s > 0 {
			last = l
			if first < 0 {
				first = l
			}
		}
	}
	if x.Ntotal() != 70 || x.CodeSize() != 2 {
		t.Fatalf("Ntotal %d CodeSize %d", x.Ntotal(), x.CodeSize())
	}
	rec := x.offs[first] // list first's id count
	codes := x.codesOff(first)
	for _, c := range []struct {
		name string
		cut  int64
		want string
	}{
		{"in the header", 10, "part-0.faiss: byte 8: file ends inside ntotal (2 of 8 bytes)"},
		{"at the lists", x.headEnd, "truncated: the file has " + fmt.Sprint(x.headEnd) + " bytes, and ends inside the id count of list 0"},
		{"in an id count", rec + 3, fmt.Sprintf("ends inside the id count of list %d", first)},
		{"in the ids", rec + 8 + 5, fmt.Sprintf("ends inside the ids of list %d", first)},
		{"in a code count", codes - 2, fmt.Sprintf("ends inside the code byte count of list %d", first)},
		{"in the codes", codes + 1, fmt.Sprintf("ends inside the codes of list %d", first)},
		{"in the last codes", x.codesOff(last) + 20, fmt.Sprintf("ends inside the codes of list %d", last)},
		{"a byte short", int64(len(full)) - 1, fmt.Sprintf("ends inside the code byte count of list %d", len(sizes)-1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := full[:c.cut]
			_, err := NewIVFFile(bytes.NewReader(b), int64(len(b)), "part-0.faiss")
			if err == nil {
				t.Fatal("opened")
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "part-0.faiss: ") || !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q, want one line with %q", msg, c.want)
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

	// Bytes changed in place, which the reader's own checks may or may
	// not catch: the part is refused either way, naming it.
	for _, c := range []struct {
		name string
		off  int64
		val  uint64
		want string
	}{
		{"id count too large", rec, 71, ""},
		{"code count", codes - 8, 7, ""},
	} {
		b := slices.Clone(full)
		binary.LittleEndian.PutUint64(b[c.off:], c.val)
		if _, err := NewIVFFile(bytes.NewReader(b), int64(len(b)), "part-0.faiss"); err == nil || !strings.HasPrefix(err.Error(), "part-0.faiss: ") {
			t.Errorf("%s: error %v", c.name, err)
		}
	}
	if sizes[last]%32 == 0 {
		t.Fatalf("list %d of %d vectors has no padding", last, sizes[last])
	}
	b := slices.Clone(full)
	b[x.offs[last+1]-1] |= 0x80 // vector 31 of the last block of list last: padding
	if _, err := NewIVFFile(bytes.NewReader(b), int64(len(b)), "part-0.faiss"); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("the padding of the last block of list %d is not zero", last)) {
		t.Errorf("padding: error %v", err)
	}

	path := filepath.Join(t.TempDir(), "part-3.faiss")
	if err := os.WriteFile(path, full[:codes+1], 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenIVFFile(path); err == nil || !strings.HasPrefix(err.Error(), path+": truncated: ") {
		t.Errorf("OpenIVFFile: %v", err)
	}
}

// TestMergeFastScanDuplicateIDs: the id check reads FastScan parts' ids,
// which come before their codes.
func TestMergeFastScanDuplicateIDs(t *testing.T) {
	r := ixRand(64)
	a, b := fastScanMergeBase(r, 40, 40)
	b.IDs[17] = a.IDs[3]
	err := mergeErr(t, indexBytes(t, a), indexBytes(t, b))
	if want := fmt.Sprintf("merge: id %d is in both part-0.faiss and part-1.faiss", a.IDs[3]); err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

// TestMergeFastScanMemory: merging FastScan parts whose lists must be
// repacked allocates a few buffers, not memory in proportion to the
// vectors (here 8 MB of lists).
func TestMergeFastScanMemory(t *testing.T) {
	r := ixRand(65)
	s := fastScanShape{d: 32, m: 32, nlist: 4, sizes: []int{200003, 10, 0, 77}, metric: L2, hnsw: true}
	a := s.params(r)
	s.sizes = []int{150001, 0, 5, 40}
	b := s.params(r)
	b.Centroids, b.Codebooks, b.HNSW = a.Centroids, a.Codebooks, a.HNSW
	for i := range a.IDs {
		a.IDs[i] = int64(2 * i)
	}
	for i := range b.IDs {
		b.IDs[i] = int64(2*i + 1)
	}
	dir := t.TempDir()
	files := openParts(t, writeParts(t, dir, []*IVFParams{a, b}))
	var m *Merge
	n := allocatedBy(func() {
		var err error
		if m, err = NewMerge(context.Background(), files); err != nil {
			t.Fatal(err)
		}
	})
	if limit := uint64(min(2, runtime.GOMAXPROCS(0))+2) << 20; n > limit {
		t.Errorf("NewMerge allocated %d bytes, more than %d", n, limit)
	}
	out := filepath.Join(dir, "merged.faiss")
	n = allocatedBy(func() {
		if err := m.WriteFile(context.Background(), out, 2, nil); err != nil {
			t.Fatal(err)
		}
	})
	if m.Size() < 8e6 || n > 4<<20 {
		t.Errorf("WriteFile of %d bytes allocated %d", m.Size(), n)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := WriteIVF(context.Background(), &want, concatParts([]*IVFParams{a, b}), nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("merged file of %d bytes, WriteIVF %d, differing at byte %d", len(got), want.Len(), firstDiff(got, want.Bytes()))
	}
}

// TestMergeFastScanIVFFiles merges FastScan files by path, and a merged
// file again.
func TestMergeFastScanIVFFiles(t *testing.T) {
	r := ixRand(66)
	a, b := fastScanMergeBase(r, 90, 45)
	c := *b
	c.IDs = make([]int64, len(b.IDs))
	for i := range c.IDs {
		c.IDs[i] = int64(1000 + i)
	}
	dir := t.TempDir()
	paths := writeParts(t, dir, []*IVFParams{a, b, &c})
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
	if want := indexBytes(t, concatParts([]*IVFParams{a, b, &c})); !bytes.Equal(got, want) {
		t.Errorf("merged file of %d bytes, WriteIndex %d, differing at byte %d", len(got), len(want), firstDiff(got, want))
	}
}

// shrinkingFile is a file in memory that can be cut short after opening.
type shrinkingFile struct{ b []byte }

func (f *shrinkingFile) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(f.b).ReadAt(p, off)
}

// TestMergeFastScanStops: a FastScan merge stops at a cancellation, and at
// a part that became shorter than when it was opened, naming it.
func TestMergeFastScanStops(t *testing.T) {
	r := ixRand(68)
	a, b := fastScanMergeBase(r, 3000, 2000)
	fa, fb := &shrinkingFile{indexBytes(t, a)}, &shrinkingFile{indexBytes(t, b)}
	xa, err := NewIVFFile(fa, int64(len(fa.b)), "part-0.faiss")
	if err != nil {
		t.Fatal(err)
	}
	xb, err := NewIVFFile(fb, int64(len(fb.b)), "part-1.faiss")
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMerge(context.Background(), []*IVFFile{xa, xb})
	if err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.WriteRange(cancelled, &bytes.Buffer{}, 0, m.Nlist()); err != context.Canceled {
		t.Errorf("WriteRange cancelled: %v", err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "merged.faiss")
	ctx, cancel := context.WithCancel(context.Background())
	err = m.WriteFile(ctx, out, 2, func(done, total int) { cancel() })
	if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), out+": ") {
		t.Errorf("WriteFile cancelled: %v", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("WriteFile cancelled: left %v", names)
	}
	fb.b = fb.b[:len(fb.b)-100]
	err = m.WriteRange(context.Background(), &bytes.Buffer{}, 0, m.Nlist())
	if err == nil || !strings.HasPrefix(err.Error(), "part-1.faiss: reading the codes of list ") || !strings.HasSuffix(err.Error(), "the file is shorter than when it was opened") {
		t.Errorf("a part cut short: %v", err)
	}
}
