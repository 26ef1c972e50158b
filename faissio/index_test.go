package faissio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// Structural tests of the index reader and writer, on indexes built here
// (random contents are fine: nothing is searched) and on the small files
// FAISS wrote into testdata by make_index_fixtures.py.

func ixRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 7)) }

func ixFloats(r *rand.Rand, n int) []float32 {
	if n == 0 {
		return nil
	}
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

func ixBytes(r *rand.Rand, n int) []byte {
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func ixFlat(r *rand.Rand, metric Metric, d, n int) *Flat {
	return &Flat{Header: Header{D: d, Ntotal: int64(n), IsTrained: true, Metric: metric}, Data: ixFloats(r, n*d)}
}

// ixIVF builds the IVF part with lists of the given sizes, unique ids and
// random codes.
func ixIVF(r *rand.Rand, metric Metric, d int, sizes []int, codeSize int) IVF {
	v := IVF{
		Header: Header{D: d, IsTrained: true, Metric: metric},
		Nlist:  len(sizes), Nprobe: 1 + r.IntN(4),
		Quantizer: ixFlat(r, metric, d, len(sizes)),
		Lists:     make([]InvertedList, len(sizes)),
	}
	id := int64(1000)
	for l, s := range sizes {
		for range s {
			v.Lists[l].IDs = append(v.Lists[l].IDs, id)
			id += 1 + int64(r.IntN(3))
		}
		v.Lists[l].Codes = ixBytes(r, s*codeSize)
		v.Ntotal += int64(s)
	}
	return v
}

func ixPQ(r *rand.Rand, d, m, nbits int) ProductQuantizer {
	return ProductQuantizer{D: d, M: m, Nbits: nbits, Centroids: ixFloats(r, d<<nbits)}
}

func ixIVFPQ(r *rand.Rand, metric Metric, d, m, nbits int, sizes []int) *IVFPQ {
	pq := ixPQ(r, d, m, nbits)
	return &IVFPQ{IVF: ixIVF(r, metric, d, sizes, pq.CodeSize()), ByResidual: true, PQ: pq}
}

func ixIVFFlat(r *rand.Rand, metric Metric, d int, sizes []int) *IVFFlat {
	return &IVFFlat{IVF: ixIVF(r, metric, d, sizes, 4*d)}
}

// withArrayMap renumbers the ids 0..n-1 in list order and adds an array
// direct map, as FAISS's make_direct_map needs and builds.
func withArrayMap(v *IVF) {
	v.DirectMap = DirectMap{Type: ArrayDirectMap, Array: make([]int64, v.Ntotal)}
	id := int64(0)
	for l := range v.Lists {
		for o := range v.Lists[l].IDs {
			v.Lists[l].IDs[o] = id
			v.DirectMap.Array[id] = int64(l)<<32 | int64(o)
			id++
		}
	}
}

// withHashMap adds a hash table direct map, in a scrambled order as FAISS's
// unordered_map gives it.
func withHashMap(r *rand.Rand, v *IVF) {
	v.DirectMap = DirectMap{Type: HashtableDirectMap}
	for l := range v.Lists {
		for o, id := range v.Lists[l].IDs {
			v.DirectMap.Hashtable = append(v.DirectMap.Hashtable, DirectMapEntry{id, int64(l)<<32 | int64(o)})
		}
	}
	r.Shuffle(len(v.DirectMap.Hashtable), func(i, j int) {
		h := v.DirectMap.Hashtable
		h[i], h[j] = h[j], h[i]
	})
}

func writeBytes(t *testing.T, ix Index) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteIndex(&b, ix); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// roundTrip writes ix, reads it back, checks that the result equals ix
// and that writing it again gives the same bytes; it returns the bytes.
func roundTrip(t *testing.T, ix Index) []byte {
	t.Helper()
	b := writeBytes(t, ix)
	back, err := ReadIndex(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("reading what WriteIndex wrote: %v", err)
	}
	if !reflect.DeepEqual(back, ix) {
		t.Fatalf("read back %#v\nwant %#v", back, ix)
	}
	if b2 := writeBytes(t, back); !bytes.Equal(b, b2) {
		t.Fatal("rewriting gives different bytes")
	}
	return b
}

func TestIndexRoundTrip(t *testing.T) {
	r := ixRand(1)
	metrics := []Metric{InnerProduct, L2}
	for _, m := range metrics {
		t.Run("flat-"+m.String(), func(t *testing.T) {
			b := roundTrip(t, ixFlat(r, m, 5, 7))
			if want := flatFourcc(m); string(b[:4]) != want {
				t.Errorf("fourcc %q, want %q", b[:4], want)
			}
			roundTrip(t, ixFlat(r, m, 3, 0))
		})
	}
	t.Run("flat-L1-metric-arg", func(t *testing.T) {
		f := ixFlat(r, 2, 4, 3)
		f.MetricArg = 1.5
		b := roundTrip(t, f)
		if string(b[:4]) != "IxFl" || len(b) != 4+37+8+4*12 {
			t.Errorf("fourcc %q, %d bytes", b[:4], len(b))
		}
		f.Metric = 4 // Lp: the metric argument is p
		roundTrip(t, f)
	})
	for nbits := 1; nbits <= 8; nbits++ {
		t.Run(fmt.Sprintf("pq-nbits%d", nbits), func(t *testing.T) {
			pq := ixPQ(r, 12, 3, nbits)
			ix := &PQ{Header: Header{D: 12, Ntotal: 5, IsTrained: true, Metric: L2}, PQ: pq,
				Codes: ixBytes(r, 5*pq.CodeSize()), SearchType: int32(nbits % 3), EncodeSigns: nbits%2 == 0,
				PolysemousHT: int32(3*nbits + 1)}
			if want := (3*nbits + 7) / 8; pq.CodeSize() != want {
				t.Fatalf("code size %d, want %d", pq.CodeSize(), want)
			}
			roundTrip(t, ix)
		})
	}
	sizes := map[string][]int{
		"full":        {3, 0, 2, 5},     // 3 of 4 non-empty
		"sprs":        {0, 4, 0, 0, 1},  // 2 of 5
		"sprs-half":   {1, 0, 2, 0},     // 2 of 4: not more than half
		"empty":       {0, 0, 0},        // no vectors at all
		"full-single": {6},              // one list
		"full-odd":    {1, 1, 0, 0, 1},  // 3 of 5
		"sprs-last":   {0, 0, 0, 0, 17}, // only the last list
	}
	for name, s := range sizes {
		for _, m := range metrics {
			t.Run(fmt.Sprintf("ivfflat-%s-%s", name, m), func(t *testing.T) {
				b := roundTrip(t, ixIVFFlat(r, m, 6, s))
				checkEncoding(t, b, name)
			})
			for nbits := 1; nbits <= 8; nbits++ {
				t.Run(fmt.Sprintf("ivfpq-%s-%s-nbits%d", name, m, nbits), func(t *testing.T) {
					b := roundTrip(t, ixIVFPQ(r, m, 8, 4, nbits, s))
					checkEncoding(t, b, name)
				})
			}
		}
	}
	t.Run("ivfpq-not-by-residual", func(t *testing.T) {
		ix := ixIVFPQ(r, L2, 8, 2, 8, []int{2, 3})
		ix.ByResidual = false
		roundTrip(t, ix)
	})
	t.Run("ivf-untrained", func(t *testing.T) {
		ix := ixIVFFlat(r, L2, 4, []int{0, 0, 0})
		ix.IsTrained = false
		ix.Quantizer = ixFlat(r, L2, 4, 0)
		roundTrip(t, ix)
	})
	t.Run("direct-map-array", func(t *testing.T) {
		ix := ixIVFPQ(r, L2, 8, 2, 4, []int{3, 0, 2, 4})
		withArrayMap(&ix.IVF)
		roundTrip(t, ix)
		ix.DirectMap.Array[1] = -1 // an id without a vector
		roundTrip(t, ix)
	})
	t.Run("direct-map-hashtable", func(t *testing.T) {
		ix := ixIVFFlat(r, InnerProduct, 4, []int{3, 0, 2, 4})
		withHashMap(r, &ix.IVF)
		roundTrip(t, ix)
		ix2 := ixIVFFlat(r, InnerProduct, 4, []int{0, 0})
		ix2.DirectMap.Type = HashtableDirectMap
		roundTrip(t, ix2)
	})
	t.Run("pretransform-opq", func(t *testing.T) {
		ivf := ixIVFPQ(r, L2, 8, 4, 8, []int{2, 3, 0})
		pt := &PreTransform{Header: ivf.Header, Index: ivf,
			Chain: []*LinearTransform{{DIn: 8, DOut: 8, IsTrained: true, A: ixFloats(r, 64)}}}
		roundTrip(t, pt)
	})
	t.Run("pretransform-chain", func(t *testing.T) {
		flat := ixFlat(r, InnerProduct, 3, 4)
		pt := &PreTransform{Header: Header{D: 6, Ntotal: 4, IsTrained: true, Metric: InnerProduct}, Index: flat,
			Chain: []*LinearTransform{
				{DIn: 6, DOut: 5, IsTrained: true, HaveBias: true, A: ixFloats(r, 30), B: ixFloats(r, 5)},
				{DIn: 5, DOut: 3, IsTrained: false, A: ixFloats(r, 15)},
			}}
		roundTrip(t, pt)
		outer := &PreTransform{Header: pt.Header, Index: pt} // nested, no transforms
		roundTrip(t, outer)
	})
	t.Run("ivf-quantizer-pretransform", func(t *testing.T) {
		// Any index may be the coarse quantizer; FAISS stores it whole.
		ix := ixIVFFlat(r, L2, 4, []int{1, 2})
		q := ix.Quantizer.(*Flat)
		ix.Quantizer = &PreTransform{Header: q.Header, Index: q,
			Chain: []*LinearTransform{{DIn: 4, DOut: 4, IsTrained: true, A: ixFloats(r, 16)}}}
		roundTrip(t, ix)
	})
}

// checkEncoding checks the list size encoding FAISS would pick, named at
// the start of the test case name.
func checkEncoding(t *testing.T, b []byte, name string) {
	t.Helper()
	want := name[:4]
	if name == "empty" {
		want = "sprs"
	}
	i := bytes.Index(b, []byte("ilar"))
	if i < 0 || string(b[i+20:i+24]) != want {
		t.Errorf("list encoding not %q", want)
	}
}

// tinyIVFPQ is the worked example of the format notes (faiss-format.md):
// IVFPQ, d 4, nlist 2, M 2, nbits 2, L2, ids 7 and 8 in list 0 and 9 in
// list 1; 319 bytes.
func tinyIVFPQ(t *testing.T) (IVFParams, []byte) {
	p := IVFParams{
		D: 4, Metric: L2, Nlist: 2,
		Centroids: []float32{0, 0, 0, 0, 1, 1, 1, 1},
		M:         2, Nbits: 2,
		Codebooks: make([]float32, 16),
		Lists:     []int64{0, 1, 0},
		IDs:       []int64{7, 9, 8},
		Codes:     []byte{0x0, 0x5, 0xf},
	}
	for i := range p.Codebooks {
		p.Codebooks[i] = float32(i) / 16
	}
	ix, err := NewIVFIndex(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, writeBytes(t, ix)
}

func TestIndexWorkedExample(t *testing.T) {
	_, b := tinyIVFPQ(t)
	if len(b) != 319 {
		t.Fatalf("%d bytes, want 319", len(b))
	}
	le := binary.LittleEndian
	u64 := func(off int) uint64 { return le.Uint64(b[off:]) }
	checks := []struct {
		off  int
		got  any
		want any
	}{
		{0, string(b[0:4]), "IwPQ"}, {4, le.Uint32(b[4:]), uint32(4)}, {8, u64(8), uint64(3)},
		{16, u64(16), uint64(1 << 20)}, {24, u64(24), uint64(1 << 20)}, {32, b[32], byte(1)},
		{33, le.Uint32(b[33:]), uint32(1)}, {37, u64(37), uint64(2)}, {45, u64(45), uint64(1)},
		{53, string(b[53:57]), "IxF2"}, {90, u64(90), uint64(8)}, {130, b[130], byte(0)},
		{131, u64(131), uint64(0)}, {139, b[139], byte(1)}, {140, u64(140), uint64(1)},
		{148, u64(148), uint64(4)}, {156, u64(156), uint64(2)}, {164, u64(164), uint64(2)},
		{172, u64(172), uint64(16)}, {244, string(b[244:248]), "ilar"}, {248, u64(248), uint64(2)},
		{256, u64(256), uint64(1)}, {264, string(b[264:268]), "full"}, {268, u64(268), uint64(2)},
		{276, u64(276), uint64(2)}, {284, u64(284), uint64(1)}, {292, string(b[292:294]), "\x00\x0f"},
		{294, u64(294), uint64(7)}, {302, u64(302), uint64(8)}, {310, b[310], byte(5)}, {311, u64(311), uint64(9)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("byte %d: %v, want %v", c.off, c.got, c.want)
		}
	}
}

// fixtureTypes names each committed FAISS-written file of testdata (less
// ".index") with the type it reads as.
var fixtureTypes = map[string]string{
	"flat_empty": "*faissio.Flat", "flat_l2": "*faissio.Flat", "flat_ip": "*faissio.Flat",
	"pq": "*faissio.PQ", "ivfpq_l2_nbits8": "*faissio.IVFPQ", "ivfpq_ip_nbits5": "*faissio.IVFPQ",
	"ivfpq_l2_nbits3": "*faissio.IVFPQ", "ivfpq_dm_array": "*faissio.IVFPQ",
	"ivfpq_dm_hashtable": "*faissio.IVFPQ", "ivfflat_ip_sprs": "*faissio.IVFFlat",
	"ivfflat_l2_full": "*faissio.IVFFlat", "ivfflat_untrained": "*faissio.IVFFlat",
	"opq_ivfpq": "*faissio.PreTransform",
	"pqfs_l2":   "*faissio.PQFastScan", "pqfs_ip": "*faissio.PQFastScan", "pqfs_m5_bbs64": "*faissio.PQFastScan",
	"ivfpqfs_l2": "*faissio.IVFPQFastScan", "ivfpqfsr_ip": "*faissio.IVFPQFastScan",
	"ivfpqfsr_m5_l2": "*faissio.IVFPQFastScan", "ivfpqfs_hnsw_l2": "*faissio.IVFPQFastScan",
	"ivfpq_hnsw_l2": "*faissio.IVFPQ", "ivfflat_hnsw_ip": "*faissio.IVFFlat",
	"hnsw_l2": "*faissio.HNSWFlat", "hnsw_empty_ip": "*faissio.HNSWFlat",
}

// fixtures returns the FAISS-written files of testdata, by name. They are
// committed: one of fixtureTypes missing or unreadable fails the test.
func fixtures(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.index"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no testdata/*.index (run testdata/make_index_fixtures.py): %v", err)
	}
	m := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m[filepath.Base(p)] = b
	}
	for name := range fixtureTypes {
		if m[name+".index"] == nil {
			t.Fatalf("committed fixture testdata/%s.index is missing or empty", name)
		}
	}
	return m
}

