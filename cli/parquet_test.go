package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/snappy"
	"github.com/parquet-go/parquet-go/format"

	"github.com/distillvq/distillvq/distill/build"
	"github.com/distillvq/distillvq/faissio"
)

// pqLayout is how writeParquet lays a matrix out: float16 or float32
// values, rows per row group, and a second list of floats ("other") that
// makes --column necessary.
type pqLayout struct {
	f16       bool
	groupRows int64
	other     bool
	// optional is pyarrow's shape (an optional list of optional values,
	// an optional id), in which rows nullVec have a null list and rows
	// nullID a null id.
	optional        bool
	nullVec, nullID []int
}

// halfType is FIXED_LEN_BYTE_ARRAY(2) annotated FLOAT16, which
// parquet-go has no node for.
type halfType struct{ parquet.Type }

func (halfType) LogicalType() *format.LogicalType {
	return &format.LogicalType{Value: &format.Float16Type{}}
}

// toHalf is v as binary16, for values that are exact halves (the embedded
// set's, stored as float16).
func toHalf(v float32) uint16 {
	b := math.Float32bits(v)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case b&0x7fffffff == 0:
		return sign
	case exp <= 0:
		return sign | uint16((mant|0x800000)>>uint(14-exp))
	}
	return sign | uint16(exp)<<10 | uint16(mant>>13)
}

