package faissio

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding"
	"github.com/parquet-go/parquet-go/format"
)

// pqFile describes a Parquet file for the tests to write: a vector column
// "emb" of lists beside an int64 column "id" (and, with extra, a second
// list of floats "other"), laid out and encoded as asked.
type pqFile struct {
	kind     parquetFloat
	rows     [][]float32 // a nil row is a null list (optional only)
	ids      []int64     // nil: row numbers
	nullID   int         // row whose id is null, -1 for none (optional only)
	nullAt   [2]int      // row and position of a null value, {-1, -1} for none
	optional bool        // pyarrow's shape: optional list of optional values
	groupRow int64       // rows per row group; 0 for one
	pageSize int         // page buffer bytes; 0 for the library's default
	v1       bool        // data pages v1 (arrow-go's and pyarrow's default)
	codec    compress.Codec
	enc      encoding.Encoding // of the vector values; nil for plain
	extra    bool
	bigAt    *[2]int // row and position of a float64 beyond float32's range
}

func newPQ(m Matrix) pqFile {
	f := pqFile{nullID: -1, nullAt: [2]int{-1, -1}}
	for i := range m.Rows {
		f.rows = append(f.rows, m.Row(i))
	}
	return f
}

// float16Type is FIXED_LEN_BYTE_ARRAY(2) annotated FLOAT16, which
// parquet-go has no node for.
type float16Type struct{ parquet.Type }

func (float16Type) LogicalType() *format.LogicalType {
	return &format.LogicalType{Value: &format.Float16Type{}}
}

// float32ToHalf rounds v to the nearest binary16 (ties to even); the tests
// use values that are exact halves, so only the exact case matters.
func float32ToHalf(v float32) uint16 {
	b := math.Float32bits(v)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case b&0x7fffffff == 0:
		return sign
	case exp >= 0x1f:
		return sign | 0x7c00
	case exp <= 0:
		return sign | uint16((mant|0x800000)>>uint(14-exp))
	}
	return sign | uint16(exp)<<10 | uint16(mant>>13)
}

// write writes f to path.
func (f pqFile) write(t testing.TB, path string) {
	t.Helper()
	var leaf parquet.Node
	switch f.kind {
	case pqFloat32:
		leaf = parquet.Leaf(parquet.FloatType)
	case pqFloat64:
		leaf = parquet.Leaf(parquet.DoubleType)
	case pqFloat16:
		leaf = parquet.Leaf(float16Type{parquet.FixedLenByteArrayType(2)})
	}
	if f.enc != nil {
		leaf = parquet.Encoded(leaf, f.enc)
	}
	id := parquet.Leaf(parquet.Int64Type)
	if f.optional {
		leaf, id = parquet.Optional(leaf), parquet.Optional(id)
	}
	list := parquet.List(leaf)
	if f.optional {
		list = parquet.Optional(list)
	}
	group := parquet.Group{"emb": list, "id": id}
	if f.extra {
		group["other"] = parquet.List(parquet.Leaf(parquet.FloatType))
	}
	schema := parquet.NewSchema("vectors", group)
	opts := []parquet.WriterOption{schema}
	if f.pageSize > 0 {
		opts = append(opts, parquet.PageBufferSize(f.pageSize))
	}
	if f.v1 {
		opts = append(opts, parquet.DataPageVersion(1))
	}
	if f.codec != nil {
		opts = append(opts, parquet.Compression(f.codec))
	}
	if f.groupRow > 0 {
		opts = append(opts, parquet.MaxRowsPerRowGroup(f.groupRow))
	}
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewWriter(out, opts...)
	// Leaves in the schema's order (fields sorted by name): emb, id, other.
	embDef, idDef := 1, 0
	if f.optional {
		embDef, idDef = 3, 1
	}
	for r, row := range f.rows {
		var pr parquet.Row
		switch {
		case row == nil:
			pr = append(pr, parquet.NullValue().Level(0, 0, 0))
		case len(row) == 0:
			pr = append(pr, parquet.NullValue().Level(0, embDef-2+boolInt(!f.optional), 0))
		}
		for c, v := range row {
			rep := boolInt(c > 0)
			if r == f.nullAt[0] && c == f.nullAt[1] {
				pr = append(pr, parquet.NullValue().Level(rep, embDef-1, 0))
				continue
			}
			var val parquet.Value
			switch f.kind {
			case pqFloat32:
				val = parquet.FloatValue(v)
			case pqFloat64:
				x := float64(v)
				if f.bigAt != nil && *f.bigAt == [2]int{r, c} {
					x = 1e300
				}
				val = parquet.DoubleValue(x)
			case pqFloat16:
				h := float32ToHalf(v)
				val = parquet.FixedLenByteArrayValue([]byte{byte(h), byte(h >> 8)})
			}
			pr = append(pr, val.Level(rep, embDef, 0))
		}
		idv := int64(r)
		if f.ids != nil {
			idv = f.ids[r]
		}
		if r == f.nullID {
			pr = append(pr, parquet.NullValue().Level(0, 0, 1))
		} else {
			pr = append(pr, parquet.Int64Value(idv).Level(0, idDef, 1))
		}
		if f.extra {
			pr = append(pr, parquet.FloatValue(float32(r)).Level(0, 1, 2), parquet.FloatValue(1).Level(1, 1, 2))
		}
		if _, err := w.WriteRows([]parquet.Row{pr}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// halfMatrix is a matrix of values exact in float16, so that a float16
// file holds the matrix itself.
func halfMatrix(rows, cols int, seed int) Matrix {
	m := Matrix{Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
	for i := range m.Data {
		m.Data[i] = float32((i*7+seed*13)%251-125) / 16
	}
	return m
}

// writePQShards writes f's rows as one file per cut in dir.
func writePQShards(t testing.TB, dir string, f pqFile, cuts ...int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for k := range len(cuts) - 1 {
		g := f
		g.rows = f.rows[cuts[k]:cuts[k+1]]
		if f.ids != nil {
			g.ids = f.ids[cuts[k]:cuts[k+1]]
		} else {
			g.ids = make([]int64, len(g.rows))
			for i := range g.ids {
				g.ids[i] = int64(cuts[k] + i)
			}
		}
		g.write(t, filepath.Join(dir, "part-"+string(rune('a'+k))+".parquet"))
	}
}