// readFixture reads the fixture name of files, failing the test if it
// does not read.
func readFixture(t *testing.T, files map[string][]byte, name string) Index {
	t.Helper()
	ix, err := ReadIndex(bytes.NewReader(files[name]))
	if err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	return ix
}

func TestIndexFixtures(t *testing.T) {
	types := fixtureTypes
	files := fixtures(t)
	for name, b := range files {
		t.Run(name, func(t *testing.T) {
			ix, err := ReadIndexFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := fmt.Sprintf("%T", ix), types[strings.TrimSuffix(name, ".index")]; got != want {
				t.Errorf("type %s, want %s", got, want)
			}
			if out := writeBytes(t, ix); !bytes.Equal(out, b) {
				t.Errorf("rewritten file differs from FAISS's at byte %d", firstDiff(out, b))
			}
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			if err := WriteIndexFile(path, ix); err != nil {
				t.Fatal(err)
			}
			if out, err := os.ReadFile(path); err != nil || !bytes.Equal(out, b) {
				t.Errorf("WriteIndexFile wrote different bytes (%v)", err)
			}
		})
	}
	// What the fixtures were made to contain.
	ix := readFixture(t, files, "ivfpq_dm_hashtable.index")
	if dm := ix.(*IVFPQ).DirectMap; dm.Type != HashtableDirectMap || len(dm.Hashtable) != 20 {
		t.Errorf("hashtable fixture: %+v", dm)
	}
	ix = readFixture(t, files, "ivfpq_dm_array.index")
	if dm := ix.(*IVFPQ).DirectMap; dm.Type != ArrayDirectMap || len(dm.Array) != 20 {
		t.Errorf("array fixture: %+v", dm)
	}
	if !bytes.Contains(files["ivfflat_ip_sprs.index"], []byte("sprs")) ||
		!bytes.Contains(files["ivfflat_l2_full.index"], []byte("full")) {
		t.Error("list encoding fixtures do not hold what their names say")
	}
	ix = readFixture(t, files, "ivfpq_l2_nbits3.index")
	if pq := ix.(*IVFPQ).PQ; pq.Nbits != 3 || pq.CodeSize() != 2 {
		t.Errorf("nbits 3 fixture: nbits %d code size %d", pq.Nbits, pq.CodeSize())
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// readErr reads b and returns the error, failing if there is none.
func readErr(t *testing.T, b []byte) error {
	t.Helper()
	ix, err := ReadIndex(bytes.NewReader(b))
	if err == nil {
		t.Fatalf("read succeeded: %T", ix)
	}
	if msg := err.Error(); strings.ContainsAny(msg, "\r\n") || !strings.HasPrefix(msg, "faiss index: byte ") {
		t.Errorf("error %q not one line starting with faiss index: byte ", msg)
	}
	return err
}

func patch(b []byte, off int, with ...byte) []byte {
	b = slices.Clone(b)
	copy(b[off:], with)
	return b
}

func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func TestIndexReadErrors(t *testing.T) {
	_, tiny := tinyIVFPQ(t)
	cases := []struct {
		name string
		b    []byte
		want string // in the message, "byte N: ..." included
	}{
		{"unknown fourcc", patch(tiny, 0, 'X', 'y', 'Z', '!'), `byte 0: unknown index fourcc "XyZ!"`},
		{"unknown quantizer fourcc", patch(tiny, 53, 'I', 'x', 'H', 'e'), `byte 53: unknown index fourcc "IxHe"`},
		{"non-printable fourcc", patch(tiny, 53, 0, 1, 0xff, 'a'), `byte 53: unknown index fourcc "\x00\x01\xffa"`},
		{"unknown lists fourcc", patch(tiny, 244, 'i', 'l', 'x', 'x'), `byte 244: unknown inverted lists fourcc "ilxx"`},
		{"il00", patch(tiny, 244, 'i', 'l', '0', '0'), `byte 244: inverted lists not stored (il00)`},
		{"unknown list type", patch(tiny, 264, 'f', 'u', 'l', 'L'), `byte 264: unknown inverted lists type "fulL"`},
		{"wrong list type", patch(tiny, 264, 's', 'p', 'r', 's'), `byte 276: sparse list number 2 out of order or range [0, 2)`},
		{"bad is_trained", patch(tiny, 32, 2), "byte 32: is_trained is 2, want a bool"},
		{"bad by_residual", patch(tiny, 139, 0xff), "byte 139: by_residual is 255"},
		{"bad quantizer bool", patch(tiny, 53+4+28, 7), "byte 85: is_trained is 7"},
		{"dimension 0", patch(tiny, 4, 0, 0, 0, 0), "byte 4: dimension 0 out of range"},
		{"dimension negative", patch(tiny, 4, 0xff, 0xff, 0xff, 0xff), "byte 4: dimension -1 out of range"},
		{"dimension 2^21", patch(tiny, 4, 0, 0, 0x20, 0), "byte 4: dimension 2097152 out of range"},
		{"negative ntotal", patch(tiny, 8, le64(math.MaxUint64)...), "byte 8: ntotal -1 is negative"},
		{"placeholder", patch(tiny, 24, 1), "byte 24: unused header field is 1048577"},
		{"metric 7", patch(tiny, 33, 7), "byte 33: metric type 7 is not one FAISS defines"},
		{"quantizer data", patch(tiny, 57, 3), "byte 90: flat vectors has 8 elements, want 6"},
		{"nlist 3", patch(tiny, 37, 3), "byte 53: coarse quantizer holds 2 centroids for 3 lists"},
		{"nlist 0", patch(tiny, 37, 0), "byte 37: nlist 0 out of range"},
		{"fourcc metric mismatch", patch(tiny, 53+4+29, 0), `byte 53: fourcc "IxF2" with metric 0: FAISS writes "IxFI"`},
		{"flat size", patch(tiny, 90, 9), "byte 90: flat vectors has 9 elements, want 8"},
		{"direct map type", patch(tiny, 130, 3), "byte 130: direct map type 3"},
		{"direct map type negative", patch(tiny, 130, 0xa1), "byte 130: direct map type -95"},
		{"direct map array size", patch(tiny, 131, 1), "byte 131: direct map array has 1 elements, want 0"},
		{"code size", patch(tiny, 140, 2), "byte 140: code size 2, want 1"},
		{"PQ d", patch(tiny, 148, 8), "byte 148: PQ dimension 8, want the index's 4"},
		{"PQ M", patch(tiny, 156, 3), "byte 156: PQ M 3 does not divide dimension 4"},
		{"PQ M 0", patch(tiny, 156, 0), "byte 156: PQ M 0 does not divide"},
		{"PQ nbits 0", patch(tiny, 164, 0), "byte 164: PQ nbits 0 out of range [1, 24]"},
		{"PQ nbits 25", patch(tiny, 164, 25), "byte 164: PQ nbits 25 out of range [1, 24]"},
		{"codebook size", patch(tiny, 172, 15), "byte 172: PQ centroids has 15 elements, want 16"},
		{"lists nlist", patch(tiny, 248, 3), "byte 248: inverted lists have nlist 3, the index 2"},
		{"lists code size", patch(tiny, 256, 2), "byte 256: inverted lists have code size 2, want 1"},
		{"full count", patch(tiny, 268, 3), "byte 268: list sizes has 3 elements, want 2"},
		{"sizes sum", patch(tiny, 276, 3), "byte 264: list sizes sum to 4, want ntotal 3"},
		{"trailing byte", append(slices.Clone(tiny), 0), "byte 319: data after the end of the index"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := readErr(t, c.b)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q\nwant it to contain %q", err, c.want)
			}
		})
	}
}