// writeParquet writes m's rows as the list column "emb" beside the int64
// column "id" (ids, or the row numbers), snappy-compressed as pyarrow's
// default is.
func writeParquet(t testing.TB, path string, m faissio.Matrix, ids []int64, l pqLayout) {
	t.Helper()
	leaf := parquet.Leaf(parquet.FloatType)
	if l.f16 {
		leaf = parquet.Leaf(halfType{parquet.FixedLenByteArrayType(2)})
	}
	list, idNode := parquet.List(leaf), parquet.Leaf(parquet.Int64Type)
	valDef, idDef := 1, 0
	if l.optional {
		list, idNode = parquet.Optional(parquet.List(parquet.Optional(leaf))), parquet.Optional(idNode)
		valDef, idDef = 3, 1
	}
	group := parquet.Group{"emb": list, "id": idNode}
	if l.other {
		group["other"] = parquet.List(parquet.Leaf(parquet.FloatType))
	}
	opts := []parquet.WriterOption{parquet.NewSchema("vectors", group), parquet.Compression(&snappy.Codec{})}
	if l.groupRows > 0 {
		opts = append(opts, parquet.MaxRowsPerRowGroup(l.groupRows))
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewWriter(f, opts...)
	rows := make([]parquet.Row, 0, 256)
	flush := func() {
		if _, err := w.WriteRows(rows); err != nil {
			t.Fatal(err)
		}
		rows = rows[:0]
	}
	for r := range m.Rows {
		// Leaves in the schema's order, its fields sorted by name: emb,
		// id, other.
		row := make(parquet.Row, 0, m.Cols+3)
		vec := m.Row(r)
		if slices.Contains(l.nullVec, r) {
			vec = nil
			row = append(row, parquet.NullValue().Level(0, 0, 0))
		}
		for c, v := range vec {
			val := parquet.FloatValue(v)
			if l.f16 {
				h := toHalf(v)
				val = parquet.FixedLenByteArrayValue([]byte{byte(h), byte(h >> 8)})
			}
			row = append(row, val.Level(min(c, 1), valDef, 0))
		}
		id := int64(r)
		if ids != nil {
			id = ids[r]
		}
		if slices.Contains(l.nullID, r) {
			row = append(row, parquet.NullValue().Level(0, 0, 1))
		} else {
			row = append(row, parquet.Int64Value(id).Level(0, idDef, 1))
		}
		if l.other {
			row = append(row, parquet.FloatValue(float32(r)).Level(0, 1, 2), parquet.FloatValue(-1).Level(1, 1, 2))
		}
		if rows = append(rows, row); len(rows) == cap(rows) {
			flush()
		}
	}
	flush()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestParquetBuildEqualsNpy builds from the embedded set written as
// Parquet (a single file, a folder of shards whose row groups straddle the
// encoding blocks, float16, ids from a column, training queries) and
// requires build's file from the .npy of the same vectors, byte for byte,
// for the k-means trainer (a sampled training set, then a streamed add)
// and the distillation (every document in memory).
func TestParquetBuildEqualsNpy(t *testing.T) {
	dir := t.TempDir()
	m, err := faissio.ReadVectors(gloveDocs)
	if err != nil {
		t.Fatal(err)
	}
	tq, err := faissio.ReadVectors(gloveDir + "/train-queries.npy")
	if err != nil {
		t.Fatal(err)
	}
	// 500 of the 2,000 training queries, as .npy and as Parquet: the
	// comparison needs queries read from Parquet, not many of them.
	tq = tq.Slice(0, 500)
	tqNpy := filepath.Join(dir, "train-queries.npy")
	if err := faissio.WriteNpy(tqNpy, tq); err != nil {
		t.Fatal(err)
	}
	ids := make([]int64, m.Rows)
	for i := range ids {
		ids[i] = int64(7*i + 11)
	}
	idsNpy := filepath.Join(dir, "ids.npy")
	if err := faissio.WriteNpyInt64(idsNpy, m.Rows, 1, ids); err != nil {
		t.Fatal(err)
	}
	single := filepath.Join(dir, "docs.parquet")
	writeParquet(t, single, m, ids, pqLayout{groupRows: 5000, other: true})
	half := filepath.Join(dir, "half.parquet")
	writeParquet(t, half, m, ids, pqLayout{f16: true, groupRows: 3000})
	shards := filepath.Join(dir, "shards")
	os.Mkdir(shards, 0o755)
	// Shards at multiples of ShardAlign, so that add encodes each in
	// build's blocks; their row groups are cut elsewhere.
	rows := make([]int64, m.Rows)
	for i := range rows {
		rows[i] = int64(i)
	}
	cuts := []int{0, build.ShardAlign, 3 * build.ShardAlign, 4 * build.ShardAlign, m.Rows}
	for s := range len(cuts) - 1 {
		writeParquet(t, filepath.Join(shards, fmt.Sprintf("part-%d.parquet", s)), m.Slice(cuts[s], cuts[s+1]), rows[cuts[s]:cuts[s+1]], pqLayout{groupRows: 1777})
	}
	queries := filepath.Join(dir, "train-queries.parquet")
	writeParquet(t, queries, tq, nil, pqLayout{groupRows: 700})

	// Equality of two reads of the same vectors needs no well-trained
	// index: few k-means iterations, one short epoch of distillation.
	kmeans := []string{"--train", "kmeans", "--nlist", "64", "--m", "20", "--seed", "3", "--train-size", "6000", "--niter", "10"}
	distill := []string{"--nlist", "64", "--m", "20", "--seed", "3", "--train-size", "6000", "--niter", "10", "--pseudo-queries", "300", "--epochs", "1"}
	// The .npy builds the Parquet ones are compared with, each built once:
	// several cases (and the steps and eval below) share one.
	npyBuilds := map[string]string{}
	npyBuild := func(t *testing.T, args ...string) string {
		t.Helper()
		key := strings.Join(args, " ")
		if path, ok := npyBuilds[key]; ok {
			return path
		}
		path := filepath.Join(dir, fmt.Sprintf("npy-%d.faiss", len(npyBuilds)))
		mustRun(t, append([]string{"build", "-o", path}, args...)...)
		npyBuilds[key] = path
		return path
	}
	for _, c := range []struct {
		name      string
		want, got []string
	}{
		{"kmeans single file", []string{"--docs", gloveDocs}, []string{"--docs", single, "--column", "emb"}},
		{"kmeans folder of shards", []string{"--docs", gloveDocs}, []string{"--docs", shards}},
		{"kmeans float16", []string{"--docs", gloveDocs, "--ids", idsNpy}, []string{"--docs", half, "--id-column", "id"}},
		{"kmeans ids", []string{"--docs", gloveDocs, "--ids", idsNpy}, []string{"--docs", single, "--column", "emb", "--id-column", "id"}},
		{"distill glob of shards", []string{"--docs", gloveDocs}, []string{"--docs", filepath.Join(shards, "part-*.parquet")}},
		{"distill float16, ids, queries", []string{"--docs", gloveDocs, "--ids", idsNpy, "--queries", tqNpy},
			[]string{"--docs", half, "--id-column", "id", "--queries", queries}},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := kmeans
			if strings.HasPrefix(c.name, "distill") {
				opts = distill
			}
			want, got := npyBuild(t, append(append([]string{}, c.want...), opts...)...), filepath.Join(dir, "got.faiss")
			mustRun(t, append(append([]string{"build", "-o", got}, c.got...), opts...)...)
			if a, b := readBytes(t, want), readBytes(t, got); !bytes.Equal(a, b) {
				t.Errorf("the build from Parquet differs from the .npy's (%d and %d bytes)", len(b), len(a))
			}
		})
	}

	// train, then add shard by shard with ids from the column, then merge:
	// the steps a distributed build runs, on Parquet shards.
	trained, whole := filepath.Join(dir, "trained.faiss"), npyBuild(t, append([]string{"--docs", gloveDocs}, kmeans...)...)
	mustRun(t, append([]string{"train", "--docs", shards, "-o", trained}, kmeans...)...)
	var parts []string
	for s := range len(cuts) - 1 {
		part := filepath.Join(dir, fmt.Sprintf("part-%d.faiss", s))
		mustRun(t, "add", "--index", trained, "--docs", filepath.Join(shards, fmt.Sprintf("part-%d.parquet", s)), "--id-column", "id", "-o", part)
		parts = append(parts, part)
	}
	merged := filepath.Join(dir, "merged.faiss")
	mustRun(t, append([]string{"merge", "-o", merged}, parts...)...)
	if a, b := readBytes(t, whole), readBytes(t, merged); !bytes.Equal(a, b) {
		t.Errorf("train + add + merge of Parquet shards differs from build (%d and %d bytes)", len(b), len(a))
	}

	// eval of an index with ids: Parquet documents with --column and
	// --id-column, and Parquet queries, measure what the .npy inputs do.
	withIDs := npyBuild(t, append([]string{"--docs", gloveDocs, "--ids", idsNpy}, kmeans...)...)
	evalQ := filepath.Join(dir, "queries.parquet")
	q, err := faissio.ReadVectors(gloveQ)
	if err != nil {
		t.Fatal(err)
	}
	writeParquet(t, evalQ, q, nil, pqLayout{groupRows: 300})
	recall := func(args ...string) string {
		js := filepath.Join(dir, "eval.json")
		mustRun(t, append([]string{"eval", "--index", withIDs, "--nprobe", "4", "--k", "10", "--min-time", "0s", "--no-cache", "--json", js}, args...)...)
		var r struct {
			Indexes []struct {
				Points []struct {
					KRecall map[string]float64 `json:"k_recall"`
				} `json:"points"`
			} `json:"indexes"`
		}
		if err := json.Unmarshal(readBytes(t, js), &r); err != nil || len(r.Indexes) != 1 || len(r.Indexes[0].Points) != 1 {
			t.Fatalf("eval JSON: %v", err)
		}
		return fmt.Sprint(r.Indexes[0].Points[0].KRecall)
	}
	want := recall("--docs", gloveDocs, "--ids", idsNpy, "--queries", gloveQ)
	if got := recall("--docs", single, "--column", "emb", "--id-column", "id", "--queries", evalQ); got != want || !strings.Contains(want, "0.") {
		t.Errorf("eval over Parquet: recall %s, over .npy %s", got, want)
	}
}

