package faissio

import (
	"crypto/sha256"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/brotli"
	"github.com/parquet-go/parquet-go/compress/gzip"
	"github.com/parquet-go/parquet-go/compress/lz4"
	"github.com/parquet-go/parquet-go/compress/snappy"
	"github.com/parquet-go/parquet-go/compress/zstd"
)

// checkSourceRows checks that every block and every gathered set of rows
// of s equals the same rows of want, from one goroutine and from several.
func checkSourceRows(t *testing.T, name string, s *Source, want Matrix) {
	t.Helper()
	if s.Rows != want.Rows || s.Cols != want.Cols {
		t.Fatalf("%s: source %dx%d, want %dx%d", name, s.Rows, s.Cols, want.Rows, want.Cols)
	}
	all := Matrix{Rows: s.Rows, Cols: s.Cols, Data: make([]float32, s.Rows*s.Cols)}
	if err := s.Read(0, s.Rows, all.Data); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if !slices.Equal(fbits(all.Data...), fbits(want.Data...)) {
		t.Fatalf("%s: rows differ", name)
	}
	r := rand.New(rand.NewPCG(4, 5))
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 3 {
		seed := r.Uint64()
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(g)))
			for range 20 {
				i := r.IntN(s.Rows + 1)
				j := i + r.IntN(s.Rows-i+1)
				got := make([]float32, (j-i)*s.Cols)
				if err := s.Read(i, j, got); err != nil {
					errs <- err.Error()
					return
				}
				if !slices.Equal(fbits(got...), fbits(want.Data[i*s.Cols:j*s.Cols]...)) {
					errs <- "rows differ in a block"
					return
				}
				var pick []int
				for k := range s.Rows {
					if r.IntN(4) == 0 {
						pick = append(pick, k)
					}
				}
				got = make([]float32, len(pick)*s.Cols)
				if err := s.Gather(pick, got); err != nil {
					errs <- err.Error()
					return
				}
				for k, row := range pick {
					if !slices.Equal(fbits(got[k*s.Cols:(k+1)*s.Cols]...), fbits(want.Row(row)...)) {
						errs <- "a gathered row differs"
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatalf("%s: %s", name, e)
	}
}

// TestParquetSource reads Parquet files of every layout the reader
// handles and checks them against the matrix written: float widths, page
// versions, codecs, encodings, page and row group sizes, pyarrow's
// nullable shape, a folder and a glob of shards.
func TestParquetSource(t *testing.T) {
	dir := t.TempDir()
	m := halfMatrix(301, 12, 1)
	cases := []struct {
		name string
		f    func(pqFile) pqFile
	}{
		{"f32", func(f pqFile) pqFile { return f }},
		{"f32-v1-gzip-small-pages", func(f pqFile) pqFile {
			f.v1, f.codec, f.pageSize, f.groupRow = true, &gzip.Codec{}, 300, 64
			return f
		}},
		{"f64-zstd", func(f pqFile) pqFile { f.kind, f.codec, f.groupRow = pqFloat64, &zstd.Codec{}, 100; return f }},
		{"f16-lz4", func(f pqFile) pqFile { f.kind, f.codec, f.pageSize = pqFloat16, &lz4.Codec{}, 512; return f }},
		{"f16-v1-brotli", func(f pqFile) pqFile { f.kind, f.codec, f.v1 = pqFloat16, &brotli.Codec{}, true; return f }},
		{"dictionary", func(f pqFile) pqFile { f.enc, f.pageSize, f.groupRow = &parquet.RLEDictionary, 200, 128; return f }},
		{"byte-stream-split", func(f pqFile) pqFile { f.enc, f.codec = &parquet.ByteStreamSplit, &snappy.Codec{}; return f }},
		{"pyarrow-shape-v1", func(f pqFile) pqFile { f.optional, f.v1, f.pageSize, f.groupRow = true, true, 400, 50; return f }},
		{"one-row-groups", func(f pqFile) pqFile { f.groupRow = 1; return f }},
	}
	for _, c := range cases {
		path := filepath.Join(dir, c.name+".parquet")
		c.f(newPQ(m)).write(t, path)
		s, err := OpenSource(path)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		checkSourceRows(t, c.name, s, m)
		got, err := ReadVectorsWith(path, SourceOptions{})
		if err != nil || !slices.Equal(fbits(got.Data...), fbits(m.Data...)) {
			t.Fatalf("%s: ReadVectorsWith: %v", c.name, err)
		}
	}

	// Shards: a folder (with Spark's leftovers beside them), a glob, and
	// slices of them, as a distributed build's workers read them.
	f := newPQ(m)
	f.groupRow, f.pageSize = 40, 500
	shards := filepath.Join(dir, "shards")
	writePQShards(t, shards, f, 0, 100, 101, 250, 301)
	// An empty file first, as Spark writes for an empty partition: the
	// next one says d.
	empty := f
	empty.rows = nil
	empty.write(t, filepath.Join(shards, "part-0.parquet"))
	for _, junk := range []string{"_SUCCESS", ".part-a.parquet.crc", "README.txt"} {
		if err := os.WriteFile(filepath.Join(shards, junk), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{shards, filepath.Join(shards, "part-*.parquet")} {
		s, err := OpenSource(path)
		if err != nil {
			t.Fatal(err)
		}
		checkSourceRows(t, path, s, m)
		for _, cut := range [][2]int{{0, 4}, {37, 150}, {101, 301}, {299, 301}} {
			sl, err := s.Slice(cut[0], cut[1])
			if err != nil {
				t.Fatal(err)
			}
			checkSourceRows(t, "slice", sl, m.Slice(cut[0], cut[1]))
		}
	}
}

// TestParquetColumn checks --column: the default when one list of floats
// is there, a named one, and the one-line errors that name the candidates.
func TestParquetColumn(t *testing.T) {
	dir := t.TempDir()
	m := halfMatrix(20, 4, 2)
	f := newPQ(m)
	f.extra = true
	two := filepath.Join(dir, "two.parquet")
	f.write(t, two)
	if _, err := OpenSource(two); err == nil || !strings.Contains(err.Error(), "2 list columns of floats (emb, other): name one with --column") {
		t.Errorf("ambiguous: %v", err)
	}
	s, err := OpenSourceWith(two, SourceOptions{Column: "emb"})
	if err != nil {
		t.Fatal(err)
	}
	checkSourceRows(t, "emb", s, m)
	s, err = OpenSourceWith(two, SourceOptions{Column: "other"})
	if err != nil || s.Cols != 2 || s.Rows != 20 {
		t.Fatalf("other: %v", err)
	}
	for _, c := range []struct{ column, want string }{
		{"nope", `no column "nope"; lists of floats: emb, other`},
		{"id", `column "id" holds one int64 per row, not a list of floats`},
	} {
		if _, err := OpenSourceWith(two, SourceOptions{Column: c.column}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--column %s: %v, want %q", c.column, err, c.want)
		}
	}
	npy := filepath.Join(dir, "m.npy")
	if err := WriteNpy(npy, m); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSourceWith(npy, SourceOptions{Column: "emb"}); err == nil || !strings.Contains(err.Error(), "only Parquet files have columns") {
		t.Errorf("--column on .npy: %v", err)
	}
}

// TestParquetIDColumn checks ids read from a column: across shards, for a
// slice, and the checks ReadIDs makes.
func TestParquetIDColumn(t *testing.T) {
	dir := t.TempDir()
	m := halfMatrix(50, 3, 3)
	f := newPQ(m)
	f.optional = true
	f.groupRow = 7
	for i := range m.Rows {
		f.ids = append(f.ids, int64(1000+3*i))
	}
	writePQShards(t, filepath.Join(dir, "ok"), f, 0, 20, 50)
	s, err := OpenSource(filepath.Join(dir, "ok"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := s.ReadIDColumn("id")
	if err != nil || !slices.Equal(ids, f.ids) {
		t.Fatalf("ids %v, %v", ids, err)
	}
	sl, _ := s.Slice(15, 31)
	if ids, err := sl.ReadIDColumn("id"); err != nil || !slices.Equal(ids, f.ids[15:31]) {
		t.Fatalf("slice ids %v, %v", ids, err)
	}
	if _, err := s.ReadIDColumn("emb"); err == nil || !strings.Contains(err.Error(), `column "emb" holds lists of float32; ids are one int64 per row`) {
		t.Errorf("emb as ids: %v", err)
	}
}

// TestParquetBadInputs checks that every bad Parquet input is one line
// naming the file (and the row, where there is one).
func TestParquetBadInputs(t *testing.T) {
	dir := t.TempDir()
	m := halfMatrix(30, 4, 4)
	write := func(name string, edit func(*pqFile)) string {
		f := newPQ(m)
		f.groupRow = 8
		edit(&f)
		path := filepath.Join(dir, name)
		f.write(t, path)
		return path
	}
	ragged := write("ragged.parquet", func(f *pqFile) { f.rows[13] = f.rows[13][:3] })
	compensated := write("compensated.parquet", func(f *pqFile) {
		f.rows[9] = f.rows[9][:3]
		f.rows[10] = append(slices.Clone(f.rows[10]), 1)
	})
	nullList := write("nulllist.parquet", func(f *pqFile) { f.optional, f.rows[17] = true, nil })
	empty := write("empty.parquet", func(f *pqFile) { f.rows[21] = []float32{} })
	nullValue := write("nullvalue.parquet", func(f *pqFile) { f.optional, f.nullAt = true, [2]int{5, 2} })
	nan := write("nan.parquet", func(f *pqFile) {
		f.rows[6] = slices.Clone(f.rows[6])
		f.rows[6][1] = float32(math.NaN())
	})
	big := write("big.parquet", func(f *pqFile) { f.kind, f.bigAt = pqFloat64, &[2]int{22, 3} })
	nullID := write("nullid.parquet", func(f *pqFile) { f.optional, f.nullID = true, 11 })
	dupID := write("dupid.parquet", func(f *pqFile) {
		f.ids = make([]int64, 30)
		for i := range f.ids {
			f.ids[i] = int64(i)
		}
		f.ids[25] = 4
	})
	negID := write("negid.parquet", func(f *pqFile) {
		f.ids = make([]int64, 30)
		f.ids[7] = -2
		for i := range f.ids {
			if i != 7 {
				f.ids[i] = int64(i)
			}
		}
	})
	good, err := os.ReadFile(write("good.parquet", func(*pqFile) {}))
	if err != nil {
		t.Fatal(err)
	}
	truncated := writeTemp(t, dir, "truncated.parquet", good[:len(good)/2])
	notPQ := writeTemp(t, dir, "npy.parquet", npyFile("<f4", "(1, 1)", false, make([]byte, 4)))
	corrupt := writeTemp(t, dir, "corrupt.parquet", append(append([]byte("PAR1"), make([]byte, 20)...), "\x08\x00\x00\x00PAR1"...))
	mixed := filepath.Join(dir, "mixed")
	os.MkdirAll(mixed, 0o755)
	os.WriteFile(filepath.Join(mixed, "a.parquet"), good, 0o644)
	if err := WriteNpy(filepath.Join(mixed, "b.npy"), m); err != nil {
		t.Fatal(err)
	}
	ints := filepath.Join(dir, "ints.parquet")
	{
		w := parquet.NewGenericWriter[struct {
			Emb []int32 `parquet:"emb,list"`
		}](mustCreate(t, ints))
		w.Write([]struct {
			Emb []int32 `parquet:"emb,list"`
		}{{Emb: []int32{1, 2}}})
		w.Close()
	}

	for _, c := range []struct {
		path, want string
		ids        bool
	}{
		{ragged, ragged + `: row 13 of column "emb" has 3 values, but the vectors have d=4`, false},
		{compensated, compensated + `: row 9 of column "emb" has 3 values, but the vectors have d=4`, false},
		{nullList, nullList + `: row 17 of column "emb" is null`, false},
		{empty, empty + `: row 21 of column "emb" is an empty list`, false},
		{nullValue, nullValue + `: row 5, column 2 is null`, false},
		{nan, nan + `: row 6, column 1 is NaN`, false},
		{big, big + `: row 22, column 3: float64 value 1e+300 does not fit in float32`, false},
		{truncated, truncated + `: truncated Parquet file: the footer is missing`, false},
		{notPQ, notPQ + `: not a Parquet file (bad magic)`, false},
		{corrupt, corrupt + `: unreadable Parquet footer`, false},
		{mixed, mixed + `: holds both .parquet files and b.npy: give a folder of one kind`, false},
		{ints, ints + `: no list column of floats (lists: emb (int32))`, false},
		{nullID, nullID + `: row 11 of column "id" is null`, true},
		{dupID, dupID + `: duplicate id 4 at rows 4 and 25 of column "id"`, true},
		{negID, negID + `: id -2 at row 7 of column "id" is negative`, true},
	} {
		err := func() error {
			s, err := OpenSource(c.path)
			if err != nil {
				return err
			}
			if c.ids {
				_, err = s.ReadIDColumn("id")
				return err
			}
			return s.CheckFinite()
		}()
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s:\n got %v\nwant %s", filepath.Base(c.path), err, c.want)
		}
	}
}

func mustCreate(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestParquetFingerprint checks that the fingerprint tells columns and
// slices of the same file apart.
func TestParquetFingerprint(t *testing.T) {
	dir := t.TempDir()
	f := newPQ(halfMatrix(10, 2, 5))
	f.extra = true
	path := filepath.Join(dir, "x.parquet")
	f.write(t, path)
	sum := func(s *Source) string {
		h := sha256.New()
		if err := s.Fingerprint(h); err != nil {
			t.Fatal(err)
		}
		return string(h.Sum(nil))
	}
	a, _ := OpenSourceWith(path, SourceOptions{Column: "emb"})
	b, _ := OpenSourceWith(path, SourceOptions{Column: "other"})
	a2, _ := OpenSourceWith(path, SourceOptions{Column: "emb"})
	sl, _ := a.Slice(1, 10)
	if sum(a) == sum(b) || sum(a) != sum(a2) || sum(a) == sum(sl) {
		t.Error("fingerprints do not follow the column and rows")
	}
}

// TestParquetArrowFiles reads files written by the other Go library,
// apache/arrow-go v18.8.0's pqarrow (a scratch program, as pyarrow writes:
// data pages v1 unless said, dictionaries that fall back to plain, no page
// index), and checks them against the values it wrote, value(r, c) =
// float32((r*8+c)*7%251-125)/16 and id(r) = 10r+3:
//   - arrow-fsl-f16.parquet: fixed_size_list<float16, 8>, row groups of
//     200, snappy, pages of 1 KiB, dictionary;
//   - arrow-list-f32.parquet: list<float32> beside list<int32> "tags" and
//     a string "caption", row groups of 128, zstd, data pages v2;
//   - arrow-list-f64.parquet: list<float64>, one row group, gzip,
//     dictionary.
func TestParquetArrowFiles(t *testing.T) {
	want := Matrix{Rows: 500, Cols: 8, Data: make([]float32, 500*8)}
	ids := make([]int64, 500)
	for r := range 500 {
		ids[r] = int64(10*r + 3)
		for c := range 8 {
			want.Data[r*8+c] = float32((r*8+c)*7%251-125) / 16
		}
	}
	for _, name := range []string{"arrow-fsl-f16.parquet", "arrow-list-f32.parquet", "arrow-list-f64.parquet"} {
		path := filepath.Join("testdata", name)
		s, err := OpenSource(path)
		if err != nil {
			t.Fatal(err)
		}
		checkSourceRows(t, name, s, want)
		got, err := s.ReadIDColumn("id")
		if err != nil || !slices.Equal(got, ids) {
			t.Fatalf("%s: ids %v", name, err)
		}
		sl, _ := s.Slice(130, 410)
		checkSourceRows(t, name+" slice", sl, want.Slice(130, 410))
	}
	if _, err := OpenSourceWith(filepath.Join("testdata", "arrow-list-f32.parquet"), SourceOptions{Column: "tags"}); err == nil ||
		!strings.Contains(err.Error(), `column "tags" holds lists of int32, not of float32, float16 or float64`) {
		t.Errorf("tags: %v", err)
	}
}

// TestReadVectorsTakesParquet checks that ReadVectors, which eval and
// search read queries with, reads a Parquet file by its only vector column,
// as ReadVectorsWith does, and that VectorFiles names the file.
func TestReadVectorsTakesParquet(t *testing.T) {
	path := filepath.Join("testdata", "arrow-list-f32.parquet")
	got, err := ReadVectors(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ReadVectorsWith(path, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Rows == 0 || got.Rows != want.Rows || got.Cols != want.Cols || !slices.Equal(got.Data, want.Data) {
		t.Errorf("ReadVectors %dx%d, ReadVectorsWith %dx%d", got.Rows, got.Cols, want.Rows, want.Cols)
	}
	if files, err := VectorFiles(path); err != nil || len(files) != 1 || files[0] != path {
		t.Errorf("VectorFiles = %q, %v", files, err)
	}
}