// craft builds index files field by field, for the errors no patch of a
// valid file reaches.
type craft struct{ b []byte }

func (c *craft) s(s string) *craft { c.b = append(c.b, s...); return c }
func (c *craft) u8(v byte) *craft  { c.b = append(c.b, v); return c }
func (c *craft) i32(v int32) *craft {
	c.b = binary.LittleEndian.AppendUint32(c.b, uint32(v))
	return c
}
func (c *craft) u64(v uint64) *craft { c.b = binary.LittleEndian.AppendUint64(c.b, v); return c }
func (c *craft) header(d int32, ntotal int64, metric int32) *craft {
	return c.i32(d).u64(uint64(ntotal)).u64(1 << 20).u64(1 << 20).u8(1).i32(metric)
}

func TestIndexReadErrorsCrafted(t *testing.T) {
	_, tiny := tinyIVFPQ(t)
	ivf := func(nlist uint64, trained byte) *craft {
		c := (&craft{}).s("IwFl").i32(4).u64(0).u64(1 << 20).u64(1 << 20).u8(trained).i32(1)
		return c.u64(nlist).u64(1).s("IxF2").header(4, 0, 1).u64(0).u8(0).u64(0)
	}
	lt := func(c *craft, bias byte, a, b uint64) *craft {
		c.s("LTra").u8(bias).u64(a)
		for range a {
			c.i32(0)
		}
		c.u64(b)
		for range b {
			c.i32(0)
		}
		return c
	}
	tinyWithMap := func(dm []byte) []byte {
		return slices.Concat(tiny[:130], dm, tiny[139:])
	}
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty file", nil, "byte 0: file ends before index fourcc"},
		{"short fourcc", []byte("IxF"), "byte 0: file ends inside index fourcc (3 of 4 bytes)"},
		{"unknown transform", (&craft{}).s("IxPT").header(4, 0, 1).i32(1).s("PCAm").b,
			`byte 41: unknown transform fourcc "PCAm" (supported: LTra)`},
		{"negative transform count", (&craft{}).s("IxPT").header(4, 0, 1).i32(-1).b, "byte 37: transform count -1 is negative"},
		{"transform matrix size", lt((&craft{}).s("IxPT").header(4, 0, 1).i32(1), 0, 15, 0).i32(4).i32(4).u8(1).b,
			"byte 46: transform matrix has 15 values, want 4×4"},
		{"transform bias without have_bias", lt((&craft{}).s("IxPT").header(4, 0, 1).i32(1), 0, 16, 4).i32(4).i32(4).u8(1).b,
			"transform bias has 4 values, want 0"},
		{"transform bias short", lt((&craft{}).s("IxPT").header(4, 0, 1).i32(1), 1, 16, 3).i32(4).i32(4).u8(1).b,
			"transform bias has 3 values, want 4"},
		{"transform d_in", lt((&craft{}).s("IxPT").header(4, 0, 1).i32(1), 0, 16, 0).i32(0).b,
			"transform dimension 0 out of range"},
		{"transform chain", lt((&craft{}).s("IxPT").header(4, 0, 1).i32(1), 0, 8, 0).i32(2).i32(4).u8(1).b,
			"byte 41: transform 0 takes 2 dimensions, the previous step gives 4"},
		{"transform bool", lt((&craft{}).s("IxPT").header(4, 0, 1).i32(1), 2, 16, 0).b, "byte 45: have_bias is 2"},
		{"wrapped dimension", lt((&craft{}).s("IxPT").header(4, 0, 1).i32(1), 0, 12, 0).i32(4).i32(3).u8(1).
			s("IxF2").header(4, 0, 1).u64(0).b, "wrapped index has dimension 4, the transforms give 3"},
		{"sprs odd", ivf(4, 0).s("ilar").u64(4).u64(16).s("sprs").u64(3).b, "sparse list sizes have 3 elements"},
		{"sprs order", ivf(4, 0).s("ilar").u64(4).u64(16).s("sprs").u64(4).u64(2).u64(1).u64(1).u64(1).b,
			"sparse list number 1 out of order"},
		{"sprs range", ivf(4, 0).s("ilar").u64(4).u64(16).s("sprs").u64(2).u64(4).u64(1).b,
			"sparse list number 4 out of order or range [0, 4)"},
		{"sprs zero", ivf(4, 0).s("ilar").u64(4).u64(16).s("sprs").u64(2).u64(1).u64(0).b,
			"sparse list 1 stored with size 0"},
		{"full when sparse", ivf(4, 0).s("ilar").u64(4).u64(16).s("full").u64(4).u64(0).u64(0).u64(0).u64(0).b,
			`inverted lists stored "full" with 0 of 4 lists non-empty: FAISS writes "sprs"`},
		{"quantizer dimension", (&craft{}).s("IwFl").header(4, 0, 1).u64(1).u64(1).s("IxF2").header(3, 1, 1).
			u64(3).u64(0).u64(0).b, "byte 53: coarse quantizer has dimension 3, want the index's 4"},
		{"trained without centroids", ivf(4, 1).b, "coarse quantizer holds 0 centroids for 4 lists"},
		{"untrained huge nlist", ivf(1<<40, 0).s("ilar").u64(1 << 40).u64(16).s("sprs").u64(0).b,
			"nlist 1099511627776 without as many centroids"},
		{"direct map outside lists", tinyWithMap((&craft{}).u8(1).u64(3).u64(0).u64(1).u64(2).b),
			"byte 130: direct map entry 2 (0x2) points outside the lists"},
		{"direct map hashtable duplicate", tinyWithMap((&craft{}).u8(2).u64(0).u64(2).u64(7).u64(0).u64(7).u64(1).b),
			"byte 130: direct map has id 7 twice"},
		{"direct map hashtable outside", tinyWithMap((&craft{}).u8(2).u64(0).u64(1).u64(7).u64(2 << 32).b),
			"direct map entry for id 7 (0x200000000) points outside the lists"},
		{"truncated hashtable", tinyWithMap((&craft{}).u8(2).u64(0).u64(1 << 50).u64(7).b),
			"file ends inside direct map hashtable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := readErr(t, c.b)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q\nwant it to contain %q", err, c.want)
			}
		})
	}

	t.Run("nesting", func(t *testing.T) {
		c := &craft{}
		for range 60 {
			c.s("IxPT").header(4, 0, 1).i32(0)
		}
		c.s("IxF2").header(4, 0, 1).u64(0)
		err := readErr(t, c.b)
		if want := fmt.Sprintf("byte %d: indexes nested more than 50 deep", 50*41); !strings.Contains(err.Error(), want) {
			t.Errorf("error %q, want %q", err, want)
		}
	})
}