// TestParquetRunnerPrismEqualsBuild runs distillvq-beam's build --runner
// prism on a folder of Parquet shards whose files and row groups the
// shards (multiples of ShardAlign rows) cut across, with --column: the
// file must be the plain build's of the .npy, byte for byte.
func TestParquetRunnerPrismEqualsBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds distillvq-beam")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "distillvq-beam")
	if out, err := exec.Command("go", "build", "-o", bin, "./distillvq-beam").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	m, err := faissio.ReadVectors(gloveDocs)
	if err != nil {
		t.Fatal(err)
	}
	shards := filepath.Join(dir, "shards")
	os.Mkdir(shards, 0o755)
	cuts := []int{0, 3000, 11000, m.Rows}
	for s := range len(cuts) - 1 {
		writeParquet(t, filepath.Join(shards, fmt.Sprintf("part-%d.parquet", s)), m.Slice(cuts[s], cuts[s+1]), nil, pqLayout{groupRows: 2500, other: true})
	}
	// A small sample and few iterations: the bytes of two paths are
	// compared, not the index's quality.
	args := []string{"build", "--train", "kmeans", "--nlist", "64", "--m", "20", "--seed", "3", "--train-size", "6000", "--niter", "10"}
	plain, beam := filepath.Join(dir, "plain.faiss"), filepath.Join(dir, "beam.faiss")
	if out, err := exec.Command(bin, append(args, "--docs", gloveDocs, "-o", plain)...).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, append(args, "--docs", shards, "--column", "emb", "-o", beam, "--runner", "prism", "--workers", "2", "--shard-rows", "5000")...)
	cmd.Env = append(os.Environ(), "DISTILLVQ_QUIET_BLAS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build --runner prism: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "in 5 shards on prism") {
		t.Errorf("output:\n%s", out)
	}
	if a, b := readBytes(t, plain), readBytes(t, beam); len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("build --runner prism of Parquet shards wrote other bytes than build of the .npy (%d and %d)", len(b), len(a))
	}
}