// TestIndexTruncated cuts small files at every byte: each prefix must fail
// with an error (a truncation one), never a panic.
func TestIndexTruncated(t *testing.T) {
	_, tiny := tinyIVFPQ(t)
	files := fixtures(t)
	for name, b := range map[string][]byte{
		"tiny": tiny, "opq": files["opq_ivfpq.index"], "hashtable": files["ivfpq_dm_hashtable.index"],
		"sprs": files["ivfflat_ip_sprs.index"], "pq": files["pq.index"],
	} {
		for n := range len(b) {
			_, err := ReadIndex(bytes.NewReader(b[:n]))
			if err == nil {
				t.Fatalf("%s: the first %d of %d bytes read without error", name, n, len(b))
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%s cut at %d: %v is not a truncation error", name, n, err)
			}
		}
	}
}

// TestIndexHugeLengths reads small files whose length fields claim far more
// than they hold: each must fail at the end of the data having allocated
// about as much as the file, not what it claims.
func TestIndexHugeLengths(t *testing.T) {
	_, tiny := tinyIVFPQ(t)
	const n40 = 1 << 40
	cases := map[string][]byte{
		"flat 2^40 floats": (&craft{}).s("IxF2").header(8, n40/8, 1).u64(n40).u64(0).u64(0).b,
		"PQ 2^44 centroids": (&craft{}).s("IxPq").header(1<<20, 0, 1).u64(1 << 20).u64(1).u64(24).
			u64(1 << 44).u64(0).b,
		"PQ 2^40 codes": (&craft{}).s("IxPq").header(1, n40, 1).u64(1).u64(1).u64(1).u64(2).u64(0).
			u64(n40).u64(0).b,
		"LTra 2^40 matrix": (&craft{}).s("IxPT").header(4, 0, 1).i32(1).s("LTra").u8(0).u64(n40).u64(0).b,
		"LTra 2^62 bias":   (&craft{}).s("IxPT").header(4, 0, 1).i32(1).s("LTra").u8(0).u64(0).u64(1 << 62).b,
		"list of 2^40":     slices.Concat(patch(tiny[:276], 8, le64(n40+1)...), le64(n40), le64(1), []byte{1, 2, 3}),
		"direct map 2^40":  slices.Concat(patch(tiny[:130], 8, le64(n40)...), []byte{1}, le64(n40), le64(0)),
		"hashtable 2^40":   slices.Concat(tiny[:130], []byte{2}, le64(0), le64(n40), le64(0)),
		"sprs 2^17 pairs": patch((&craft{}).s("IwFl").header(1, 0, 1).u64(1<<16).u64(1).s("IxF2").
			header(1, 0, 1).u64(0).u8(0).u64(0).s("ilar").u64(1<<16).u64(4).s("sprs").u64(1<<17).u64(0).b,
			32, 0), // untrained, so that the quantizer needs no centroids
		"transform count 2^31": (&craft{}).s("IxPT").header(4, 0, 1).i32(math.MaxInt32).b,
	}
	for name, b := range cases {
		if len(b) > 400 {
			t.Fatalf("%s: %d bytes, want a small file", name, len(b))
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := ReadIndex(bytes.NewReader(b))
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("%s: read succeeded", name)
			continue
		}
		alloc := after.TotalAlloc - before.TotalAlloc
		if alloc > 1<<20 {
			t.Errorf("%s: %d bytes allocated reading %d bytes", name, alloc, len(b))
		}
		t.Logf("%s: %d bytes allocated: %v", name, alloc, err)
	}
}