// parquetBadInputs writes the bad Parquet inputs of TestBadInputFailsCleanly
// in dir and returns their build arguments by case name, with the piece of
// the error line each must give.
func parquetBadInputs(t *testing.T, dir string) []struct {
	name string
	args []string
	want string
} {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := faissio.Matrix{Rows: 40, Cols: 4, Data: make([]float32, 160)}
	for i := range m.Data {
		m.Data[i] = float32(i%13) / 4
	}
	good := filepath.Join(dir, "good.parquet")
	writeParquet(t, good, m, nil, pqLayout{groupRows: 16, other: true})
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.parquet")
	os.WriteFile(truncated, b[:len(b)*2/3], 0o644)
	notPQ := filepath.Join(dir, "text.parquet")
	os.WriteFile(notPQ, []byte("id,x,y\n1,0.5,0.25\n"), 0o644)

	// A row of 3 values among rows of 4, and a NaN, in files of their own.
	ragged := filepath.Join(dir, "ragged.parquet")
	{
		type row struct {
			Emb []float32 `parquet:"emb,list"`
		}
		f, _ := os.Create(ragged)
		w := parquet.NewGenericWriter[row](f)
		rows := make([]row, 30)
		for i := range rows {
			rows[i].Emb = []float32{1, 2, 3, 4}
		}
		rows[23].Emb = rows[23].Emb[:3]
		w.Write(rows)
		w.Close()
		f.Close()
	}
	nulls := filepath.Join(dir, "nulls.parquet")
	writeParquet(t, nulls, m, nil, pqLayout{groupRows: 16, optional: true, nullVec: []int{12}})
	nullID := filepath.Join(dir, "null-id.parquet")
	writeParquet(t, nullID, m, nil, pqLayout{groupRows: 16, optional: true, nullID: []int{19}})
	strs := filepath.Join(dir, "strings.parquet")
	{
		type row struct {
			Emb  []string `parquet:"emb,list"`
			Name string   `parquet:"name"`
		}
		f, _ := os.Create(strs)
		w := parquet.NewGenericWriter[row](f)
		w.Write([]row{{Emb: []string{"a"}, Name: "x"}})
		w.Close()
		f.Close()
	}
	dupIDs := filepath.Join(dir, "dup-ids.parquet")
	ids := make([]int64, 40)
	for i := range ids {
		ids[i] = int64(i)
	}
	ids[31] = 5
	writeParquet(t, dupIDs, m, ids, pqLayout{groupRows: 16})
	negIDs := filepath.Join(dir, "neg-ids.parquet")
	ids[31] = -4
	writeParquet(t, negIDs, m, ids, pqLayout{groupRows: 16})
	mixed := filepath.Join(dir, "mixed")
	os.Mkdir(mixed, 0o755)
	os.WriteFile(filepath.Join(mixed, "a.parquet"), b, 0o644)
	if err := faissio.WriteNpy(filepath.Join(mixed, "b.npy"), m); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(filepath.Dir(dir), "out.faiss")
	build := func(docs string, extra ...string) []string {
		return append([]string{"build", "--docs", docs, "-o", out, "--index", "ivfflat", "--nlist", "2", "--train", "kmeans"}, extra...)
	}
	return []struct {
		name string
		args []string
		want string
	}{
		{"Parquet: row of another length", build(ragged), `ragged.parquet: row 23 of column "emb" has 3 values, but the vectors have d=4`},
		{"Parquet: null vector", build(nulls), `nulls.parquet: row 12 of column "emb" is null`},
		{"Parquet: two vector columns", build(good), `good.parquet: 2 list columns of floats (emb, other): name one with --column`},
		{"Parquet: no such column", build(good, "--column", "vec"), `good.parquet: no column "vec"; lists of floats: emb, other`},
		{"Parquet: not a float column", build(good, "--column", "id"), `good.parquet: column "id" holds one int64 per row, not a list of floats`},
		{"Parquet: no float column", build(strs), `strings.parquet: no list column of floats (lists: emb (string))`},
		{"Parquet: truncated", build(truncated, "--column", "emb"), `truncated.parquet: truncated Parquet file: the footer is missing`},
		{"Parquet: not Parquet", build(notPQ), `text.parquet: not a Parquet file (bad magic)`},
		{"Parquet: mixed folder", build(mixed), `mixed: holds both .parquet files and b.npy: give a folder of one kind`},
		{"Parquet: null in the id column", build(nullID, "--id-column", "id"), `null-id.parquet: row 19 of column "id" is null`},
		{"Parquet: duplicate ids", build(dupIDs, "--column", "emb", "--id-column", "id"), `dup-ids.parquet: duplicate id 5 at rows 5 and 31 of column "id"`},
		{"Parquet: negative id", build(negIDs, "--column", "emb", "--id-column", "id"), `neg-ids.parquet: id -4 at row 31 of column "id" is negative`},
		{"Parquet: ids column of floats", build(good, "--column", "emb", "--id-column", "other"), `good.parquet: column "other" holds lists of float32; ids are one int64 per row`},
		{"Parquet: --id-column on .npy", build(gloveDocs, "--id-column", "id"), `docs.npy: ids from a column need Parquet documents`},
		{"Parquet: --column on .npy", build(gloveDocs, "--column", "emb"), `--column emb: no input is a Parquet file`},
	}
}

// TestParquetFlagConflicts checks the command lines that give ids twice,
// or ids from a column where they cannot be used: exit 2, one line.
func TestParquetFlagConflicts(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "x.faiss")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"build", "--docs", "d.parquet", "--ids", "i.npy", "--id-column", "id", "-o", out}, "--ids and --id-column both number the documents: give one"},
		{[]string{"train", "--docs", "d.parquet", "--ids", "i.npy", "--id-column", "id", "-o", out}, "--ids and --id-column both number the documents: give one"},
		{[]string{"add", "--index", "t.faiss", "--docs", "d.parquet", "--first-id", "3", "--id-column", "id", "-o", out}, "--first-id, --ids and --id-column all number the documents: give one"},
		{[]string{"eval", "--docs", "d.parquet", "--queries", gloveQ, "--index", out, "--ids", "i.npy", "--id-column", "id"}, "--ids and --id-column both number the documents: give one"},
		{[]string{"build", "--docs", "d.parquet", "--id-column", "id", "--runner", "prism", "-o", out}, "--runner prism: this distillvq has no distributed engine"},
	} {
		code, _, stderr := run(t, c.args...)
		if code == 0 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, %q; want %q", c.args, code, stderr, c.want)
		}
	}
}