func TestWriteIndexErrors(t *testing.T) {
	r := ixRand(3)
	mutate := map[string]func(ix *IVFPQ) Index{
		"list codes":       func(ix *IVFPQ) Index { ix.Lists[0].Codes = ix.Lists[0].Codes[1:]; return ix },
		"list count":       func(ix *IVFPQ) Index { ix.Lists = ix.Lists[:1]; return ix },
		"ntotal":           func(ix *IVFPQ) Index { ix.Ntotal++; return ix },
		"nil quantizer":    func(ix *IVFPQ) Index { ix.Quantizer = nil; return ix },
		"quantizer d":      func(ix *IVFPQ) Index { ix.Quantizer = ixFlat(r, L2, 4, 2); return ix },
		"quantizer ntotal": func(ix *IVFPQ) Index { ix.Quantizer = ixFlat(r, L2, 8, 3); return ix },
		"flat data":        func(ix *IVFPQ) Index { ix.Quantizer.(*Flat).Data = nil; return ix },
		"codebooks":        func(ix *IVFPQ) Index { ix.PQ.Centroids = ix.PQ.Centroids[1:]; return ix },
		"pq M":             func(ix *IVFPQ) Index { ix.PQ.M = 3; return ix },
		"pq d":             func(ix *IVFPQ) Index { ix.PQ.D = 4; return ix },
		"metric":           func(ix *IVFPQ) Index { ix.Metric = 5; return ix },
		"dimension":        func(ix *IVFPQ) Index { ix.D = 1<<20 + 1; return ix },
		"direct map type":  func(ix *IVFPQ) Index { ix.DirectMap.Type = 3; return ix },
		"direct map array": func(ix *IVFPQ) Index { ix.DirectMap = DirectMap{Type: ArrayDirectMap}; return ix },
		"direct map stray": func(ix *IVFPQ) Index { ix.DirectMap.Array = []int64{0, 0, 0, 0, 0}; return ix },
		"direct map entry": func(ix *IVFPQ) Index {
			withArrayMap(&ix.IVF)
			ix.DirectMap.Array[0] = 5 << 32
			return ix
		},
		"nil index": func(*IVFPQ) Index { return nil },
		"nil *Flat": func(*IVFPQ) Index { return (*Flat)(nil) },
		"transform": func(ix *IVFPQ) Index {
			return &PreTransform{Header: ix.Header, Index: ix, Chain: []*LinearTransform{{DIn: 8, DOut: 8}}}
		},
		"transform bias": func(ix *IVFPQ) Index {
			return &PreTransform{Header: ix.Header, Index: ix,
				Chain: []*LinearTransform{{DIn: 8, DOut: 8, A: make([]float32, 64), B: make([]float32, 8)}}}
		},
		"nil transform": func(ix *IVFPQ) Index {
			return &PreTransform{Header: ix.Header, Index: ix, Chain: []*LinearTransform{nil}}
		},
	}
	dir := t.TempDir()
	for name, f := range mutate {
		ix := f(ixIVFPQ(r, L2, 8, 2, 8, []int{2, 3}))
		var b bytes.Buffer
		err := WriteIndex(&b, ix)
		if err == nil {
			t.Errorf("%s: WriteIndex succeeded", name)
			continue
		}
		if b.Len() != 0 {
			t.Errorf("%s: %d bytes written before the error", name, b.Len())
		}
		path := filepath.Join(dir, "x.index")
		if err := WriteIndexFile(path, ix); err == nil || !strings.HasPrefix(err.Error(), path+": ") {
			t.Errorf("%s: WriteIndexFile error %v", name, err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%s: WriteIndexFile left %d files", name, len(ents))
		}
		t.Logf("%s: %v", name, err)
	}

	// A failing writer: the error comes back.
	ix := ixIVFPQ(r, L2, 8, 2, 8, []int{200, 300})
	if err := WriteIndex(failWriter{}, ix); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("failing writer: %v", err)
	}
	if err := WriteIndexFile(filepath.Join(dir, "no", "such", "x.index"), ix); err == nil {
		t.Error("WriteIndexFile into a missing directory succeeded")
	}
	if _, err := ReadIndexFile(filepath.Join(dir, "missing.index")); err == nil ||
		!strings.HasPrefix(err.Error(), filepath.Join(dir, "missing.index")+": ") {
		t.Errorf("reading a missing file: %v", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestIVFParams(t *testing.T) {
	p, _ := tinyIVFPQ(t)
	ix, err := NewIVFIndex(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := IVFParamsOf(ix)
	if err != nil {
		t.Fatal(err)
	}
	// Grouped by list, keeping the given order within each list.
	if !slices.Equal(got.Lists, []int64{0, 0, 1}) || !slices.Equal(got.IDs, []int64{7, 8, 9}) ||
		!bytes.Equal(got.Codes, []byte{0x0, 0xf, 0x5}) {
		t.Errorf("lists %v ids %v codes %v", got.Lists, got.IDs, got.Codes)
	}
	// Nothing shared with the parameters.
	ix.(*IVFPQ).Quantizer.(*Flat).Data[0] = 42
	if p.Centroids[0] == 42 {
		t.Error("NewIVFIndex shares the centroids")
	}

	r := ixRand(4)
	for _, m := range []Metric{InnerProduct, L2} {
		for _, shape := range [][2]int{{0, 0}, {4, 8}, {2, 5}, {8, 1}, {4, 3}} {
			for _, rot := range []bool{false, true} {
				p := IVFParams{D: 8, Metric: m, Nlist: 5, M: shape[0], Nbits: shape[1]}
				p.Centroids = ixFloats(r, 40)
				if p.M > 0 {
					p.Codebooks = ixFloats(r, 8<<p.Nbits)
				}
				if rot {
					p.Rotation = ixFloats(r, 64)
				}
				n := 30
				for i := range n {
					p.Lists = append(p.Lists, int64(r.IntN(5)))
					p.IDs = append(p.IDs, int64(i*3))
				}
				p.Codes = ixBytes(r, n*p.CodeSize())
				ix, err := NewIVFIndex(p)
				if err != nil {
					t.Fatal(err)
				}
				b := roundTrip(t, ix)
				back, _ := ReadIndex(bytes.NewReader(b))
				q, err := IVFParamsOf(back)
				if err != nil {
					t.Fatal(err)
				}
				ix2, err := NewIVFIndex(q)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(writeBytes(t, ix2), b) {
					t.Errorf("%v M %d nbits %d rotation %v: rebuilt index writes different bytes", m, p.M, p.Nbits, rot)
				}
				if _, isPT := ix.(*PreTransform); isPT != rot {
					t.Errorf("rotation %v gives %T", rot, ix)
				}
			}
		}
	}

	// Check's messages are cgo's (faiss.IVFParams is this type).
	bad := map[string]struct {
		f    func(p *IVFParams)
		want string
	}{
		"list out of range":   {func(p *IVFParams) { p.Lists[1] = 2 }, "vector 1: list number 2 out of range [0, 2)"},
		"negative list":       {func(p *IVFParams) { p.Lists[0] = -1 }, "vector 0: list number -1 out of range"},
		"D not multiple of M": {func(p *IVFParams) { p.M = 3 }, "dimension 4 not a multiple of M 3"},
		"codes length":        {func(p *IVFParams) { p.Codes = p.Codes[:2] }, "2 code bytes, want 3 vectors * 1"},
		"ids length":          {func(p *IVFParams) { p.IDs = p.IDs[:2] }, "2 ids for 3 list numbers"},
		"centroids length":    {func(p *IVFParams) { p.Centroids = p.Centroids[:7] }, "7 centroid values, want nlist*d = 8"},
		"codebooks length":    {func(p *IVFParams) { p.Codebooks = p.Codebooks[1:] }, "15 codebook values"},
		"nbits 9":             {func(p *IVFParams) { p.Nbits = 9 }, "nbits 9 out of range [1, 8]"},
		"nbits without M":     {func(p *IVFParams) { p.M, p.Codebooks = 0, nil }, "nbits 2 without PQ (M = 0)"},
		"negative M":          {func(p *IVFParams) { p.M = -1 }, "M -1, want at least 0"},
		"metric":              {func(p *IVFParams) { p.Metric = 7 }, "unsupported metric metric(7)"},
		"nlist 0":             {func(p *IVFParams) { p.Nlist, p.Centroids = 0, nil }, "nlist 0, want at least 1"},
		"dimension":           {func(p *IVFParams) { p.D = 0 }, "dimension 0 out of range"},
		"rotation":            {func(p *IVFParams) { p.Rotation = make([]float32, 15) }, "15 rotation values, want d*d = 16"},
	}
	for name, c := range bad {
		p, _ := tinyIVFPQ(t)
		c.f(&p)
		err := p.Check()
		if err == nil || err.Error() != c.want && !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: Check gives %v, want %q", name, err, c.want)
		}
		if _, err := NewIVFIndex(p); err == nil || !strings.HasPrefix(err.Error(), "new IVF index: ") {
			t.Errorf("%s: NewIVFIndex gives %v", name, err)
		}
	}
	p, _ = tinyIVFPQ(t)
	p.D, p.Centroids, p.Codebooks, p.Codes = 1<<21, nil, nil, nil
	p.Nlist, p.M, p.Nbits, p.Lists, p.IDs = 1, 0, 0, nil, nil
	p.Centroids = make([]float32, p.D)
	if _, err := NewIVFIndex(p); err == nil || !strings.Contains(err.Error(), "dimension 2097152 out of range") {
		t.Errorf("dimension above FAISS's limit: %v", err)
	}
}

func TestIVFParamsOfErrors(t *testing.T) {
	r := ixRand(5)
	pq := ixIVFPQ(r, L2, 8, 2, 8, []int{1, 2})
	notResidual := ixIVFPQ(r, L2, 8, 2, 8, []int{1, 2})
	notResidual.ByResidual = false
	ipQuantizer := ixIVFFlat(r, L2, 8, []int{1, 2})
	ipQuantizer.Quantizer.(*Flat).Metric = InnerProduct
	l1 := ixIVFFlat(r, 2, 8, []int{1, 2})
	l1.Quantizer.(*Flat).Metric = 2
	nbits12 := ixIVFPQ(r, L2, 8, 2, 12, []int{1, 2})
	rot := func(lt LinearTransform, n int64) Index {
		if lt.A == nil {
			lt.A = ixFloats(r, lt.DIn*lt.DOut)
		}
		return &PreTransform{Header: Header{D: lt.DIn, Ntotal: n, Metric: L2}, Chain: []*LinearTransform{&lt}, Index: pq}
	}
	cases := map[string]struct {
		ix   Index
		want string
	}{
		"flat":           {ixFlat(r, L2, 4, 2), "IndexFlatL2 is not an IndexIVFFlat or IndexIVFPQ"},
		"not residual":   {notResidual, "IVFPQ index does not encode residuals"},
		"quantizer":      {ipQuantizer, "coarse quantizer IndexFlatIP is not a flat index with the index's metric"},
		"metric":         {l1, "metric is neither inner product nor L2"},
		"nbits 12":       {nbits12, "nbits 12 out of range [1, 8]"},
		"two transforms": {&PreTransform{Header: pq.Header, Index: pq}, "IndexPreTransform has 0 transforms"},
		"not square":     {rot(LinearTransform{DIn: 4, DOut: 8, IsTrained: true}, 3), "transform maps 4 to 8 dimensions"},
		"bias": {rot(LinearTransform{DIn: 8, DOut: 8, IsTrained: true, HaveBias: true, B: make([]float32, 8)}, 3),
			"linear transform has a bias"},
		"untrained": {rot(LinearTransform{DIn: 8, DOut: 8}, 3), "linear transform is not trained"},
		"ntotal":    {rot(LinearTransform{DIn: 8, DOut: 8, IsTrained: true}, 2), "disagrees with its index"},
		"invalid":   {&Flat{Header: Header{D: 0}}, "dimension 0 out of range"},
		"nil":       {nil, "nil index"},
	}
	for name, c := range cases {
		_, err := IVFParamsOf(c.ix)
		if err == nil || !strings.HasPrefix(err.Error(), "IVF parameters: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}
